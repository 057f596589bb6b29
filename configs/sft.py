"""Supervised fine-tuning (``train.objective=sft``): ``--config=configs/sft.py[:<size>]``.

    alignjax-train --config=configs/sft.py:6.9b --workdir=runs/sft \\
        --config.checkpoint.init_from=runs/align-e2e --config.chat.data=hf://datasets/allenai/<dolci-sft>

The study's SFT (Tice et al. 2026, after OLMo-3's Dolci-Instruct recipe): LR 8e-5 with cosine
decay, 2 epochs, 16k-token packed sequences. ``chat.epochs`` turns epochs into steps from the
data (``chat.count_examples``: packed rows / ``train.batch_size``). Not given by the study and
chosen here: batch 32 sequences (~0.5M tokens/step at 16k), 3% warmup, decay to 0, no weight decay
(Tulu's SFT settings). The model shape comes from ``checkpoint.init_from`` (the base model).

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
    c.chat.epochs = 2
    c.train.update(dict(batch_size=32, seq_len=16384, log_every=10))
    c.optimizer.update(dict(lr=8e-5, warmup_ratio=0.03))
    c.checkpoint.update(dict(every_steps=500))
    return c
