"""Hugging Face GPTNeoXForCausalLM <-> alignjax conversion.

    alignjax-convert --from=hf --input=<HF dir or hub id> --output=<alignjax export dir>
    alignjax-convert --from=alignjax --input=<any alignjax checkpoint> --output=<HF dir> [--dtype=...]

Tensors are only transposed and reshaped, never cast (unless ``--dtype`` asks), so HF -> alignjax
-> HF gives back the same bytes. ``--from=hf`` keeps every tensor in its source dtype;
``--from=alignjax`` writes each tensor in the dtype it was stored in.

The tokenizer travels with the model: ``--from=alignjax`` writes ``tokenizer.json`` (the run's
``data.tokenizer`` serialized, or a post-trained run's chat tokenizer with its
``tokenizer_config.json`` chat template and ``chat_tokenizer.json``; alignjax's byte tokenizer has
no HF file, which the last output line says), ``--from=hf`` copies the HF directory's tokenizer
files. A run's input is its newest readable step (``model_state.load``).
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path
from typing import Any

import ml_dtypes
import numpy as np

from alignjax import model_state
from alignjax import config as config_lib
from alignjax.checkpoint import CheckpointError, save_params
from alignjax.cli import Parser
from alignjax.data import chat
from alignjax.data.sources import DataError
from alignjax.data.tokenizer import Tokenizer
from alignjax.model import ModelConfig
from alignjax.rundir import as_path, RunDir

DTYPES = {"float32": np.dtype(np.float32), "bfloat16": np.dtype(ml_dtypes.bfloat16), "float16": np.dtype(np.float16)}
# Buffers older transformers versions saved alongside the parameters; recomputed at load time.
_BUFFERS = re.compile(r"\.attention\.(bias|masked_bias|rotary_emb\.inv_freq)$")
_TANH_GELUS = ("gelu_new", "gelu_fast", "gelu_pytorch_tanh")


class ConvertError(Exception):
    """The input cannot be converted (wrong architecture, missing or mis-shaped tensors, ...)."""


# ----------------------------------------------------------------------------- configs


def hf_config_to_model_config(hf_cfg: dict) -> ModelConfig:
    if hf_cfg.get("model_type") != "gpt_neox":
        raise ConvertError(f"unsupported architecture: model_type={hf_cfg.get('model_type')!r} (only gpt_neox)")
    archs = hf_cfg.get("architectures") or ["GPTNeoXForCausalLM"]
    if "GPTNeoXForCausalLM" not in archs:
        raise ConvertError(f"unsupported architecture {archs}; only GPTNeoXForCausalLM")
    if not hf_cfg.get("use_parallel_residual", True):
        raise ConvertError("use_parallel_residual=false is not supported (alignjax blocks are parallel-residual)")
    if hf_cfg.get("tie_word_embeddings", False):
        raise ConvertError("tie_word_embeddings=true is not supported (alignjax has untied embed_in/embed_out)")
    if not hf_cfg.get("attention_bias", True):
        raise ConvertError("attention_bias=false is not supported (alignjax attention always has biases)")
    # transformers >= 5 folds rotary_pct / rotary_emb_base (and rope_scaling) into rope_parameters.
    rope = hf_cfg.get("rope_parameters") or hf_cfg.get("rope_scaling") or {}
    if rope.get("rope_type", rope.get("type", "default")) != "default":
        raise ConvertError(f"rope type {rope.get('rope_type', rope.get('type'))!r} is not supported (only default)")
    act = hf_cfg.get("hidden_act", "gelu")
    if act != "gelu" and act not in _TANH_GELUS:
        raise ConvertError(f"hidden_act={act!r} is not supported (gelu, {', '.join(_TANH_GELUS)})")
    first = lambda *vals: next(v for v in vals if v is not None)
    try:
        return ModelConfig(
            vocab_size=hf_cfg["vocab_size"],
            num_layers=hf_cfg["num_hidden_layers"],
            d_model=hf_cfg["hidden_size"],
            num_heads=hf_cfg["num_attention_heads"],
            d_ff=hf_cfg.get("intermediate_size") or 4 * hf_cfg["hidden_size"],
            max_seq_len=hf_cfg.get("max_position_embeddings", 2048),
            rotary_pct=float(first(rope.get("partial_rotary_factor"), hf_cfg.get("partial_rotary_factor"),
                                   hf_cfg.get("rotary_pct"), 0.25)),
            rotary_base=float(first(rope.get("rope_theta"), hf_cfg.get("rope_theta"),
                                    hf_cfg.get("rotary_emb_base"), 10000.0)),
            ln_eps=float(hf_cfg.get("layer_norm_eps", 1e-5)),
            gelu_approximate=act in _TANH_GELUS,
            init_std=float(hf_cfg.get("initializer_range", 0.02)),
        )
    except KeyError as e:
        raise ConvertError(f"config.json lacks {e.args[0]!r}") from None
    except (TypeError, ValueError) as e:
        raise ConvertError(f"config.json: {e}") from None


def model_config_to_hf_config(cfg: ModelConfig, torch_dtype: str) -> dict:
    return {
        "architectures": ["GPTNeoXForCausalLM"],
        "model_type": "gpt_neox",
        "vocab_size": cfg.vocab_size,
        "hidden_size": cfg.d_model,
        "num_hidden_layers": cfg.num_layers,
        "num_attention_heads": cfg.num_heads,
        "intermediate_size": cfg.d_ff,
        "hidden_act": "gelu_new" if cfg.gelu_approximate else "gelu",
        "max_position_embeddings": cfg.max_seq_len,
        "initializer_range": cfg.init_std,
        "layer_norm_eps": cfg.ln_eps,
        "use_parallel_residual": True,
        "tie_word_embeddings": False,
        "attention_bias": True,
        "attention_dropout": 0.0,
        "hidden_dropout": 0.0,
        "use_cache": True,
        "bos_token_id": 0,  # <|endoftext|> in the GPT-NeoX-20B tokenizer, as in Pythia
        "eos_token_id": 0,
        "rope_parameters": {"rope_type": "default", "rope_theta": cfg.rotary_base,
                            "partial_rotary_factor": cfg.rotary_pct},
        # transformers < 5 reads these names; 5.x takes rope_parameters and drops them.
        "rotary_pct": cfg.rotary_pct,
        "rotary_emb_base": cfg.rotary_base,
        "dtype": torch_dtype,
        "torch_dtype": torch_dtype,
    }


# ----------------------------------------------------------------------------- tensors


def _layout(cfg: ModelConfig):
    """(alignjax path, HF name, HF shape, alignjax shape, transposed) for every parameter.
    alignjax = HF.T reshaped, HF = alignjax reshaped to HF.T's shape, then .T: data movement only."""
    d, f, v, n, h = cfg.d_model, cfg.d_ff, cfg.vocab_size, cfg.num_heads, cfg.head_dim
    yield ("embed_in",), "gpt_neox.embed_in.weight", (v, d), (v, d), False
    yield ("embed_out",), "embed_out.weight", (v, d), (d, v), True
    for name, hf in (("scale", "weight"), ("bias", "bias")):
        yield ("final_ln", name), f"gpt_neox.final_layer_norm.{hf}", (d,), (d,), False
    for i in range(cfg.num_layers):
        p = f"gpt_neox.layers.{i}."
        for name, hf in (("scale", "weight"), ("bias", "bias")):
            yield ("layers", i, "ln_attn", name), p + f"input_layernorm.{hf}", (d,), (d,), False
            yield ("layers", i, "ln_mlp", name), p + f"post_attention_layernorm.{hf}", (d,), (d,), False
        # Fused QKV output rows are ordered (heads, 3, head_dim), exactly alignjax's trailing axes.
        yield ("layers", i, "attn", "qkv_kernel"), p + "attention.query_key_value.weight", (3 * d, d), (d, n, 3, h), True
        yield ("layers", i, "attn", "qkv_bias"), p + "attention.query_key_value.bias", (3 * d,), (n, 3, h), False
        yield ("layers", i, "attn", "out_kernel"), p + "attention.dense.weight", (d, d), (n, h, d), True
        yield ("layers", i, "attn", "out_bias"), p + "attention.dense.bias", (d,), (d,), False
        yield ("layers", i, "mlp", "in_kernel"), p + "mlp.dense_h_to_4h.weight", (f, d), (d, f), True
        yield ("layers", i, "mlp", "in_bias"), p + "mlp.dense_h_to_4h.bias", (f,), (f,), False
        yield ("layers", i, "mlp", "out_kernel"), p + "mlp.dense_4h_to_h.weight", (d, f), (f, d), True
        yield ("layers", i, "mlp", "out_bias"), p + "mlp.dense_4h_to_h.bias", (d,), (d,), False


