"""Causal self-attention kernels and the one choice between them, ``attention()``.

The math is ``jax.nn.dot_product_attention``'s everywhere; what differs is how it runs: the
Pallas splash kernel on TPU, a blockwise version on CPU (the masked upper triangle neither
computed nor stored), XLA's or cuDNN's fused op elsewhere. The platform is the traced one, so
an AOT compile for a TPU topology on a CPU host (alignjax.plan) takes the TPU path.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from alignjax.sharding import logical_to_spec


# Splash attention tiles (MaxText's defaults); a block never exceeds the sequence.
SPLASH_BLOCK = 512


def platform() -> str:
    """The platform the traced computation targets: that of the ambient mesh's devices (so an AOT
    compile for a TPU topology on a CPU host traces the TPU code paths), else the default backend."""
    device = getattr(jax.sharding.get_abstract_mesh(), "abstract_device", None)
    return device.platform if device is not None else jax.default_backend()


def on_cpu() -> bool:
    """CPU-only code paths (same math, faster on XLA:CPU); TPU and GPU keep the plain ops."""
    return platform() == "cpu"


def attention(q, k, v, segment_ids=None, impl: str = "xla", kv_end=None):
    """Causal attention, q, k, v [batch, seq, heads, head_dim] -> [batch, seq, heads, head_dim];
    ``segment_ids`` int [batch, seq] keeps packed documents apart; ``impl`` a model.attention name.
    ``kv_end`` int [batch, seq] packs a prefix tree in depth-first order (the scorer's shared
    prompt prefixes): key j is seen by queries j .. kv_end[j]-1, its subtree, and no others."""
    where = platform()
    if impl == "splash" and where == "tpu" and kv_end is None:
        return splash_attention(q, k, v, segment_ids)
    if impl in ("xla", "splash") and where == "cpu":
        return blockwise_causal_attention(q, k, v, segment_ids, kv_end=kv_end)
    mask = None
    if segment_ids is not None:  # packed documents do not attend to each other
        mask = segment_ids[:, None, :, None] == segment_ids[:, None, None, :]
    if kv_end is not None:
        seen = jnp.arange(q.shape[1])[None, None, :, None] < kv_end[:, None, None, :]
        mask = seen if mask is None else mask & seen
    return jax.nn.dot_product_attention(q, k, v, mask=mask, is_causal=True,
                                        implementation="xla" if impl == "splash" else impl)


def splash_attention(q, k, v, segment_ids=None):
    """Causal attention with the Pallas splash kernel (TPU only): q, k, v [batch, seq, heads,
    head_dim] -> [batch, seq, heads, head_dim]. Fully masked blocks are skipped, so a causal
    call costs about half the dense FLOPs. The compiler's cost analysis does not see inside the
    kernel; alignjax.plan counts its FLOPs analytically. Runs per shard (shard_map): batch over
    the act_batch mesh axes, heads over act_heads. Its residuals (output, logsumexp) are named
    "attn_ctx" for the remat policies."""
    # Pallas' TPU kernels: imported only where a TPU step is traced.
    from jax.experimental.pallas.ops.tpu import splash_attention as sa

    b, t, n, h = q.shape
    mesh = jax.sharding.get_abstract_mesh()
    spec = logical_to_spec(("act_batch", "act_heads", None, None), (b, n, t, h), None if mesh.empty else mesh)
    head_shards = 1 if mesh.empty or spec[1] is None else math.prod(
        mesh.shape[a] for a in ((spec[1],) if isinstance(spec[1], str) else spec[1]))
    block = min(SPLASH_BLOCK, t)
    sizes = sa.BlockSizes(block_q=block, block_kv=block, block_kv_compute=block, block_q_dkv=block,
                          block_kv_dkv=block, block_kv_dkv_compute=block, block_q_dq=block, block_kv_dq=block)
    mask = sa.MultiHeadMask([sa.CausalMask((t, t))] * (n // head_shards))
    kernel = sa.make_splash_mha(mask, block_sizes=sizes, head_shards=1, q_seq_shards=1,
                                residual_checkpoint_name="attn_ctx")
    # The kernel does not scale the scores; scale q in fp32 before the cast as the xla path does.
    q = (q.astype(jnp.float32) * (1.0 / math.sqrt(h))).astype(q.dtype)
    q, k, v = (x.swapaxes(1, 2) for x in (q, k, v))  # [b, n, t, h]

    def local(q, k, v, seg):
        ids = None if seg is None else sa.SegmentIds(q=seg, kv=seg)
        return jax.vmap(lambda q, k, v, ids: kernel(q, k, v, segment_ids=ids))(q, k, v, ids)

    if mesh.empty:
        out = local(q, k, v, segment_ids)
    else:
        seg_spec = None if segment_ids is None else jax.sharding.PartitionSpec(spec[0], None)
        out = jax.shard_map(local, in_specs=(spec, spec, spec, seg_spec), out_specs=spec, check_vma=False)(
            q, k, v, segment_ids)
    return out.swapaxes(1, 2)


def blockwise_causal_attention(q, k, v, segment_ids=None, block: int = 128, kv_end=None):
    """Causal softmax attention computed ``block`` queries at a time: block i attends only to keys
    before its end, so the masked upper triangle of the scores is neither computed nor stored
    (about half of the T x T work for long T). The math is jax.nn.dot_product_attention's
    (implementation="xla"): fp32 scores scaled after the dot, the same large negative for masked
    keys, fp32 softmax, probabilities cast back to v's dtype. Used on CPU, where the full version's
    [batch, heads, T, T] elementwise passes dominate (2.5x slower at pythia-70m, seq 512).
    q, k, v: [batch, seq, heads, head_dim]; segment_ids, kv_end: int [batch, seq] or None (as
    ``attention``)."""
    t, scale = q.shape[1], 1.0 / math.sqrt(q.shape[-1])
    large_negative = jnp.float32(-0.7 * float(jnp.finfo(jnp.float32).max))
    precision = jax.lax.DotAlgorithmPreset.BF16_BF16_F32 if q.dtype == jnp.bfloat16 else None
    # Heads-major once: sliced per block in [b, t, n, h], XLA transposed each block's key and
    # value prefix again (O(T^2) copies; 1.7x slower at pythia-70m, 10 x 384 tokens).
    q, k, v = (x.transpose(0, 2, 1, 3) for x in (q, k, v))
    out = []
    for start in range(0, t, block):
        end = min(start + block, t)
        scores = jnp.einsum("bnth,bnsh->bnts", q[:, :, start:end], k[:, :, :end], precision=precision,
                            preferred_element_type=jnp.float32) * jnp.float32(scale)
        mask = (jnp.arange(start, end)[:, None] >= jnp.arange(end)[None, :])[None, None]
        if segment_ids is not None:  # packed documents do not attend to each other
            mask = mask & (segment_ids[:, None, start:end, None] == segment_ids[:, None, None, :end])
        if kv_end is not None:
            mask = mask & (jnp.arange(start, end)[None, None, :, None] < kv_end[:, None, None, :end])
        probs = jax.nn.softmax(jnp.where(mask, scores, large_negative), axis=-1).astype(v.dtype)
        out.append(jnp.einsum("bnts,bnsh->bnth", probs, v[:, :, :end]))
    return (jnp.concatenate(out, axis=2) if len(out) > 1 else out[0]).transpose(0, 2, 1, 3)

