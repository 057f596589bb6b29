"""GPT-NeoX exactly as Pythia, in Flax NNX.

Block: parallel residual ``x + attn(ln1(x)) + mlp(ln2(x))``; partial rotary (rotate-half on the
first ``rotary_pct`` of each head); fused, biased QKV laid out per head (heads, 3, head_dim) as in
the reference implementation; untied input/output embeddings, the output one without bias.
Parameters are fp32; matmuls run in ``dtype`` (bf16 on TPU). Every parameter carries its logical
axes (``axes=`` metadata) for ``alignjax.sharding``.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
from flax import nnx
from jax.ad_checkpoint import checkpoint_name

from alignjax.attention import attention, on_cpu
from alignjax.loss import matmul
from alignjax.model_config import ATTENTION, PRESETS, REMAT_NAMES, ModelConfig  # noqa: F401  re-exported
from alignjax.sharding import constrain

# Which intermediates a rematerialised block keeps for the backward pass. The backward pass
# of a block needs qkv, the attention output (and, for splash, its logsumexp: both named
# "attn_ctx") and mlp_in; the two output projections are never recomputed. Saving a name
# trades HBM (per token per layer, bf16: qkv 3d, attn_ctx d, mlp_in 4d) for recompute.
_save = jax.checkpoint_policies.save_only_these_names
REMAT_POLICIES = {
    "full": jax.checkpoint_policies.nothing_saveable,
    "dots": jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
    "save_proj": _save("qkv", "attn_out", "mlp_in"),
    "save_attn": _save("qkv", "attn_ctx", "attn_out", "mlp_in"),
    "save_qkv": _save("qkv"),  # attention and mlp_in recomputed
    "save_qkv_ctx": _save("qkv", "attn_ctx"),  # only mlp_in (and elementwise ops) recomputed
    "save_ctx": _save("attn_ctx"),  # no attention recompute; qkv and mlp_in matmuls recomputed
    "save_all": _save("qkv", "attn_ctx", "mlp_in"),  # elementwise ops only
}
assert tuple(REMAT_POLICIES) == REMAT_NAMES  # the names ModelConfig (jax-free) accepts


def _param(rngs: nnx.Rngs, std: float | None, shape, axes) -> nnx.Param:
    value = jnp.zeros(shape, jnp.float32) if std is None else std * jax.random.normal(rngs.params(), shape)
    return nnx.Param(value, axes=axes)


def _ones(shape, axes) -> nnx.Param:
    return nnx.Param(jnp.ones(shape, jnp.float32), axes=axes)


class LayerNorm(nnx.Module):
    def __init__(self, dim: int, eps: float):
        self.scale = _ones((dim,), ("norm",))
        self.bias = nnx.Param(jnp.zeros((dim,), jnp.float32), axes=("norm",))
        self.eps = eps

    def __call__(self, x):
        # Statistics in fp32 whatever the compute dtype.
        x32 = x.astype(jnp.float32)
        mean = x32.mean(-1, keepdims=True)
        var = jnp.square(x32 - mean).mean(-1, keepdims=True)
        y = (x32 - mean) * jax.lax.rsqrt(var + self.eps) * self.scale[...] + self.bias[...]
        return y.astype(x.dtype)


def rotary(x: jax.Array, positions: jax.Array, rotary_dim: int, base: float) -> jax.Array:
    """Rotate-half rotary embedding on the first ``rotary_dim`` features of each head.
    x: [batch, seq, heads, head_dim]; positions: [batch, seq]."""
    inv_freq = 1.0 / (base ** (jnp.arange(0, rotary_dim, 2, dtype=jnp.float32) / rotary_dim))
    angles = positions.astype(jnp.float32)[..., None] * inv_freq  # [b, t, rot/2]
    angles = jnp.concatenate([angles, angles], -1)[:, :, None, :]
    # The angles in fp32, the rotation in the compute dtype, as the reference (HF GPTNeoX) does:
    # fp32 copies of q and k would be the largest temporaries of a bf16 attention layer.
    cos, sin = jnp.cos(angles).astype(x.dtype), jnp.sin(angles).astype(x.dtype)
    # Over the whole head (cos 1 and sin 0 past rotary_dim) rather than rotating a slice and
    # concatenating the rest back: TPU XLA copied the pass-through slice of q and k through HBM.
    rest = x.shape[-1] - rotary_dim
    if rest:
        cos = jnp.concatenate([cos, jnp.ones((*cos.shape[:-1], rest), x.dtype)], -1)
        sin = jnp.concatenate([sin, jnp.zeros((*sin.shape[:-1], rest), x.dtype)], -1)
    half = rotary_dim // 2
    rotated_half = [-x[..., half:rotary_dim], x[..., :half]] + ([jnp.zeros_like(x[..., rotary_dim:])] if rest else [])
    return x * cos + jnp.concatenate(rotated_half, -1) * sin


class Attention(nnx.Module):
    def __init__(self, cfg: ModelConfig, rngs: nnx.Rngs):
        d, n, h = cfg.d_model, cfg.num_heads, cfg.head_dim
        out_std = cfg.init_std / math.sqrt(2 * cfg.num_layers)
        self.qkv_kernel = _param(rngs, cfg.init_std, (d, n, 3, h), ("embed", "heads", "qkv", "head_dim"))
        self.qkv_bias = _param(rngs, None, (n, 3, h), ("heads", "qkv", "head_dim"))
        self.out_kernel = _param(rngs, out_std, (n, h, d), ("heads", "head_dim", "embed"))
        self.out_bias = _param(rngs, None, (d,), ("norm",))
        self.cfg = cfg

    def __call__(self, x, positions, segment_ids, kv_end=None):
        cfg, dt = self.cfg, x.dtype
        qkv = jnp.einsum("btd,dnkh->btnkh", x, self.qkv_kernel[...].astype(dt)) + self.qkv_bias[...].astype(dt)
        qkv = checkpoint_name(qkv, "qkv")
        qkv = constrain(qkv, ("act_batch", "act_seq", "act_heads", None, None))
        q, k, v = qkv[:, :, :, 0], qkv[:, :, :, 1], qkv[:, :, :, 2]
        q = rotary(q, positions, cfg.rotary_dim, cfg.rotary_base)
        k = rotary(k, positions, cfg.rotary_dim, cfg.rotary_base)
        ctx = checkpoint_name(attention(q, k, v, segment_ids, cfg.attention, kv_end), "attn_ctx")
        out = jnp.einsum("btnh,nhd->btd", ctx, self.out_kernel[...].astype(dt)) + self.out_bias[...].astype(dt)
        return checkpoint_name(out, "attn_out")

    def at(self, x, positions, kv_end, reads):
        """The output at positions ``reads`` [b, p] only: keys and values from every position of
        ``x`` [b, t, d], queries from those alone (``kv_end`` as ``attention``: key j is seen
        by the queries at j .. kv_end[j]-1). Returns [b, p, d]."""
        cfg, dt = self.cfg, x.dtype
        w, bias = self.qkv_kernel[...].astype(dt), self.qkv_bias[...].astype(dt)
        kv = jnp.einsum("btd,dnkh->btnkh", x, w[:, :, 1:]) + bias[:, 1:]
        x_at = jnp.take_along_axis(x, reads[..., None], axis=1)
        q = jnp.einsum("bpd,dnh->bpnh", x_at, w[:, :, 0]) + bias[:, 0]
        q = rotary(q, jnp.take_along_axis(positions, reads, axis=1), cfg.rotary_dim, cfg.rotary_base)
        k = rotary(kv[:, :, :, 0], positions, cfg.rotary_dim, cfg.rotary_base)
        keys = jnp.arange(x.shape[1])[None, None, :]
        seen = keys <= reads[:, :, None]  # [b, p, t]
        if kv_end is not None:
            seen = seen & (reads[:, :, None] < kv_end[:, None, :])
        ctx = jax.nn.dot_product_attention(q, k, kv[:, :, :, 1], mask=seen[:, None])
        return jnp.einsum("bpnh,nhd->bpd", ctx, self.out_kernel[...].astype(dt)) + self.out_bias[...].astype(dt)

    def cached(self, x, positions, kv_mask, cache, index):
        """Inference attention over a KV cache. ``x`` [b, t, d] fills cache slots
        ``index .. index+t-1``: its keys/values are written into ``cache`` ({"k", "v"}:
        [b, slots, heads, head_dim]) and it attends causally to every slot whose ``kv_mask``
        [b, slots] is set (left padding unset). A slot always sees itself, so padded rows stay
        finite. Returns (out [b, t, d], new cache)."""
        cfg, dt = self.cfg, x.dtype
        qkv = jnp.einsum("btd,dnkh->btnkh", x, self.qkv_kernel[...].astype(dt)) + self.qkv_bias[...].astype(dt)
        q, k, v = qkv[:, :, :, 0], qkv[:, :, :, 1], qkv[:, :, :, 2]
        q = rotary(q, positions, cfg.rotary_dim, cfg.rotary_base)
        k = rotary(k, positions, cfg.rotary_dim, cfg.rotary_base)
        cache = {name: jax.lax.dynamic_update_slice_in_dim(cache[name], new.astype(cache[name].dtype), index, axis=1)
                 for name, new in (("k", k), ("v", v))}
        cache = {name: constrain(c, ("act_batch", None, "act_heads", None)) for name, c in cache.items()}
        slots, q_slots = jnp.arange(cache["k"].shape[1]), index + jnp.arange(x.shape[1])
        causal = slots[None, :] <= q_slots[:, None]  # [t, slots]
        mask = (causal[None] & kv_mask[:, None, :].astype(bool)) | (slots[None, :] == q_slots[:, None])[None]
        ctx = jax.nn.dot_product_attention(q, cache["k"].astype(dt), cache["v"].astype(dt), mask=mask[:, None])
        out = jnp.einsum("btnh,nhd->btd", ctx, self.out_kernel[...].astype(dt)) + self.out_bias[...].astype(dt)
        return out, cache


class MLP(nnx.Module):
    def __init__(self, cfg: ModelConfig, rngs: nnx.Rngs):
        out_std = cfg.init_std / math.sqrt(2 * cfg.num_layers)
        self.in_kernel = _param(rngs, cfg.init_std, (cfg.d_model, cfg.d_ff), ("embed", "mlp"))
        self.in_bias = _param(rngs, None, (cfg.d_ff,), ("mlp",))
        self.out_kernel = _param(rngs, out_std, (cfg.d_ff, cfg.d_model), ("mlp", "embed"))
        self.out_bias = _param(rngs, None, (cfg.d_model,), ("norm",))
        self.approximate = cfg.gelu_approximate

    def __call__(self, x):
        dt = x.dtype
        h = x @ self.in_kernel[...].astype(dt) + self.in_bias[...].astype(dt)
        h = checkpoint_name(h, "mlp_in")
        h = constrain(jax.nn.gelu(h, approximate=self.approximate), ("act_batch", "act_seq", "act_mlp"))
        return h @ self.out_kernel[...].astype(dt) + self.out_bias[...].astype(dt)


class Block(nnx.Module):
    def __init__(self, cfg: ModelConfig, rngs: nnx.Rngs):
        self.ln_attn = LayerNorm(cfg.d_model, cfg.ln_eps)
        self.ln_mlp = LayerNorm(cfg.d_model, cfg.ln_eps)
        self.attn = Attention(cfg, rngs)
        self.mlp = MLP(cfg, rngs)

    def __call__(self, x, positions, segment_ids, kv_end=None):
        x = x + self.attn(self.ln_attn(x), positions, segment_ids, kv_end) + self.mlp(self.ln_mlp(x))
        return constrain(x, ("act_batch", "act_seq", "act_embed"))

    def at(self, x, positions, kv_end, reads):
        """The block's output at positions ``reads`` [b, p] only (Attention.at): all a last
        layer computes for a scorer that reads a few positions of each row."""
        x_at = jnp.take_along_axis(x, reads[..., None], axis=1)
        return x_at + self.attn.at(self.ln_attn(x), positions, kv_end, reads) + self.mlp(self.ln_mlp(x_at))

    def cached(self, x, positions, kv_mask, cache, index):
        a, cache = self.attn.cached(self.ln_attn(x), positions, kv_mask, cache, index)
        return constrain(x + a + self.mlp(self.ln_mlp(x)), ("act_batch", "act_seq", "act_embed")), cache


class GPTNeoX(nnx.Module):
    def __init__(self, cfg: ModelConfig, rngs: nnx.Rngs):
        self.cfg = cfg
        self.embed_in = _param(rngs, cfg.init_std, (cfg.vocab_size, cfg.d_model), ("vocab", "embed"))
        self.layers = nnx.List([Block(cfg, rngs) for _ in range(cfg.num_layers)])
        self.final_ln = LayerNorm(cfg.d_model, cfg.ln_eps)
        self.embed_out = _param(rngs, cfg.init_std, (cfg.d_model, cfg.vocab_size), ("embed", "vocab"))

    def __call__(self, tokens, positions=None, segment_ids=None, *, return_hidden: bool = False):
        """tokens, positions, segment_ids: int [batch, seq] -> logits [batch, seq, vocab] in dtype;
        with ``return_hidden`` the final-layer-normed hidden states [batch, seq, d_model] instead
        (alignjax.loss unembeds them chunk by chunk with ``embed_out``)."""
        x = self.hidden(tokens, positions, segment_ids)
        if return_hidden:
            return x
        return constrain(self.unembed(x), ("act_batch", "act_seq", "act_vocab"))

    def hidden(self, tokens, positions=None, segment_ids=None, *, cache=None, cache_index=0, kv_mask=None,
               kv_end=None, reads=None):
        """Final-layer-normed hidden states [batch, seq, d_model]; ``unembed`` gives the logits
        (scoring unembeds only the positions it reads). With ``cache`` (``init_cache``) the tokens
        fill slots ``cache_index ..`` of the KV cache, attend to the slots set in ``kv_mask``
        [batch, slots] and the result is (hidden, new cache); ``positions`` then count real tokens
        only (left padding: cumsum(mask) - 1). ``kv_end`` packs a prefix tree of sequences
        (attention.attention); ``positions`` are then each token's depth in the tree. ``reads`` int
        [batch, P] returns the hidden states at those positions only [batch, P, d_model]: the
        last layer computes its queries, attention and MLP there alone."""
        cfg = self.cfg
        if positions is None:
            positions = jnp.broadcast_to(jnp.arange(tokens.shape[1]), tokens.shape)
        x = jnp.take(self.embed_in[...], tokens, axis=0).astype(jnp.dtype(cfg.dtype))
        x = constrain(x, ("act_batch", "act_seq", "act_embed"))
        if cache is not None:
            new_cache = []
            for block, layer_cache in zip(self.layers, cache, strict=True):
                x, layer_cache = block.cached(x, positions, kv_mask, layer_cache, cache_index)
                new_cache.append(layer_cache)
            return self.final_ln(x), new_cache
        apply = lambda block, x: block(x, positions, segment_ids, kv_end)  # noqa: E731
        layers = list(self.layers)[:len(self.layers) - (reads is not None)]
        if cfg.scan_layers and layers:
            x = _scan(layers, x, apply, cfg.remat)
        else:
            if cfg.remat != "none":
                apply = nnx.remat(apply, policy=REMAT_POLICIES[cfg.remat])
            for block in layers:
                x = apply(block, x)
        if reads is not None:
            x = self.layers[-1].at(x, positions, kv_end, reads)
        return self.final_ln(x)

    def unembed(self, x):
        """Hidden states [..., d_model] -> logits [..., vocab] in the compute dtype."""
        dt = jnp.dtype(self.cfg.dtype)
        x, w_out = x.astype(dt), self.embed_out[...].astype(dt)
        return matmul(x, w_out) if on_cpu() else x @ w_out


def _scan(layers, x, apply, remat: str):
    """``apply(block, x)`` over ``layers`` in order as one lax.scan: the blocks' params are stacked
    on a new leading axis (unsharded: each step slices one layer, sharded as the layer's own) and
    one block body is traced for all of them; the same math as the loop."""
    graphdef = nnx.graphdef(layers[0])
    stacked = jax.tree.map(
        lambda *vs: vs[0].replace(constrain(jnp.stack([v[...] for v in vs]), (None, *vs[0].get_metadata()["axes"]))),
        *(nnx.state(block) for block in layers), is_leaf=lambda v: isinstance(v, nnx.Variable))

    def body(x, state):
        return apply(nnx.merge(graphdef, state), x), None

    if remat != "none":
        body = jax.checkpoint(body, policy=REMAT_POLICIES[remat], prevent_cse=False)
    return jax.lax.scan(body, x, stacked)[0]


def init_cache(cfg: ModelConfig, batch: int, slots: int, dtype=None) -> list[dict]:
    """An empty KV cache for ``GPTNeoX.hidden(cache=...)``: per layer {"k", "v"} zeros
    [batch, slots, heads, head_dim] in ``dtype`` (default: the compute dtype)."""
    shape = (batch, slots, cfg.num_heads, cfg.head_dim)
    dt = jnp.dtype(dtype or cfg.dtype)
    return [{"k": jnp.zeros(shape, dt), "v": jnp.zeros(shape, dt)} for _ in range(cfg.num_layers)]


def param_count(cfg: ModelConfig) -> int:
    """Analytic parameter count (embeddings included)."""
    d, f = cfg.d_model, cfg.d_ff
    per_layer = 3 * d * d + 3 * d + d * d + d + d * f + f + f * d + d + 4 * d
    return cfg.num_layers * per_layer + 2 * cfg.vocab_size * d + 2 * d


def flops_per_token(cfg: ModelConfig, seq_len: int) -> float:
    """Training FLOPs per token: 6*N (forward + backward matmuls, N = parameters that do
    matmuls, i.e. all but the input-embedding lookup) plus causal attention 6*L*T*d
    (QK^T and AV: 12*L*T*d, halved by the causal mask). The PaLM appendix-B formula."""
    n = param_count(cfg) - cfg.vocab_size * cfg.d_model
    return 6.0 * n + 6.0 * cfg.num_layers * seq_len * cfg.d_model


def init(cfg: ModelConfig, seed: int) -> GPTNeoX:
    return GPTNeoX(cfg, nnx.Rngs(params=seed))
