"""The study's 6.9B runs on Cloud TPU: ``--config=configs/paper.py:<run>``.

    pretrain  Pythia-6.9B, seq 2048, 2048 sequences (4,194,304 tokens) per step, 500B tokens
    midtrain  the midtrain stage alone: seq 16,384, 256 sequences (the same tokens per step), 50B
              tokens; --config.checkpoint.init_from=<pretraining run> starts it from pretraining

Both are the same model (remat policy and attention kernel are run settings, left out of
ModelConfig equality, so midtraining loads pretraining's params) and run on any slice whose
chip count divides the micro-batch: the mesh is pure FSDP over every chip. The performance
settings (bf16 compute, splash attention on TPU, remat policy, micro-batching) were chosen with
``alignjax-plan`` on v5p-128 and v4-256; see README "Performance on TPU (planner)".
"""

from alignjax.config import default_config
from alignjax.model import PRESETS

TOKENS_PER_STEP = 2048 * 2048
PRETRAIN_TOKENS, MIDTRAIN_TOKENS = 500e9, 50e9


def get_config(run=None):
    run = run or "pretrain"
    if run not in ("pretrain", "midtrain"):
        raise ValueError(f"unknown paper run {run!r}; valid: pretrain, midtrain")
    c = default_config()
    c.model.update(PRESETS["6.9b"])
    c.model.update(dict(
        max_seq_len=16384,  # midtraining's length; rotary positions need no table
        dtype="bfloat16",  # matmuls in bf16, params / optimizer state / LayerNorm stats / loss fp32
        attention="splash",  # Pallas kernel on TPU (the same math through XLA elsewhere)
    ))
    c.mesh.update(dict(data=1, fsdp=-1, tensor=1))  # ZeRO-3 over every chip
    c.optimizer.update(dict(lr=1.2e-4, min_lr_ratio=0.1, weight_decay=0.1, grad_clip=1.0))
    c.checkpoint.update(dict(every_steps=500, max_to_keep=3))
    c.train.update(dict(log_every=10, progress_bar=False))
    if run == "pretrain":
        steps = round(PRETRAIN_TOKENS / TOKENS_PER_STEP)  # 119,209
        c.train.update(dict(seq_len=2048, batch_size=2048, num_steps=steps, grad_accum=4))
        # Keep every block's matmul outputs (qkv, the attention output and logsumexp, the MLP
        # input): the backward pass recomputes only elementwise ops. 4 micro-batches keep that
        # within HBM on v4-256 (4 sequences per chip per micro-batch).
        c.model.remat = "save_all"
        c.optimizer.update(dict(warmup_steps=steps // 100))  # Pythia: 1% warm-up, cosine to 10%
    else:
        # The midtrain stage alone (its data mixture and LR schedule: stages.midtrain.*), started
        # from pretraining's params via checkpoint.init_from.
        c.train.update(dict(num_steps=0, grad_accum=2))
        c.stages.midtrain.update(dict(num_steps=round(MIDTRAIN_TOKENS / TOKENS_PER_STEP),  # 11,921
                                      seq_len=16384, batch_size=256))
        # Keep only the attention output and logsumexp: no recompute of the (now 4x costlier)
        # attention kernel; qkv and MLP input are recomputed. 2 micro-batches = 1 sequence per
        # chip on v4-256, the most the 256-sequence batch allows there.
        c.model.remat = "save_ctx"
    return c
