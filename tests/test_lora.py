"""LoRA / rsLoRA: the adapter path, frozen base, merged export == adapter model (alignjax and HF)."""

import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from alignjax import checkpoint as ckpt_lib
from alignjax import config as config_lib
from alignjax import lora, model_state, posttrain, sharding
from alignjax.model import ModelConfig, init
from alignjax.train import Setup, train
from test_posttrain import chat_cfg, write_chats


def test_adapter_path_equals_the_transformed_weight_for_every_target():
    """x@W + scale*(x@A)@B, written per layer in each kernel's own layout, equals the model's
    contraction with W + scale*A@B (what lora.apply hands the model)."""
    d, n, h, f, r, b, t = 16, 4, 4, 32, 3, 2, 5
    key = iter(jax.random.split(jax.random.key(0), 16))
    rnd = lambda *s: jax.random.normal(next(key), s)  # noqa: E731
    base = {"layers": {0: {"attn": {"qkv_kernel": rnd(d, n, 3, h), "out_kernel": rnd(n, h, d)},
                           "mlp": {"in_kernel": rnd(d, f), "out_kernel": rnd(f, d)}}}}
    spec = lora.LoraSpec(r, 8.0, True, tuple(lora.TARGETS))
    ad = {"layers": {0: {"attn": {"qkv_kernel": {"a": rnd(d, r), "b": rnd(r, n, 3, h)},
                                  "out_kernel": {"a": rnd(n, h, r), "b": rnd(r, d)}},
                         "mlp": {"in_kernel": {"a": rnd(d, r), "b": rnd(r, f)},
                                 "out_kernel": {"a": rnd(f, r), "b": rnd(r, d)}}}}}
    s = spec.scale
    eff = lora.apply(base, ad, s)["layers"][0]
    W, A = base["layers"][0], ad["layers"][0]
    x, ctx, hid = rnd(b, t, d), rnd(b, t, n, h), rnd(b, t, f)
    hi = dict(precision="highest")
    checks = [
        (jnp.einsum("btd,dnkh->btnkh", x, W["attn"]["qkv_kernel"], **hi)
         + s * jnp.einsum("btr,rnkh->btnkh", jnp.einsum("btd,dr->btr", x, A["attn"]["qkv_kernel"]["a"], **hi),
                          A["attn"]["qkv_kernel"]["b"], **hi),
         jnp.einsum("btd,dnkh->btnkh", x, eff["attn"]["qkv_kernel"], **hi)),
        (jnp.einsum("btnh,nhd->btd", ctx, W["attn"]["out_kernel"], **hi)
         + s * jnp.einsum("btnh,nhr->btr", ctx, A["attn"]["out_kernel"]["a"], **hi) @ A["attn"]["out_kernel"]["b"],
         jnp.einsum("btnh,nhd->btd", ctx, eff["attn"]["out_kernel"], **hi)),
        (jnp.matmul(x, W["mlp"]["in_kernel"], **hi) + s * (x @ A["mlp"]["in_kernel"]["a"]) @ A["mlp"]["in_kernel"]["b"],
         jnp.matmul(x, eff["mlp"]["in_kernel"], **hi)),
        (jnp.matmul(hid, W["mlp"]["out_kernel"], **hi) + s * (hid @ A["mlp"]["out_kernel"]["a"]) @ A["mlp"]["out_kernel"]["b"],
         jnp.matmul(hid, eff["mlp"]["out_kernel"], **hi)),
    ]
    for adapter_path, merged in checks:
        np.testing.assert_allclose(adapter_path, merged, rtol=2e-4, atol=2e-4)
    assert float(jnp.abs(eff["mlp"]["in_kernel"] - W["mlp"]["in_kernel"]).max()) > 1.0  # the adapters do count
    assert base["layers"][0]["attn"]["qkv_kernel"] is W["attn"]["qkv_kernel"]  # apply leaves the base alone
    assert lora.LoraSpec(16, 32.0, True, ("qkv",)).scale == 32.0 / 4  # rsLoRA: alpha / sqrt(r)
    assert lora.LoraSpec(16, 32.0, False, ("qkv",)).scale == 32.0 / 16  # LoRA: alpha / r