def _get(tree, path):
    for k in path:
        tree = tree[k] if k in tree else tree[str(k)]
    return tree


def _set(tree, path, value):
    for k in path[:-1]:
        tree = tree.setdefault(k, {})
    tree[path[-1]] = value


def hf_to_params(tensors: dict[str, np.ndarray], cfg: ModelConfig) -> dict:
    tensors = {k: v for k, v in tensors.items() if not _BUFFERS.search(k)}
    if "embed_out.weight" not in tensors and "lm_head.weight" in tensors:  # transformers 5 module name
        tensors["embed_out.weight"] = tensors.pop("lm_head.weight")
    params, used = {}, set()
    for path, name, hf_shape, shape, transposed in _layout(cfg):
        if name not in tensors:
            raise ConvertError(f"missing tensor {name}")
        x = np.asarray(tensors[name])
        if x.shape != hf_shape:
            raise ConvertError(f"tensor {name} has shape {tuple(x.shape)}, expected {hf_shape} from config.json")
        _set(params, path, np.ascontiguousarray((x.T if transposed else x).reshape(shape)))
        used.add(name)
    if extra := sorted(set(tensors) - used):
        raise ConvertError(f"{len(extra)} unexpected tensor(s), e.g. {extra[0]}; not a GPTNeoXForCausalLM of this config")
    return params


