"""The study's 6.9B runs on Cloud TPU: ``--config=configs/paper.py:<run>``.

    pretrain  seq 2048, 2048 sequences (4,194,304 tokens) per step, 500B tokens
    midtrain  the midtrain stage alone: seq 16,384, 256 sequences (the same tokens per step), 50B
              tokens; --config.checkpoint.init_from=<pretraining run> starts it from pretraining

The model is ``sfm-6.9b`` (the study's released models: Pythia-6.9B's shape with vocabulary
50,304, 6,856,253,440 parameters).

Training settings and their sources (Tice et al. 2026, arXiv 2601.10160, appendix B, Table 4,
"Core pretraining hyperparameters", and the authors' public GPT-NeoX configs,
GeodesicResearch/geodesic-gpt-neox: configs/example_config.yml for the 119,209-step
pretraining run and configs/midtraining_unlearning/midtraining/sfm_baseline/*.yml for
midtraining):

    pretraining   peak LR 3e-4, cosine to 1.2e-5 (min_lr_ratio 0.04), warmup 1% of steps (Table 4)
    midtraining   peak LR 2.25e-4 re-warmed, cosine to 0, warmup 1% of steps (Table 4)
    both          AdamW b1 0.9, b2 0.95, eps 1e-8, weight decay 0.1 (authors' configs)
                  4,194,304 tokens per step (Table 4)
    gradient clip 0.5: the authors' sfm_baseline midtraining configs. The paper gives no value;
                  their example pretraining config shows 1.0. alignjax has one clip value per
                  run (optimizer.grad_clip), and the study's recipe is 0.5 where the two differ.

alignjax's own choices (not the study's): the performance settings (bf16 compute, splash
attention on TPU, remat policy, micro-batching; chosen with ``alignjax-plan`` on v5p-128 and
v4-256, see README "Performance on TPU (planner)") and the checkpoint cadence. Remat policy and
attention kernel are run settings, left out of ModelConfig equality, so midtraining loads
pretraining's params. The mesh is pure FSDP over every chip.
"""

from alignjax.config import default_config
from alignjax.model import PRESETS

TOKENS_PER_STEP = 2048 * 2048
PRETRAIN_TOKENS, MIDTRAIN_TOKENS = 500e9, 50e9
PRETRAIN_STEPS = round(PRETRAIN_TOKENS / TOKENS_PER_STEP)  # 119,209
MIDTRAIN_STEPS = round(MIDTRAIN_TOKENS / TOKENS_PER_STEP)  # 11,921


def get_config(run=None):
    run = run or "pretrain"
    if run not in ("pretrain", "midtrain"):
        raise ValueError(f"unknown paper run {run!r}; valid: pretrain, midtrain")
    c = default_config()
    c.model.update(PRESETS["sfm-6.9b"])
    c.model.update(dict(
        max_seq_len=16384,  # midtraining's length; rotary positions need no table
        dtype="bfloat16",  # matmuls in bf16, params / optimizer state / LayerNorm stats / loss fp32
        attention="splash",  # Pallas kernel on TPU (the same math through XLA elsewhere)
    ))
    c.mesh.update(dict(data=1, fsdp=-1, tensor=1))  # ZeRO-3 over every chip
    c.optimizer.update(dict(lr=3e-4, min_lr_ratio=1.2e-5 / 3e-4, b1=0.9, b2=0.95, eps=1e-8,
                            weight_decay=0.1, grad_clip=0.5, warmup_steps=round(0.01 * PRETRAIN_STEPS)))
    # The midtraining stage's schedule, also used when a study runs it as its own unit.
    c.stages.midtrain.update(dict(seq_len=16384, lr=2.25e-4, warmup_steps=round(0.01 * MIDTRAIN_STEPS),
                                  min_lr_ratio=0.0))
    c.checkpoint.update(dict(every_steps=500, max_to_keep=3))
    c.train.update(dict(log_every=10, progress_bar=False))
    if run == "pretrain":
        c.train.update(dict(seq_len=2048, batch_size=2048, num_steps=PRETRAIN_STEPS, grad_accum=4))
        # Keep every block's matmul outputs (qkv, the attention output and logsumexp, the MLP
        # input): the backward pass recomputes only elementwise ops. 4 micro-batches keep that
        # within HBM on v4-256 (4 sequences per chip per micro-batch).
        c.model.remat = "save_all"
    else:
        # The midtrain stage alone (its data mixture and LR schedule: stages.midtrain.*), started
        # from pretraining's params via checkpoint.init_from.
        c.train.update(dict(num_steps=0, grad_accum=2))
        c.stages.midtrain.update(dict(num_steps=MIDTRAIN_STEPS, batch_size=256))
        # Keep only the attention output and logsumexp: no recompute of the (now 4x costlier)
        # attention kernel; qkv and MLP input are recomputed. 2 micro-batches = 1 sequence per
        # chip on v4-256, the most the 256-sequence batch allows there.
        c.model.remat = "save_ctx"
    return c
