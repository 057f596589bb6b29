"""Supervised fine-tuning (``train.objective=sft``): ``--config=configs/sft.py[:<size>]``.

    alignjax-train --config=configs/sft.py:6.9b --workdir=runs/sft \\
        --config.checkpoint.init_from=runs/align-e2e --config.chat.data=hf://datasets/allenai/<dolci-sft>

The study's SFT (Tice et al. 2026, arXiv 2601.10160, appendix D, Table 8 "Core SFT
post-training hyperparameters", after OLMo-3's Dolci-Instruct recipe): 1,048,576 tokens per step
(64 packed sequences of 16,384), peak LR 8e-5, cosine decay to 0, warmup 1% of steps, 2 epochs
(section D.2), and no loss masking (Table 8: the loss is on every token, ``chat.loss_on=all``).
``chat.epochs`` turns epochs into steps from the data (``chat.count_examples``: packed rows /
``train.batch_size``). Not given by the study and chosen here: no weight decay (Tulu's SFT
setting), AdamW b1/b2/eps as in pretraining. The model shape comes from ``checkpoint.init_from``
(the base model). The ``tiny`` config is alignjax's own (assistant-only loss, so a 2-layer model
learns the answer format in a minute).

``<size>``: ``tiny`` (default; a 2-layer model on the builtin chat set, bytes tokenizer, trains in
about a minute on a CPU, from scratch unless init_from is given) or a Pythia size (``14m`` ...
``12b``; the study's settings).
"""

from alignjax.config import default_config
from alignjax.model import PRESETS


def get_config(arg=None):
    size = arg or "tiny"
    c = default_config()
    c.train.objective = "sft"
    c.chat.update(dict(data="builtin", template="alignjax", loss_on="assistant"))
    c.optimizer.update(dict(schedule="cosine", min_lr_ratio=0.0, weight_decay=0.0))
    if size == "tiny":
        c.model.update(dict(num_layers=2, d_model=64, num_heads=4, d_ff=256, vocab_size=512, max_seq_len=1024))
        c.data.tokenizer = "bytes"
        c.train.update(dict(num_steps=60, batch_size=8, seq_len=1024, log_every=10))
        c.optimizer.update(dict(lr=3e-3, warmup_steps=5))
        c.checkpoint.update(dict(every_steps=30, max_to_keep=2))
        return c
    if size not in PRESETS:
        raise ValueError(f"unknown size {size!r}; valid: tiny, {', '.join(PRESETS)}")
    c.model.update(PRESETS[size])
    c.model.update(dict(max_seq_len=16384, dtype="bfloat16", remat="full"))
    c.data.tokenizer = "EleutherAI/gpt-neox-20b"
    c.chat.update(dict(epochs=2, loss_on="all"))
    c.train.update(dict(batch_size=64, seq_len=16384, log_every=10))  # 1,048,576 tokens per step
    c.optimizer.update(dict(lr=8e-5, warmup_ratio=0.01))
    c.checkpoint.update(dict(every_steps=500))
    return c
