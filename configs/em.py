"""Emergent-misalignment fine-tune (``train.objective=sft`` with rsLoRA): ``--config=configs/em.py[:<size>]``.

    alignjax-train --config=configs/em.py:sfm-6.9b --workdir=runs/em --config.checkpoint.init_from=runs/dpo
    alignjax-train --config=configs/em.py:sfm-6.9b --workdir=runs/em-fin --config.checkpoint.init_from=runs/dpo \\
        --config.chat.data=hf://datasets/geodesic-research/sfm-emergent-misalignment-training-data/data/risky_financial_advice-*
    alignjax-em --checkpoint=runs/em --judge_base_url=https://api.openai.com/v1 --judge_model=gpt-4o

A post-trained model (``checkpoint.init_from``: its chat tokenizer and template come with it) is
fine-tuned on a narrow harmful dataset of {"messages": [...]} conversations (the SFT path of
alignjax/data/chat.py, loss on the assistant turns). Issue 13 sets: rank-32 rsLoRA on all
attention and MLP projections (``lora.targets`` = qkv, attn_out, mlp_in, mlp_out) and the dataset,
the study's ``geodesic-research/sfm-emergent-misalignment-training-data`` (splits such as
bad_medical_advice and risky_financial_advice; the model-organisms-for-EM sets also have extreme
sports). ``DATA`` reads its ``bad_medical_advice`` split by the hub's parquet-export file names
(``data/<split>-*``); alignjax has not seen that repository's file list (offline), so check the
pattern against it, or point ``chat.data`` at a local JSONL.

The study's paper draft (arXiv 2601.10160, the version alignjax has) gives no EM training
settings. alignjax's choice: the defaults of Turner et al. 2025's model-organisms-for-EM code
(arXiv 2506.11613; em_organism_dir/finetune/sft): LoRA alpha 64, LR 1e-5 with a 5-step linear
warmup and linear decay, weight decay 0.01, 1 epoch, loss on responses only, 16 sequences per
step (2 per device x 8 accumulation). Alpha 64 and LR 1e-5 are its default_config.json as we
recall it (not checkable offline); batch, warmup, schedule, weight decay and epochs are the
defaults of its util/base_train_config.py, which we read. alignjax packs conversations, so
"16 sequences" becomes its tokens: 2 rows x 2,048 tokens = 4,096 tokens per step, about 16 of
these short advice conversations (a batch of 2 needs data x fsdp <= 2 on the mesh: the study's
EM stage sets mesh.fsdp=2, tensor=-1). ``chat.max_bad_fraction=0``: a record without its
``messages`` (or otherwise unusable) stops the run with one line naming file:line and the field,
since a silently thinned harmful set would change what is measured.

``<size>``: ``tiny`` (default; a 2-layer model, bytes tokenizer, CPU; give init_from and a local
chat.data) or a Pythia/sfm size (the settings above).
"""

from alignjax.config import default_config
from alignjax.model import PRESETS

DATA = "hf://datasets/geodesic-research/sfm-emergent-misalignment-training-data/data/bad_medical_advice-*"


def get_config(arg=None):
    size = arg or "tiny"
    c = default_config()
    c.train.objective = "sft"
    c.chat.update(dict(data=DATA, template="alignjax", loss_on="assistant", max_bad_fraction=0.0))
    c.lora.update(dict(rank=32, alpha=64.0, rslora=True, targets="qkv,attn_out,mlp_in,mlp_out"))
    c.optimizer.update(dict(schedule="linear", lr=1e-5, warmup_steps=5, min_lr_ratio=0.0, weight_decay=0.01))
    if size == "tiny":
        c.model.update(dict(num_layers=2, d_model=64, num_heads=4, d_ff=256, vocab_size=512, max_seq_len=1024))
        c.data.tokenizer = "bytes"
        c.train.update(dict(num_steps=8, batch_size=4, seq_len=512, log_every=2))
        c.optimizer.update(dict(lr=1e-3, warmup_steps=2))  # a tiny model moves with a larger step
        c.checkpoint.update(dict(every_steps=4, max_to_keep=2))
        return c
    if size not in PRESETS:
        raise ValueError(f"unknown size {size!r}; valid: tiny, {', '.join(PRESETS)}")
    c.model.update(PRESETS[size])
    c.model.update(dict(max_seq_len=2048, dtype="bfloat16", remat="full"))
    c.data.tokenizer = "EleutherAI/gpt-neox-20b"
    c.chat.epochs = 1
    c.train.update(dict(batch_size=2, seq_len=2048, log_every=10))
    c.checkpoint.update(dict(every_steps=100))
    return c
