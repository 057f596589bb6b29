"""alignjax.loss.chunked_nll: the fused unembedding + cross-entropy equals the plain logits path."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec as P

from alignjax import loss as loss_lib
from alignjax import model as M
from alignjax import sharding


def _plain(hidden, w_out, targets, weights):
    """objectives.loss_fn's math on given hidden states: full [b, t, vocab] logits (the model's CPU matmul)."""
    nll = _plain_nll(loss_lib.matmul(hidden, w_out), targets, reduce=False)
    weights = jnp.ones_like(nll) if weights is None else weights.astype(jnp.float32)
    return jnp.sum(nll * weights), jnp.sum(weights)


def _plain_nll(logits, targets, reduce=True):
    logits = logits.astype(jnp.float32)
    nll = jax.nn.logsumexp(logits, -1) - jnp.take_along_axis(logits, targets[..., None], -1)[..., 0]
    return jnp.sum(nll) if reduce else nll


def _close(got, want, rtol=1e-6):
    """Equal to fp32 rounding: each array within ``rtol`` of the other relative to its scale (an
    element's own magnitude, or the array's largest, whichever is larger: summing in a different
    order moves near-zero gradient entries by rounding of the large ones)."""
    for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
        g, w = np.asarray(g, np.float64), np.asarray(w, np.float64)
        np.testing.assert_allclose(g, w, rtol=rtol, atol=rtol * np.max(np.abs(w)))


def _head(b, t, d, v, seed=0):
    rng = np.random.default_rng(seed)
    hidden = jnp.asarray(rng.normal(size=(b, t, d)), jnp.float32)
    w_out = jnp.asarray(0.02 * rng.normal(size=(d, v)), jnp.float32)
    targets = jnp.asarray(rng.integers(0, v, (b, t)), jnp.int32)
    weights = jnp.asarray(rng.integers(0, 2, (b, t)) * rng.uniform(0.5, 1.5, (b, t)), jnp.float32)
    return hidden, w_out, targets, weights


@pytest.mark.parametrize("weighted", [True, False])
@pytest.mark.parametrize("chunk", [3, 7, 64])  # 3 leaves a remainder of 1; 64 > seq is one chunk
def test_50k_vocab_head_loss_and_grads_equal_the_plain_path(chunk, weighted):
    hidden, w_out, targets, weights = _head(2, 7, 32, 50304)
    wt = weights if weighted else None
    argnums = (0, 1, 2) if weighted else (0, 1)  # the weights' cotangent too: the per-token NLL
    fused = lambda h, w, wt: loss_lib.chunked_nll(h, w, targets, wt, chunk)  # noqa: E731
    plain = lambda h, w, wt: _plain(h, w, targets, wt)  # noqa: E731
    got = jax.jit(jax.value_and_grad(lambda *a: fused(*a)[0], argnums))(hidden, w_out, wt)
    want = jax.jit(jax.value_and_grad(lambda *a: plain(*a)[0], argnums))(hidden, w_out, wt)
    _close(got, want)
    _close(jax.jit(fused)(hidden, w_out, wt), plain(hidden, w_out, wt))  # the no-grad (eval) path


def _tiny_losses(chunk, batch):
    """objectives.loss_fn (what the train step differentiates) with train.loss_chunk=chunk."""
    from alignjax import objectives

    cfg = M.ModelConfig(num_layers=2, d_model=64, num_heads=4, d_ff=256, vocab_size=512)
    graphdef, params = nnx.split(M.init(cfg, 0))
    loss = lambda p: objectives.loss_fn(p, graphdef, batch, chunk)  # noqa: E731
    (total, count), grads = jax.jit(jax.value_and_grad(loss, has_aux=True))(params.to_pure_dict())
    return total, count, grads


def test_tiny_model_loss_and_every_param_grad_equal_the_plain_path():
    rng = np.random.default_rng(1)
    b, t = 4, 30
    segment_ids = np.repeat(np.arange(2)[None], b, 0).repeat(t // 2, 1)  # two packed documents a row
    batch = {"inputs": jnp.asarray(rng.integers(0, 512, (b, t)), jnp.int32),
             "targets": jnp.asarray(rng.integers(0, 512, (b, t)), jnp.int32),
             "positions": jnp.asarray(np.tile(np.arange(t // 2), (b, 2)), jnp.int32),
             "segment_ids": jnp.asarray(segment_ids, jnp.int32),
             "weights": jnp.asarray(rng.integers(0, 2, (b, t)), jnp.float32)}
    want = _tiny_losses(0, batch)
    got = _tiny_losses(8, batch)  # 30 = 3 x 8 + 6
    assert float(got[1]) == float(want[1]) == float(batch["weights"].sum())
    _close(got, want)


def test_sharded_batch_and_vocab_give_the_same_loss_and_grads():
    assert jax.device_count() == 8
    hidden, w_out, targets, weights = _head(4, 10, 16, 1024, seed=2)
    f = jax.value_and_grad(lambda h, w: loss_lib.chunked_nll(h, w, targets, weights, 4)[0], (0, 1))
    want = jax.jit(f)(hidden, w_out)
    mesh = sharding.make_mesh(2, 2, 2)
    with jax.set_mesh(mesh):  # batch over data x fsdp, vocab over tensor, as the trainer lays them out
        h = jax.device_put(hidden, NamedSharding(mesh, P(("data", "fsdp"), None, None)))
        w = jax.device_put(w_out, NamedSharding(mesh, P(None, "tensor")))
        got = jax.jit(f)(h, w)
    assert got[1][1].sharding.spec == P(None, "tensor")
    _close(got, want)


def test_bf16_compute_tracks_the_plain_path():
    hidden, w_out, targets, weights = _head(2, 9, 32, 4096, seed=3)
    h, w = hidden.astype(jnp.bfloat16), w_out.astype(jnp.bfloat16)
    got = jax.value_and_grad(lambda h, w: loss_lib.chunked_nll(h, w, targets, weights, 4)[0], (0, 1))(h, w)
    want = jax.value_and_grad(lambda h, w: _plain(h, w, targets, weights)[0], (0, 1))(h, w)
    assert [x.dtype for x in got[1]] == [jnp.bfloat16, jnp.bfloat16]
    _close(got, want, rtol=2e-2)


def test_tpu_compile_keeps_the_vocab_sharded_and_needs_a_fraction_of_the_memory():
    """AOT through libtpu (alignjax.plan's topology): the fused path lowers for TPU on a 2x2x2
    mesh and its temporaries are a fraction of the plain path's [tokens, vocab] logits."""
    pytest.importorskip("libtpu", reason="libtpu not installed (pip install -e '.[tpu]')")
    from alignjax import plan

    mesh = sharding.make_mesh(2, 2, 2, devices=plan.topology_devices(plan.parse_topology("v5litepod-8")))
    b, t, d, v = 16, 2048, 512, 50304
    with jax.set_mesh(mesh):
        spec = lambda shape, dt, *axes: jax.ShapeDtypeStruct(shape, dt, sharding=NamedSharding(mesh, P(*axes)))  # noqa: E731
        args = (spec((b, t, d), jnp.bfloat16, ("data", "fsdp")), spec((d, v), jnp.bfloat16, "fsdp", "tensor"),
                spec((b, t), jnp.int32, ("data", "fsdp")))

        def plain(h, w, targets):
            logits = sharding.constrain(h @ w, ("act_batch", "act_seq", "act_vocab"))
            return _plain_nll(logits, targets)

        fused = lambda h, w, targets: loss_lib.chunked_nll(h, w, targets, None, 256)[0]  # noqa: E731
        temps = {}
        for name, f in (("plain", plain), ("fused", fused)):
            compiled = jax.jit(jax.value_and_grad(f, (0, 1))).lower(*args).compile()
            temps[name] = compiled.memory_analysis().temp_size_in_bytes
            if name == "fused":  # each logits block stays split over tensor: nothing gathers a full vocab row
                assert not [line for line in compiled.as_text().splitlines() if "all-gather" in line and f",{v}]" in line]
    assert temps["fused"] < temps["plain"] / 4, temps
