import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from alignjax import model as M


def test_pythia_6_9b_has_exactly_6_857_302_016_parameters():
    cfg = M.ModelConfig.from_preset("6.9b")
    assert (cfg.num_layers, cfg.d_model, cfg.num_heads, cfg.d_ff, cfg.vocab_size) == (32, 4096, 32, 16384, 50432)
    abstract = nnx.state(nnx.eval_shape(lambda: M.init(cfg, 0)), nnx.Param)
    assert sum(x.size for x in jax.tree.leaves(abstract)) == 6_857_302_016
    assert M.param_count(cfg) == 6_857_302_016


def test_sfm_6_9b_has_exactly_6_856_253_440_parameters():
    cfg = M.ModelConfig.from_preset("sfm-6.9b")
    assert (cfg.num_layers, cfg.d_model, cfg.num_heads, cfg.d_ff, cfg.vocab_size) == (32, 4096, 32, 16384, 50304)
    abstract = nnx.state(nnx.eval_shape(lambda: M.init(cfg, 0)), nnx.Param)
    assert sum(x.size for x in jax.tree.leaves(abstract)) == 6_856_253_440
    assert M.param_count(cfg) == 6_856_253_440


@pytest.mark.parametrize("size", list(M.PRESETS))
def test_every_preset_builds_abstractly(size):
    cfg = M.ModelConfig.from_preset(size)
    abstract = nnx.state(nnx.eval_shape(lambda: M.init(cfg, 0)), nnx.Param)
    assert sum(x.size for x in jax.tree.leaves(abstract)) == M.param_count(cfg)


def test_init_follows_pythia_scheme():
    cfg = M.ModelConfig(num_layers=8, d_model=256, num_heads=4, d_ff=1024, vocab_size=1024)
    p = nnx.state(M.init(cfg, 0), nnx.Param).to_pure_dict()
    out_std = 0.02 / np.sqrt(2 * cfg.num_layers)
    stds = {
        "qkv": np.std([p["layers"][i]["attn"]["qkv_kernel"] for i in range(8)]),
        "attn_out": np.std([p["layers"][i]["attn"]["out_kernel"] for i in range(8)]),
        "mlp_in": np.std([p["layers"][i]["mlp"]["in_kernel"] for i in range(8)]),
        "mlp_out": np.std([p["layers"][i]["mlp"]["out_kernel"] for i in range(8)]),
        "embed_in": np.std(p["embed_in"]),
        "embed_out": np.std(p["embed_out"]),
    }
    for name in ("qkv", "mlp_in", "embed_in", "embed_out"):
        assert stds[name] == pytest.approx(0.02, rel=0.03), name
    for name in ("attn_out", "mlp_out"):
        assert stds[name] == pytest.approx(out_std, rel=0.03), name
    assert not np.any(p["layers"][0]["attn"]["qkv_bias"]) and np.all(p["final_ln"]["scale"] == 1)


def _tiny(**kw):
    return M.ModelConfig(**{**dict(num_layers=2, d_model=64, num_heads=4, d_ff=256, vocab_size=300), **kw})


def test_segment_ids_keep_packed_documents_apart():
    model = M.init(_tiny(), 0)
    rng = np.random.default_rng(0)
    a, b = rng.integers(2, 300, 5), rng.integers(2, 300, 7)
    packed = jnp.asarray(np.concatenate([a, b]))[None]
    seg = jnp.asarray([0] * 5 + [1] * 7)[None]
    pos = jnp.asarray(list(range(5)) + list(range(7)))[None]
    together = model(packed, pos, seg)
    alone = model(jnp.asarray(b)[None])
    np.testing.assert_allclose(together[0, 5:], alone[0], atol=1e-5)
    # Without the mask, document b sees document a.
    assert not np.allclose(model(packed, pos)[0, 5:], alone[0], atol=1e-3)


@pytest.mark.parametrize("platform", ["cpu", "gpu"])  # blockwise CPU path; the masked XLA op elsewhere
def test_a_packed_prefix_tree_gives_each_branch_its_standalone_hidden_states(platform, monkeypatch):
    from alignjax import attention

    monkeypatch.setattr(attention, "platform", lambda: platform)
    model = M.init(_tiny(), 0)
    rng = np.random.default_rng(0)
    root, left, right, other = (list(rng.integers(2, 300, n)) for n in (6, 4, 5, 3))
    # depth-first: root, root+left, root+right, then an unrelated sequence
    tokens = root + left + right + other
    depth = list(range(6)) + list(range(6, 10)) + list(range(6, 11)) + list(range(3))
    kv_end = [15] * 6 + [10] * 4 + [15] * 5 + [18] * 3
    h = model.hidden(jnp.asarray(tokens)[None], jnp.asarray(depth)[None], kv_end=jnp.asarray(kv_end)[None])[0]
    for seq, nodes in ((root + left, list(range(10))), (root + right, list(range(6)) + list(range(10, 15))),
                       (other, list(range(15, 18)))):
        np.testing.assert_allclose(h[jnp.asarray(nodes)], model.hidden(jnp.asarray(seq)[None])[0], atol=1e-5)
    # Without kv_end the right branch sees the left one.
    plain = model.hidden(jnp.asarray(tokens)[None], jnp.asarray(depth)[None])[0]
    assert not np.allclose(plain[10:15], h[10:15], atol=1e-3)


