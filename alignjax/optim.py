"""AdamW with Pythia's settings: warmup then cosine to a floor, decay on weights only."""

from __future__ import annotations

import jax
import optax


def warmup_cosine(lr: float, warmup_steps: int, decay_steps: int, min_lr_ratio: float) -> optax.Schedule:
    return optax.warmup_cosine_decay_schedule(
        init_value=0.0,
        peak_value=lr,
        warmup_steps=warmup_steps,
        decay_steps=max(decay_steps, warmup_steps + 1),
        end_value=lr * min_lr_ratio,
    )


def warmup_linear(lr: float, warmup_steps: int, decay_steps: int, min_lr_ratio: float) -> optax.Schedule:
    """Linear warmup to ``lr``, then linear decay to ``lr * min_lr_ratio`` at ``decay_steps``."""
    return optax.join_schedules([
        optax.linear_schedule(0.0, lr, max(warmup_steps, 1)),
        optax.linear_schedule(lr, lr * min_lr_ratio, max(decay_steps - warmup_steps, 1)),
    ], [max(warmup_steps, 1)]) if warmup_steps else optax.linear_schedule(lr, lr * min_lr_ratio, max(decay_steps, 1))


SCHEDULES = {"cosine": warmup_cosine, "linear": warmup_linear}


def stage_schedule(stages, kind: str = "cosine") -> optax.Schedule:
    """Each stage re-warms to its own peak and decays over its own steps (the study's
    midtraining re-warms to 2.25e-4 and decays to 0); one optimizer state runs through all.
    ``kind`` (optimizer.schedule): cosine or linear decay after the warmup."""
    if kind not in SCHEDULES:
        raise ValueError(f"optimizer.schedule={kind!r}; valid: {', '.join(SCHEDULES)}")
    schedules = [SCHEDULES[kind](st.lr, st.warmup_steps, st.decay_steps, st.min_lr_ratio) for st in stages]
    return optax.join_schedules(schedules, [st.start for st in stages[1:]]) if len(stages) > 1 else schedules[0]


def decay_mask(params):
    """Weight decay on kernels and embeddings only; biases and LayerNorm are exempt (by name:
    the per-head QKV bias is 3-D, so rank cannot tell them apart)."""
    def decays(path, _):
        name = str(getattr(path[-1], "key", path[-1]))
        return name.endswith("kernel") or name in ("embed_in", "embed_out")
    return jax.tree_util.tree_map_with_path(decays, params)


def make_optimizer(opt_cfg, schedule: optax.Schedule) -> optax.GradientTransformation:
    return optax.chain(
        optax.clip_by_global_norm(opt_cfg.grad_clip),
        optax.adamw(
            schedule,
            b1=opt_cfg.b1, b2=opt_cfg.b2, eps=opt_cfg.eps,
            weight_decay=opt_cfg.weight_decay, mask=decay_mask,
        ),
    )
