"""HF GPTNeoXForCausalLM <-> alignjax: logit parity, bitwise round trips, transformers loads exports."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import transformers
from flax import nnx
from safetensors import safe_open

from alignjax import convert
from alignjax import model as model_lib
from conftest import run_cli

SEQ, BATCH, VOCAB = 33, 2, 128


def _hf_model(act="gelu", dtype=torch.float32, seed=0):
    torch.manual_seed(seed)
    cfg = transformers.GPTNeoXConfig(
        vocab_size=VOCAB, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=256,
        max_position_embeddings=64, rotary_pct=0.25, rotary_emb_base=10000, use_parallel_residual=True,
        hidden_act=act, tie_word_embeddings=False,
    )
    model = transformers.GPTNeoXForCausalLM(cfg).eval()
    # HF initialises biases to 0 and layer norms to 1, which would hide layout bugs.
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(torch.randn_like(p) * 0.1 + (1.0 if "layernorm.weight" in name or "layer_norm.weight" in name else 0.0))
    return model.to(dtype)


def _save(model, path, **kw):
    model.save_pretrained(path, safe_serialization=True, **kw)
    return path


def _tokens(seed=1):
    return np.random.default_rng(seed).integers(0, VOCAB, (BATCH, SEQ))


def _hf_logits(model, tokens):
    with torch.no_grad():
        return model(torch.as_tensor(tokens)).logits.float().numpy()


def _alignjax_logits(cfg, params, tokens):
    model = nnx.eval_shape(lambda: model_lib.init(cfg, 0))
    graphdef, state = nnx.split(model)
    nnx.replace_by_pure_dict(state, jax.tree.map(jnp.asarray, params))
    return np.asarray(nnx.merge(graphdef, state)(jnp.asarray(tokens)), np.float32)


def _tensors(path):
    with safe_open(path / "model.safetensors", "np") as f:
        return {k: f.get_tensor(k) for k in f.keys()}


def _convert(*args):
    assert convert.main(list(args)) == 0


@pytest.mark.parametrize("act", ["gelu", "gelu_new"])
def test_logits_match_transformers(tmp_path, act):
    hf = _hf_model(act)
    cfg, params = convert.load_hf(_save(hf, tmp_path / "hf"))
    assert cfg.gelu_approximate == (act == "gelu_new") and cfg.rotary_pct == 0.25 and cfg.rotary_base == 10000
    tokens = _tokens()
    diff = np.abs(_alignjax_logits(cfg, params, tokens) - _hf_logits(hf, tokens)).max()
    assert diff <= 1e-4, diff


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_hf_to_alignjax_to_hf_is_bitwise_identical(tmp_path, dtype):
    src = _save(_hf_model(dtype=dtype), tmp_path / "hf")
    _convert("--from=hf", f"--input={src}", f"--output={tmp_path / 'aj'}")
    _convert("--from=alignjax", f"--input={tmp_path / 'aj'}", f"--output={tmp_path / 'back'}")
    a, b = _tensors(src), _tensors(tmp_path / "back")
    assert sorted(a) == sorted(b)
    for name in a:
        assert a[name].dtype == b[name].dtype and a[name].shape == b[name].shape, name
        assert a[name].tobytes() == b[name].tobytes(), name
    back_cfg = json.loads((tmp_path / "back" / "config.json").read_text())
    assert convert.hf_config_to_model_config(back_cfg) == convert.load_hf(src)[0]
    assert back_cfg["dtype"] == str(dtype).removeprefix("torch.")


def test_transformers_loads_the_export(tmp_path):
    hf = _hf_model("gelu_new")
    _convert("--from=hf", f"--input={_save(hf, tmp_path / 'hf')}", f"--output={tmp_path / 'aj'}")
    _convert("--from=alignjax", f"--input={tmp_path / 'aj'}", f"--output={tmp_path / 'out'}")
    _convert("--from=alignjax", f"--input={tmp_path / 'aj'}", f"--output={tmp_path / 'bf16'}", "--dtype=bfloat16")
    tokens = _tokens(2)
    loaded = transformers.GPTNeoXForCausalLM.from_pretrained(tmp_path / "out").eval()
    assert np.abs(_hf_logits(loaded, tokens) - _hf_logits(hf, tokens)).max() <= 1e-6
    # --dtype casts like torch does (round to nearest even).
    loaded = transformers.GPTNeoXForCausalLM.from_pretrained(tmp_path / "bf16", dtype="auto")
    want = hf.to(torch.bfloat16).state_dict()
    for name, t in loaded.state_dict().items():
        assert t.dtype == torch.bfloat16 and torch.equal(t, want[name]), name


def test_sharded_bin_buffers_and_lm_head_names_load_the_same(tmp_path):
    hf = _hf_model(dtype=torch.bfloat16)
    _, want = convert.load_hf(_save(hf, tmp_path / "one"))
    _, sharded = convert.load_hf(_save(hf, tmp_path / "sharded", max_shard_size="50KB"))
    assert len(list((tmp_path / "sharded").glob("*.safetensors"))) > 1
    # An older-style pytorch_model.bin with buffers and the transformers-5 module name lm_head.
    sd = {("lm_head.weight" if k == "embed_out.weight" else k): v for k, v in hf.state_dict().items()}
    sd["gpt_neox.layers.0.attention.masked_bias"] = torch.tensor(-1e9)
    sd["gpt_neox.layers.0.attention.rotary_emb.inv_freq"] = torch.ones(2)
    (tmp_path / "bin").mkdir()
    torch.save(sd, tmp_path / "bin" / "pytorch_model.bin")
    (tmp_path / "bin" / "config.json").write_text((tmp_path / "one" / "config.json").read_text())
    _, from_bin = convert.load_hf(tmp_path / "bin")
    for other in (sharded, from_bin):
        for x, y in zip(jax.tree.leaves(want), jax.tree.leaves(other), strict=True):
            assert x.dtype == y.dtype and x.tobytes() == y.tobytes()


def _one_line_error(err, needle):
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("alignjax-convert: error: ") and needle in lines[0], err


def test_cli_missing_input_exits_2(tmp_path):
    r = run_cli("convert", "--from=hf", f"--input={tmp_path / 'nope'}", f"--output={tmp_path / 'out'}")
    assert r.returncode == 2
    _one_line_error(r.stderr, "does not exist")
    assert not (tmp_path / "out").exists()


def _edit_config(d, **kw):
    (d / "config.json").write_text(json.dumps({**json.loads((d / "config.json").read_text()), **kw}))


def _drop_tensor(d, name):
    from safetensors.numpy import save_file

    tensors = _tensors(d)
    del tensors[name]
    save_file(tensors, d / "model.safetensors", metadata={"format": "pt"})


@pytest.mark.parametrize("case, needle", [
    ("output_not_empty", "not an empty directory"),
    ("no_config", "no config.json"),
    ("llama", "unsupported architecture"),
    ("sequential_residual", "use_parallel_residual"),
    ("shape_mismatch", "has shape"),
    ("missing_tensor", "missing tensor gpt_neox.layers.1.mlp.dense_4h_to_h.bias"),
    ("not_alignjax", "not an alignjax checkpoint"),
])
def test_cli_errors_exit_2_with_one_line(tmp_path, capsys, case, needle):
    src = _save(_hf_model(), tmp_path / "hf")
    out = tmp_path / "out"
    args = ["--from=hf", f"--input={src}", f"--output={out}"]
    if case == "output_not_empty":
        out.mkdir()
        (out / "keep.txt").write_text("mine")
    elif case == "no_config":
        (src / "config.json").unlink()
    elif case == "llama":
        _edit_config(src, model_type="llama", architectures=["LlamaForCausalLM"])
    elif case == "sequential_residual":
        _edit_config(src, use_parallel_residual=False)
    elif case == "shape_mismatch":
        _edit_config(src, vocab_size=VOCAB * 2)
    elif case == "missing_tensor":
        _drop_tensor(src, "gpt_neox.layers.1.mlp.dense_4h_to_h.bias")
    elif case == "not_alignjax":
        args = ["--from=alignjax", f"--input={src}", f"--output={out}"]
    capsys.readouterr()  # drop save_pretrained's progress bar
    assert convert.main(args) == (3 if case == "not_alignjax" else 2)  # a CheckpointError: exit 3
    _one_line_error(capsys.readouterr().err, needle)
    if case == "output_not_empty":
        assert [p.name for p in out.iterdir()] == ["keep.txt"] and (out / "keep.txt").read_text() == "mine"
    else:
        assert not out.exists()