def test_fresh_adapters_leave_the_model_unchanged_and_bad_targets_fail():
    cfg = ModelConfig(num_layers=2, d_model=32, num_heads=2, d_ff=64, vocab_size=128, max_seq_len=32)
    params = nnx.state(init(cfg, 0), nnx.Param).to_pure_dict()
    spec = lora.LoraSpec(4, 16.0, True, ("qkv", "mlp_out"))
    ad = lora.init(spec, params, 0)
    assert set(ad["layers"][1]["attn"]) == {"qkv_kernel"} and set(ad["layers"][1]["mlp"]) == {"out_kernel"}
    a = ad["layers"][0]["attn"]["qkv_kernel"]["a"]
    assert a.shape == (32, 4) and float(jnp.abs(a).max()) <= 1 / math.sqrt(32) and float(jnp.std(a)) > 0
    for x, y in zip(jax.tree.leaves(lora.apply(params, ad, spec.scale)), jax.tree.leaves(params)):
        np.testing.assert_array_equal(x, y)  # B = 0: training starts at the base model
    c = config_lib.default_config()
    c.lora.update(dict(rank=4, targets="qkv,ffn"))
    with pytest.raises(config_lib.ConfigError, match="lora.targets.*'ffn'"):
        Setup(c)


def test_lora_trains_only_adapters_and_its_merged_export_matches_the_adapter_model(tmp_path):
    import torch
    import transformers

    from alignjax import convert

    base_cfg = ModelConfig(num_layers=2, d_model=64, num_heads=4, d_ff=256, vocab_size=512, max_seq_len=128)
    base = nnx.state(init(base_cfg, 3), nnx.Param).to_pure_dict()
    ckpt_lib.save_params(tmp_path / "base", base, base_cfg)
    cfg = chat_cfg("sft", write_chats(tmp_path / "c.jsonl"), num_steps=3)
    cfg.lora.update(dict(rank=4, alpha=8.0, targets="qkv,attn_out,mlp_in,mlp_out"))
    cfg.optimizer.lr = 1e-2
    cfg.checkpoint.init_from = str(tmp_path / "base")
    setup_cfg = cfg.copy_and_resolve_references()
    train(cfg, tmp_path / "run")

    # optimizer state only for the adapters: every moment has an adapter's shape
    setup = Setup(setup_cfg)
    adapter_shapes = {x.shape for x in jax.tree.leaves(setup.abstract_trainable)}
    moments = [x for x in jax.tree.leaves(setup.abstract_state["opt_state"]) if x.ndim]
    assert moments and {x.shape for x in moments} <= adapter_shapes and (512, 64) not in adapter_shapes
    # the adapters from the last checkpoint; the frozen base is the export with the chat rows resized
    state_dir = ckpt_lib.resolve(tmp_path / "run")[1]
    restored = ckpt_lib.ocp.PyTreeCheckpointer().restore(state_dir)
    adapters = lora.int_keys(jax.tree.map(np.asarray, restored["params"]))
    assert float(np.abs(adapters["layers"][0]["mlp"]["in_kernel"]["b"]).max()) > 0  # B moved off zero
    info = posttrain.ChatInfo.load(tmp_path / "run" / posttrain.CHAT_TOKENIZER_FILE)
    start = jax.device_get(model_state.load_start_params(str(tmp_path / "base"), 0, base_cfg, None,
                                                         sharding.make_mesh(), info))
    np.testing.assert_array_equal(start["layers"][1]["mlp"]["out_bias"], base["layers"][1]["mlp"]["out_bias"])
    graphdef = nnx.split(init(base_cfg, 0))[0]
    tokens = np.array([[259, 72, 105, 10, 260, 10, 40, 65], [3, 9, 27, 81, 243, 100, 0, 1]], np.int32)
    adapter_logits = np.asarray(nnx.merge(graphdef, lora.apply(start, adapters, 8.0 / 2.0))(tokens))

    # the run itself loads merged (eval, convert, init_from take it), and the merged export
    _, merged = model_state.load_params(tmp_path / "run")
    np.testing.assert_allclose(np.asarray(nnx.merge(graphdef, merged)(tokens)), adapter_logits, rtol=1e-5, atol=1e-5)
    assert model_state.merge_main([f"--checkpoint={tmp_path / 'run'}", f"--output={tmp_path / 'merged'}"]) == 0
    assert (tmp_path / "merged" / posttrain.CHAT_TOKENIZER_FILE).is_file()
    cfg2, reloaded = model_state.load_params(tmp_path / "merged")
    assert cfg2.vocab_size == 512
    np.testing.assert_allclose(np.asarray(nnx.merge(graphdef, reloaded)(tokens)), adapter_logits, rtol=1e-5, atol=1e-5)
    # and through HF: alignjax-convert of the export, loaded by transformers
    assert convert.main(["--from=alignjax", f"--input={tmp_path / 'merged'}", f"--output={tmp_path / 'hf'}"]) == 0
    hf = transformers.GPTNeoXForCausalLM.from_pretrained(tmp_path / "hf").eval()
    with torch.no_grad():
        hf_logits = hf(torch.as_tensor(tokens, dtype=torch.long)).logits.float().numpy()
    np.testing.assert_allclose(hf_logits, adapter_logits, rtol=1e-4, atol=1e-4)
    assert json.loads((tmp_path / "run" / "config.json").read_text())["lora"]["rank"] == 4
