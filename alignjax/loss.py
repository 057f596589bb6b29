"""Next-token NLL through the unembedding without [tokens, vocab] logits.

At Pythia's 50k vocabulary the output projection and its fp32 log-softmax dominate a small
model's step: the plain path writes the [tokens, vocab] logits, reads them for the logsumexp,
writes their gradient and reads it twice more for the two backward matmuls (824 MB each at
batch 8 x seq 512). ``chunked_nll`` runs the same math a sequence chunk at a time, so only a
[batch, chunk, vocab] block ever exists, and computes the gradient in the same pass (the loss
is a sum, so its cotangent is one scalar that the backward just scales by): three matmuls, as
the plain path, none recomputed; what waits for the backward is d/dhidden and d/dw_out, the
size of the hidden states and of the weight. ``matmul``: the plain path's unembedding on CPU."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from alignjax.sharding import constrain


def chunked_nll(hidden: jax.Array, w_out: jax.Array, targets: jax.Array, weights: jax.Array | None,
                chunk: int) -> tuple[jax.Array, jax.Array]:
    """(sum of weighted next-token NLL, sum of weights), fp32: ``objectives.loss_fn``'s math with the
    logits ``hidden @ w_out`` ([batch, seq, d_model] @ [d_model, vocab], in their dtype, upcast
    to fp32) computed ``chunk`` sequence positions at a time (a last, shorter chunk takes the
    remainder). The batch axis is never split, so a batch sharded over data/fsdp stays so. A
    vocab sharded over tensor stays so too: GSPMD turns each chunk's max, sum and target-logit
    gather into per-shard work plus an all-reduce of [batch, chunk] values (no logits are
    gathered), and on TPU reduces d/dw_out over the batch once, after the scan."""
    weights = jnp.ones(targets.shape, jnp.float32) if weights is None else weights.astype(jnp.float32)
    chunk = max(1, min(int(chunk), hidden.shape[1]))
    return _nll(chunk, hidden, w_out, targets, weights), jnp.sum(weights)


def _chunk(h, w, t, wt, grad: bool):
    """One chunk: the unweighted NLL [b, c] and, if ``grad``, the gradient of its weighted sum
    (d/dh [b, c, d] in h's dtype, d/dw [d, v] in fp32)."""
    logits = constrain(jnp.einsum("bcd,dv->bcv", h, w).astype(jnp.float32), ("act_batch", "act_seq", "act_vocab"))
    m = jnp.max(logits, -1, keepdims=True)
    e = jnp.exp(logits - m)  # the one exp pass: logsumexp and softmax share it
    s = jnp.sum(e, -1)
    nll = m[..., 0] + jnp.log(s) - jnp.take_along_axis(logits, t[..., None], -1)[..., 0]
    if not grad:
        return nll, None, None
    onehot = jnp.arange(logits.shape[-1])[None, None, :] == t[..., None]
    # d nll / d logits = weight * (softmax - onehot), cast to the matmul dtype as autodiff would.
    g = (e * (wt / s)[..., None] - jnp.where(onehot, wt[..., None], 0.0)).astype(h.dtype)
    dh = jnp.einsum("bcv,dv->bcd", g, w)
    dw = jnp.einsum("bcd,bcv->dv", h, g, preferred_element_type=jnp.float32)
    return nll, dh, dw


def _chunks(x, chunk):
    """[b, t, ...] -> ([n, b, chunk, ...] full chunks, [b, t - n * chunk, ...] remainder)."""
    n = x.shape[1] // chunk
    full = x[:, : n * chunk].reshape(x.shape[0], n, chunk, *x.shape[2:]).swapaxes(0, 1)
    return full, x[:, n * chunk:]


def _run(chunk, hidden, w_out, targets, weights, grad: bool):
    """Scan over the full chunks, then the remainder: (nll [b, t], dh, dw) (None unless ``grad``)."""
    (h, h_rest), (t, t_rest), (wt, wt_rest) = (_chunks(x, chunk) for x in (hidden, targets, weights))

    def step(dw_acc, xs):
        nll, dh, dw = _chunk(xs[0], w_out, xs[1], xs[2], grad)
        return (None if dw is None else dw_acc + dw), (nll, dh)

    dw = jnp.zeros(w_out.shape, jnp.float32) if grad else None
    dw, outs = jax.lax.scan(step, dw, (h, t, wt))
    outs = [None if x is None else x.swapaxes(0, 1).reshape(hidden.shape[0], -1, *x.shape[3:]) for x in outs]
    if h_rest.shape[1]:
        dw, rest = step(dw, (h_rest, t_rest, wt_rest))
        outs = [None if x is None else jnp.concatenate([x, r], 1) for x, r in zip(outs, rest)]
    return (*outs, dw)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _nll(chunk, hidden, w_out, targets, weights):
    nll, _, _ = _run(chunk, hidden, w_out, targets, weights, grad=False)
    return jnp.sum(nll * weights)


def _nll_fwd(chunk, hidden, w_out, targets, weights):
    nll, dh, dw = _run(chunk, hidden, w_out, targets, weights, grad=True)
    return jnp.sum(nll * weights), (nll, dh, dw.astype(w_out.dtype))


def _nll_bwd(chunk, res, ct):
    nll, dh, dw = res
    # The weights are data, but their cotangent (the per-token NLL) is what autodiff would give.
    return (ct * dh).astype(dh.dtype), (ct * dw).astype(dw.dtype), None, ct * nll


_nll.defvjp(_nll_fwd, _nll_bwd)


@jax.custom_vjp
def matmul(x: jax.Array, w: jax.Array) -> jax.Array:
    """``x @ w`` ([..., in] @ [in, out]) whose weight gradient is a single dot straight into the
    [in, out] layout. JAX's own transpose rule builds it as transpose(dot(g, x)), which XLA:CPU
    lowers to a copy of the whole output gradient (the [tokens, vocab] logits gradient at the
    output layer: 824 MB at batch 8 x seq 512) plus a slower fallback dot. Same math; the model's
    unembedding uses it on CPU."""
    return x @ w


def _matmul_fwd(x, w):
    return x @ w, (x, w)


def _matmul_bwd(res, g):
    x, w = res
    return jnp.einsum("...o,io->...i", g, w), jnp.einsum("...i,...o->io", x, g)


matmul.defvjp(_matmul_fwd, _matmul_bwd)