@pytest.mark.parametrize("scan", [False, True])
@pytest.mark.parametrize("tree", [False, True])
def test_reading_a_few_positions_gives_their_full_hidden_states(tree, scan):
    # The last layer then runs its queries, attention and MLP at those positions only.
    model = M.init(_tiny(num_layers=3, scan_layers=scan), 0)
    rng = np.random.default_rng(1)
    tokens = jnp.asarray(rng.integers(2, 300, (2, 18)))
    depth = jnp.asarray([list(range(6)) + list(range(6, 10)) + list(range(6, 11)) + list(range(3))] * 2)
    kv_end = jnp.asarray([[15] * 6 + [10] * 4 + [15] * 5 + [18] * 3] * 2) if tree else None
    reads = jnp.asarray([[9, 14, 17, 0], [5, 5, 3, 12]])
    full = model.hidden(tokens, depth, kv_end=kv_end)
    want = jnp.take_along_axis(full, reads[..., None], axis=1)
    np.testing.assert_allclose(model.hidden(tokens, depth, kv_end=kv_end, reads=reads), want, rtol=1e-5, atol=1e-6)


def test_rotary_is_partial_and_rotate_half():
    x = jnp.asarray(np.random.default_rng(1).normal(size=(1, 3, 2, 16)), jnp.float32)
    pos = jnp.arange(3)[None]
    y = M.rotary(x, pos, rotary_dim=4, base=10000.0)
    np.testing.assert_array_equal(y[..., 4:], x[..., 4:])  # 75% of each head untouched
    np.testing.assert_allclose(y[:, 0], x[:, 0], atol=1e-7)  # position 0 is the identity
    # rotate-half pairs feature i with i + rotary_dim/2
    inv = 1.0 / 10000 ** (np.arange(0, 4, 2) / 4)
    ang = 2 * inv
    x1, x2 = x[0, 2, :, :2], x[0, 2, :, 2:4]
    np.testing.assert_allclose(y[0, 2, :, :2], x1 * np.cos(ang) - x2 * np.sin(ang), atol=1e-6)
    np.testing.assert_allclose(y[0, 2, :, 2:4], x2 * np.cos(ang) + x1 * np.sin(ang), atol=1e-6)


@pytest.mark.parametrize("policy", ["full", "dots", "save_proj"])
def test_remat_changes_memory_not_math(policy):
    tokens = jnp.asarray(np.random.default_rng(2).integers(0, 300, (2, 16)))

    def loss(cfg):
        model = M.init(cfg, 0)
        gd, st = nnx.split(model)

        def f(st):
            return jnp.mean(nnx.merge(gd, st)(tokens) ** 2)

        return jax.value_and_grad(f)(st)

    (l0, g0), (l1, g1) = loss(_tiny()), loss(_tiny(remat=policy))
    np.testing.assert_allclose(l0, l1, rtol=1e-6)
    for a, b in zip(jax.tree.leaves(g0), jax.tree.leaves(g1)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


def test_bf16_compute_keeps_fp32_params_and_tracks_fp32_logits():
    tokens = jnp.asarray(np.random.default_rng(3).integers(0, 300, (2, 16)))
    m32, m16 = M.init(_tiny(), 0), M.init(_tiny(dtype="bfloat16"), 0)
    assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(nnx.state(m16, nnx.Param)))
    out16 = m16(tokens)
    assert out16.dtype == jnp.bfloat16
    np.testing.assert_allclose(out16.astype(jnp.float32), m32(tokens), atol=0.05)


def test_bad_model_config_is_rejected_with_a_named_field():
    with pytest.raises(ValueError, match="num_heads"):
        M.ModelConfig(d_model=100, num_heads=3)
    with pytest.raises(ValueError, match="remat"):
        M.ModelConfig(remat="everything")
    with pytest.raises(ValueError, match="valid: 14m"):
        M.ModelConfig.from_preset("7b")


@pytest.mark.parametrize("with_segments", [False, True])
def test_blockwise_cpu_attention_equals_dot_product_attention(with_segments):
    from alignjax.attention import blockwise_causal_attention

    q, k, v = (jax.random.normal(jax.random.key(i), (2, 300, 4, 16)) for i in range(3))
    seg = jnp.cumsum(jax.random.bernoulli(jax.random.key(9), 0.02, (2, 300)), -1) if with_segments else None
    mask = None if seg is None else seg[:, None, :, None] == seg[:, None, None, :]
    want = jax.nn.dot_product_attention(q, k, v, mask=mask, is_causal=True, implementation="xla")
    np.testing.assert_allclose(blockwise_causal_attention(q, k, v, seg, block=128), want, atol=1e-5)


@pytest.mark.parametrize("remat", ["none", "full", "save_proj"])
def test_scanned_layers_give_the_loops_logits_and_grads(remat):
    tokens = jnp.asarray(np.random.default_rng(4).integers(0, 300, (2, 16)))
    seg = jnp.asarray([[0] * 6 + [1] * 10, [0] * 16])

    def run(cfg):
        graphdef, params = nnx.split(M.init(cfg, 0))

        def f(params):
            logits = nnx.merge(graphdef, params)(tokens, None, seg)
            return jnp.mean(logits ** 2), logits

        return jax.jit(jax.value_and_grad(f, has_aux=True))(params)

    cfg = _tiny(num_layers=3, remat=remat)
    ((l0, logits0), g0), ((l1, logits1), g1) = run(cfg), run(dataclasses.replace(cfg, scan_layers=True))
    np.testing.assert_allclose(logits1, logits0, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(l1, l0, rtol=1e-6)
    # The params keep their per-layer layout (checkpoints, convert and LoRA see no difference).
    assert jax.tree.structure(g1) == jax.tree.structure(g0)
    for a, b in zip(jax.tree.leaves(g0), jax.tree.leaves(g1)):
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-7)