def params_to_hf(params, cfg: ModelConfig) -> dict[str, np.ndarray]:
    out = {}
    for path, name, hf_shape, shape, transposed in _layout(cfg):
        x = np.asarray(_get(params, path))
        if x.shape != shape:
            raise ConvertError(f"param {'/'.join(map(str, path))} has shape {x.shape}, expected {shape}")
        out[name] = np.ascontiguousarray(x.reshape(hf_shape[::-1]).T if transposed else x.reshape(hf_shape))
    return out


# ----------------------------------------------------------------------------- files


def _torch_to_numpy(t) -> np.ndarray:
    import torch

    t = t.detach().cpu().contiguous()
    if t.dtype == torch.bfloat16:  # numpy has no bf16: reinterpret the bits
        return t.view(torch.int16).numpy().view(ml_dtypes.bfloat16)
    return t.numpy()


def _read_tensors(d: Path) -> dict[str, np.ndarray]:
    for index, single, pattern in (("model.safetensors.index.json", "model.safetensors", "*.safetensors"),
                                   ("pytorch_model.bin.index.json", "pytorch_model.bin", "pytorch_model*.bin")):
        if (d / index).exists():
            files = sorted({d / f for f in json.loads((d / index).read_text())["weight_map"].values()})
        else:
            files = [d / single] if (d / single).exists() else sorted(d.glob(pattern))
        if not files:
            continue
        tensors = {}
        for f in files:
            if not f.exists():
                raise ConvertError(f"{f} (listed in {index}) does not exist")
            try:
                if f.suffix == ".safetensors":
                    from safetensors.numpy import load_file

                    tensors.update(load_file(f))
                else:
                    import torch

                    tensors.update({k: _torch_to_numpy(v) for k, v in
                                    torch.load(f, map_location="cpu", weights_only=True).items()})
            except ConvertError:
                raise
            except Exception as e:  # corrupt or truncated files raise many types
                raise ConvertError(f"cannot read {f}: {(str(e).splitlines() or [type(e).__name__])[0]}") from e
        return tensors
    raise ConvertError(f"{d} holds no *.safetensors or pytorch_model*.bin weights")


def _resolve_input(src: str, revision: str | None) -> Path:
    path = Path(src)
    if path.exists():
        if not path.is_dir():
            raise ConvertError(f"input {src} is not a directory")
        return path
    if not re.fullmatch(r"[\w.-]+/[\w.-]+", src) or src.startswith("."):
        raise ConvertError(f"input {src} does not exist (and is not a hub id owner/name)")
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        raise ConvertError(f"input {src} is not a local directory and huggingface_hub is not installed "
                           "(pip install alignjax[hub])") from None
    try:  # safetensors when the repo has them; pytorch_model*.bin only otherwise
        d = Path(snapshot_download(src, revision=revision, allow_patterns=["*.json", "*.safetensors"]))
        if not any(d.glob("*.safetensors")):
            d = Path(snapshot_download(src, revision=revision, allow_patterns=["*.json", "pytorch_model*.bin"]))
        return d
    except Exception as e:  # offline, unknown repo, gated, ...
        raise ConvertError(f"cannot download {src} from the hub: {(str(e).splitlines() or [type(e).__name__])[0]}") from e


