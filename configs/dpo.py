"""Direct preference optimisation (``train.objective=dpo``): ``--config=configs/dpo.py[:<size>]``.

    alignjax-train --config=configs/dpo.py:6.9b --workdir=runs/dpo \\
        --config.checkpoint.init_from=runs/sft --config.chat.data=hf://datasets/allenai/<dolci-dpo>

The study's DPO (Tice et al. 2026, appendix D.3, Table 9, after OLMo-3's Dolci-Instruct-DPO):
sigmoid loss with beta 5, LR 1e-6 with warmup ratio 0.1 and linear decay (to 0), max length
2048, 1 epoch, 128 pairs per step (OLMo 3's DPO batch size, which the study keeps: "we use the
same hyperparameters as OLMo Team (2025)"). Reference log-probs come from the
frozen starting params (``dpo.reference``: ``on_the_fly``, a forward pass inside the step, or
``precompute``, one pass before training into ``<workdir>/reference_logps.npy``). Over-length
pairs are truncated as alignjax.data.chat documents (prompt from the left, then responses from the
right). Not given by the study and chosen here: no weight decay.

``<size>``: ``tiny`` (default; the builtin pairs, bytes tokenizer, CPU) or a Pythia size.
"""

from alignjax.config import default_config
from alignjax.model import PRESETS


def get_config(arg=None):
    size = arg or "tiny"
    c = default_config()
    c.train.objective = "dpo"
    c.chat.update(dict(data="builtin", template="alignjax"))
    c.dpo.update(dict(beta=5.0, reference="on_the_fly"))
    c.optimizer.update(dict(schedule="linear", warmup_ratio=0.1, min_lr_ratio=0.0, weight_decay=0.0))
    if size == "tiny":
        c.model.update(dict(num_layers=2, d_model=64, num_heads=4, d_ff=256, vocab_size=512, max_seq_len=1024))
        c.data.tokenizer = "bytes"
        c.dpo.beta = 0.5  # beta 5 with lr 1e-6 suits a 7B model; a tiny one moves with a larger step
        c.train.update(dict(num_steps=30, batch_size=8, seq_len=1024, log_every=5))
        c.optimizer.update(dict(lr=1e-4))
        c.checkpoint.update(dict(every_steps=30, max_to_keep=2))
        return c
    if size not in PRESETS:
        raise ValueError(f"unknown size {size!r}; valid: tiny, {', '.join(PRESETS)}")
    c.model.update(PRESETS[size])
    c.model.update(dict(max_seq_len=2048, dtype="bfloat16", remat="full"))
    c.data.tokenizer = "EleutherAI/gpt-neox-20b"
    c.chat.epochs = 1
    c.train.update(dict(batch_size=128, seq_len=2048, log_every=10))  # pairs per step
    c.optimizer.update(dict(lr=1e-6))
    c.checkpoint.update(dict(every_steps=500))
    return c
