"""AdamW with Pythia's settings: warmup then cosine to a floor, decay on weights only."""

from __future__ import annotations

import jax
import optax


def lr_schedule(opt_cfg, num_steps: int) -> optax.Schedule:
    decay_steps = opt_cfg.decay_steps or num_steps
    return optax.warmup_cosine_decay_schedule(
        init_value=0.0,
        peak_value=opt_cfg.lr,
        warmup_steps=opt_cfg.warmup_steps,
        decay_steps=max(decay_steps, opt_cfg.warmup_steps + 1),
        end_value=opt_cfg.lr * opt_cfg.min_lr_ratio,
    )


def decay_mask(params):
    """Weight decay on kernels and embeddings only; biases and LayerNorm are exempt (by name:
    the per-head QKV bias is 3-D, so rank cannot tell them apart)."""
    def decays(path, _):
        name = str(getattr(path[-1], "key", path[-1]))
        return name.endswith("kernel") or name in ("embed_in", "embed_out")
    return jax.tree_util.tree_map_with_path(decays, params)


def make_optimizer(opt_cfg, num_steps: int) -> optax.GradientTransformation:
    return optax.chain(
        optax.clip_by_global_norm(opt_cfg.grad_clip),
        optax.adamw(
            lr_schedule(opt_cfg, num_steps),
            b1=opt_cfg.b1, b2=opt_cfg.b2, eps=opt_cfg.eps,
            weight_decay=opt_cfg.weight_decay, mask=decay_mask,
        ),
    )