def load_hf(dir_or_hub_id: str | os.PathLike, revision: str | None = None) -> tuple[ModelConfig, dict]:
    d = _resolve_input(str(dir_or_hub_id), revision)
    if not (d / "config.json").exists():
        raise ConvertError(f"{d} has no config.json")
    try:
        hf_cfg = json.loads((d / "config.json").read_text())
    except ValueError as e:
        raise ConvertError(f"{d}/config.json is not valid JSON: {e}") from None
    cfg = hf_config_to_model_config(hf_cfg)
    return cfg, hf_to_params(_read_tensors(d), cfg)


def _check_output(out: Path) -> None:
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ConvertError(f"output {out} exists and is not an empty directory; refusing to overwrite it")


def save_hf(out_dir: str | os.PathLike, cfg: ModelConfig, params, dtype: str | None = None) -> dict[str, np.ndarray]:
    """Write config.json + model.safetensors. ``dtype`` None keeps each tensor's own dtype."""
    from safetensors.numpy import save_file

    out = Path(out_dir)
    _check_output(out)
    tensors = params_to_hf(params, cfg)
    if dtype is not None:
        tensors = {k: v.astype(DTYPES[dtype]) for k, v in tensors.items()}
    out.mkdir(parents=True, exist_ok=True)
    save_file(tensors, out / "model.safetensors", metadata={"format": "pt"})  # transformers checks "format"
    (out / "config.json").write_text(json.dumps(model_config_to_hf_config(cfg, _dtype_name(tensors)), indent=2) + "\n")
    return tensors


def _dtype_name(tensors: dict[str, np.ndarray]) -> str:
    # A mixed-dtype checkpoint (e.g. fp32 layer norms) is named by its matmul weights' dtype.
    return str(max(tensors.values(), key=lambda x: x.size).dtype)


# ----------------------------------------------------------------------------- alignjax side


def _stored_dtypes(tree_dir, kind: str) -> Any:
    """The dtype each param was saved in: load_params restores into the fp32 model's shapes."""
    import orbax.checkpoint as ocp

    meta = ocp.PyTreeCheckpointHandler().metadata(tree_dir)
    meta = getattr(meta, "tree", meta)
    return meta["params"] if kind != "export" else meta


def load_alignjax(path) -> tuple[ModelConfig, dict]:
    """load_params (a run: its newest readable step), with every tensor back in the dtype it was
    saved in."""
    import jax

    loaded = model_state.load(path)
    try:
        stored = _stored_dtypes(loaded.tree_dir, loaded.kind)
    except Exception:  # metadata layout differs: keep the restored dtypes
        stored = None

    def cast(keypath, x):
        x = np.asarray(x)
        try:
            return x.astype(_get(stored, [k.key for k in keypath]).dtype, copy=False)
        except (KeyError, AttributeError, TypeError):
            return x

    return loaded.model_cfg, jax.tree_util.tree_map_with_path(cast, loaded.params)


# ----------------------------------------------------------------------------- tokenizers

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_tokenizer.json")


def _tokenizer_plan(src: str):
    """(files to copy {name: path}, a Tokenizer to serialize or None, the line saying what the
    HF directory gets) for ``--from=alignjax``: the tokenizer files beside the checkpoint (a
    post-trained run's chat tokenizer.json + tokenizer_config.json + chat_tokenizer.json, an
    export's own), else the tokenizer rebuilt from its spec (a run's ``data.tokenizer``, an
    export's chat_tokenizer.json) and serialized when it is an HF tokenizer."""
    found = RunDir.of(src)
    root = found[0].root if found else as_path(src)
    files = {name: root / name for name in TOKENIZER_FILES if (root / name).is_file()}
    if "tokenizer.json" in files:
        return files, None, f"tokenizer: {', '.join(files)} from {root}"
    info = model_state.ChatInfo.load(files["chat_tokenizer.json"]) if "chat_tokenizer.json" in files else None
    spec = info.spec if info else found[0].load_config().get("data", {}).get("tokenizer", "bytes") if found else None
    if spec is None:
        return files, None, (f"no tokenizer.json written: {root} has none (alignjax-eval on the HF directory: "
                             "pass --tokenizer=<path to tokenizer.json>)")
    try:
        tok = Tokenizer.load(spec, f"pass the tokenizer to alignjax-eval with --tokenizer={spec}")
        if info:
            tok.add_special_tokens(chat.load_template(info.template).special_tokens)
    except (ConvertError, DataError, OSError, ValueError) as e:
        return files, None, f"no tokenizer.json written: tokenizer {spec}: {(str(e).splitlines() or [''])[0]}"
    if tok.spec.removesuffix("+chat") == "bytes":
        return files, None, (f"no tokenizer.json written: tokenizer {spec} is alignjax's UTF-8 byte tokenizer, "
                             f"which has no HF tokenizers file (alignjax-eval reads it by name: --tokenizer={spec}"
                             f"{'+chat' if info else ''})")
    return files, tok, f"tokenizer: tokenizer.json from {spec}" + (f" + {', '.join(files)}" if files else "")


def _write_tokenizer(out: Path, files: dict, tok) -> None:
    for name, path in files.items():  # local or gs:// sources
        (out / name).write_bytes(path.read_bytes())
    if tok is not None:
        tok.save(out / "tokenizer.json")


def _copy_hf_tokenizer(src_dir: Path, out: Path) -> str:
    """--from=hf: the HF directory's tokenizer files go into the export (eval finds them there)."""
    files = {n: src_dir / n for n in TOKENIZER_FILES if (src_dir / n).is_file()}
    _write_tokenizer(out, files, None)
    return f"tokenizer: {', '.join(files)}" if files else f"no tokenizer.json written: {src_dir} has none"


# ----------------------------------------------------------------------------- CLI


def main(argv=None) -> int:
    ap = Parser(prog="alignjax-convert", description=__doc__.splitlines()[0])
    ap.add_argument("--from", dest="src", required=True, choices=["hf", "alignjax"])
    ap.add_argument("--input", required=True, help="HF dir or hub id (--from=hf); alignjax checkpoint (--from=alignjax)")
    ap.add_argument("--output", required=True)
    ap.add_argument("--dtype", choices=list(DTYPES), help="--from=alignjax only: cast every tensor to this dtype")
    ap.add_argument("--revision", help="--from=hf with a hub id: branch, tag or commit (e.g. step143000)")
    args = ap.parse_args(argv)

    config_lib.setup_logging()  # a run's skipped (unreadable) steps are one warning line each
    out = Path(args.output)
    try:
        _check_output(out)
        if args.src == "hf":
            if args.dtype:
                raise ConvertError("--dtype applies to --from=alignjax only; --from=hf keeps the source dtypes")

            src = _resolve_input(args.input, args.revision)
            cfg, params = load_hf(src)
            save_params(out, params, cfg)
            tokenizer_line = _copy_hf_tokenizer(src, out)
            tensors = list(_leaves(params))
        else:
            cfg, params = load_alignjax(args.input)
            files, tok, tokenizer_line = _tokenizer_plan(args.input)  # before writing: a failure writes nothing
            tensors = list(save_hf(out, cfg, params, args.dtype).values())
            _write_tokenizer(out, files, tok)
    except CheckpointError as e:
        print(f"alignjax-convert: error: {(str(e).splitlines() or [type(e).__name__])[0]}", file=sys.stderr)
        return 3
    except (ConvertError, OSError) as e:
        print(f"alignjax-convert: error: {(str(e).splitlines() or [type(e).__name__])[0]}", file=sys.stderr)
        return 2
    dtypes = sorted({str(x.dtype) for x in tensors})
    print(f"alignjax-convert: wrote {sum(x.size for x in tensors):,} parameters ({', '.join(dtypes)}) to {out}")
    print(f"alignjax-convert: {tokenizer_line}")
    return 0


def _leaves(tree):
    for v in tree.values():
        yield from _leaves(v) if isinstance(v, dict) else [v]


if __name__ == "__main__":
    raise SystemExit(main())
