"""The model's params, in one place: abstract params, logical axes -> shardings, a fresh init,
params loaded from any checkpoint (a LoRA run's adapters merged into its base), and the params a
post-training run starts from (``checkpoint.init_from``, the chat tokens' embedding rows added).

train, eval, convert, lora and plan come here; ``checkpoint`` only reads and writes the files.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import os
import shutil
import sys
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from alignjax import checkpoint as ckpt_lib
from alignjax import lora as lora_lib
from alignjax import model as model_lib
from alignjax import rundir, sharding
from alignjax.cli import Parser

log = logging.getLogger("alignjax")


# ----------------------------------------------------------------------------- shapes and shardings


def abstract(model_cfg: model_lib.ModelConfig):
    """(graphdef, abstract params as ShapeDtypeStructs, their logical axes) of the model, with no
    array allocated."""
    graphdef, state = nnx.split(nnx.eval_shape(lambda: model_lib.init(model_cfg, 0)))
    axes = jax.tree.map(lambda v: v.get_metadata()["axes"], state,
                        is_leaf=lambda v: isinstance(v, nnx.Variable)).to_pure_dict()
    return graphdef, state.to_pure_dict(), axes


def shardings(model_cfg: model_lib.ModelConfig, mesh):
    """(graphdef, abstract params, NamedShardings over ``mesh`` from alignjax.sharding's rules)."""
    graphdef, params, axes = abstract(model_cfg)
    return graphdef, params, sharding.tree_shardings(axes, params, mesh)


def init_fn(model_cfg: model_lib.ModelConfig, param_shardings):
    """A jitted ``fn(seed)`` that initialises the params straight into ``param_shardings``."""
    return jax.jit(lambda seed: nnx.split(model_lib.GPTNeoX(model_cfg, nnx.Rngs(params=seed)))[1].to_pure_dict(),
                   static_argnums=0, out_shardings=param_shardings)


def _with_shardings(tree, param_shardings=None):
    if param_shardings is None:
        return tree
    return jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), tree, param_shardings)


# ----------------------------------------------------------------------------- loading


def _read(model_cfg, tree_dir, kind: str, param_shardings=None):
    if kind == "train":  # a LoRA run's steps hold adapters only: merged into the run's base here
        merged = _load_merged(model_cfg, tree_dir, param_shardings)
        if merged is not None:
            return merged
    return ckpt_lib.read_params(_with_shardings(abstract(model_cfg)[1], param_shardings), tree_dir, kind)


def load(path: str | os.PathLike, param_shardings: Any = None) -> ckpt_lib.Loaded:
    """Params from any alignjax checkpoint layout, optionally straight into ``param_shardings``;
    a run directory gives its newest step that restores (``checkpoint.first_readable``), a LoRA
    run its adapters merged into its base."""
    cfg, tree_dir, kind, params = ckpt_lib.first_readable(
        path, lambda cfg, d, kind: _read(cfg, d, kind, param_shardings))
    return ckpt_lib.Loaded(cfg, params, tree_dir, kind)


def load_params(path: str | os.PathLike, param_shardings: Any = None) -> tuple[model_lib.ModelConfig, Any]:
    """(model config, params) from any alignjax checkpoint layout (see ``load``)."""
    loaded = load(path, param_shardings)
    return loaded.model_cfg, loaded.params


def _load_merged(model_cfg, tree_dir: Path, param_shardings=None):
    """For a state directory of a LoRA run (``<run>/checkpoints/<step>/state``): its adapters
    merged into the run's starting params; None for any other checkpoint."""
    found = rundir.RunDir.of(tree_dir)
    if found is None:
        return None
    spec, cfg = lora_lib.run_spec(found[0])
    if spec is None:
        return None
    _, params, axes = abstract(model_cfg)
    shapes, _ = lora_lib.abstract(spec, params, axes)
    adapters = lora_lib.int_keys(ckpt_lib.read_params(shapes, tree_dir, "train", what=f"LoRA adapters from {tree_dir}"))
    base = start_params_from_run(found[0], cfg, model_cfg, param_shardings)
    return jax.jit(lambda b, a: lora_lib.apply(b, a, spec.scale), out_shardings=param_shardings)(base, adapters)


# ----------------------------------------------------------------------------- post-training start


@dataclasses.dataclass
class ChatInfo:
    """The chat tokens a model's embeddings were grown by (a run's ``chat_tokenizer.json``)."""
    spec: str
    template: str
    added_ids: dict
    base_vocab_size: int

    def save(self, path) -> None:  # a run's RunDir.chat_info (pathlib or etils.epath, gs://)
        path.write_text(json.dumps(dataclasses.asdict(self), indent=2) + "\n")

    @classmethod
    def load(cls, path) -> "ChatInfo":  # a pathlib or etils.epath file
        return cls(**json.loads(path.read_text()))

    def reload_spec(self, directory: Path) -> str:
        """The tokenizer spec that reloads the chat tokenizer: the ``tokenizer.json`` saved beside
        (alignjax.data.chat.save_chat_tokenizer), else the base spec + ``+chat``."""
        if (Path(directory) / rundir.TOKENIZER).is_file():
            return str(directory)
        return self.spec + "+chat"


def find_chat_info(path):
    """``chat_tokenizer.json`` of a checkpoint: beside an export, or in the run of a run
    directory or of its ``checkpoints/<step>[/state]`` directory."""
    found = rundir.RunDir.of(path)
    info = found[0].chat_info if found else rundir.as_path(path) / rundir.CHAT_INFO
    return info if info.is_file() else None  # an etils.epath (local or gs://)


def resize_embeddings(params, new_vocab: int, base_vocab: int, new_ids) -> dict:
    """``embed_in`` rows / ``embed_out`` columns of ``new_ids`` (and of any rows added to reach
    ``new_vocab``) set to the mean over the base tokenizer's ``base_vocab`` rows."""
    ein, eout = params["embed_in"], params["embed_out"]
    mean_in, mean_out = ein[:base_vocab].mean(0), eout[:, :base_vocab].mean(1)
    grow = new_vocab - ein.shape[0]
    if grow > 0:
        ein = jnp.concatenate([ein, jnp.broadcast_to(mean_in, (grow, ein.shape[1]))], 0)
        eout = jnp.concatenate([eout, jnp.broadcast_to(mean_out[:, None], (eout.shape[0], grow))], 1)
    ids = jnp.asarray(sorted(new_ids), jnp.int32)
    return {**params, "embed_in": ein.at[ids].set(mean_in), "embed_out": eout.at[:, ids].set(mean_out[:, None])}


def same_shape(a: model_lib.ModelConfig, b: model_lib.ModelConfig) -> bool:
    """``a``'s params load into ``b``'s model once the vocab is grown (post-training's test)."""
    ia, ib = a.identity(), b.identity()
    return all(ia[k] == ib[k] for k in ia if k != "vocab_size") and a.vocab_size <= b.vocab_size


def load_start_params(init_from: str | None, seed: int, model_cfg, param_shardings, mesh, info: ChatInfo | None):
    """The params post-training starts from (and the DPO reference / LoRA base): ``init_from``
    loaded, with the chat tokens' embeddings resized when it does not have them yet; a fresh
    init from ``seed`` without ``init_from`` (as train.Setup)."""
    if not init_from:
        return init_fn(model_cfg, param_shardings)(seed)
    src = ckpt_lib.resolve(init_from)[0]
    if not same_shape(src, model_cfg):
        raise ckpt_lib.CheckpointError(f"checkpoint.init_from={init_from} has model {src}, the run has {model_cfg}")
    has_chat = find_chat_info(init_from) is not None
    if info is None or has_chat:
        if src.vocab_size != model_cfg.vocab_size:
            raise ckpt_lib.CheckpointError(f"checkpoint.init_from={init_from}: vocab {src.vocab_size} != "
                                           f"{model_cfg.vocab_size} and no chat tokens to add")
        return load_params(init_from, param_shardings)[1]
    _, _, src_shardings = shardings(dataclasses.replace(model_cfg, vocab_size=src.vocab_size), mesh)
    params = load_params(init_from, src_shardings)[1]
    log.info("chat tokens %s: embedding rows set to the mean of the %d base rows",
             ", ".join(f"{k}={v}" for k, v in info.added_ids.items()), info.base_vocab_size)
    resize = functools.partial(resize_embeddings, new_vocab=model_cfg.vocab_size, base_vocab=info.base_vocab_size,
                               new_ids=tuple(info.added_ids.values()))
    return jax.jit(resize, out_shardings=param_shardings)(params)


def start_params_from_run(run: rundir.RunDir, cfg: dict, model_cfg, param_shardings=None):
    """``load_start_params`` for a finished run, from its saved config (LoRA merge/export)."""
    mesh = sharding.make_mesh()
    if param_shardings is None:
        param_shardings = shardings(model_cfg, mesh)[2]
    info = ChatInfo.load(run.chat_info) if run.chat_info.is_file() else None
    return load_start_params(cfg["checkpoint"].get("init_from"), cfg["train"]["seed"], model_cfg, param_shardings,
                             mesh, info)


def merge_main(argv=None) -> int:
    """python -m alignjax.lora --checkpoint=<LoRA run or step dir> --output=<export dir>"""
    ap = Parser(prog="alignjax-lora-merge", description="Merge a LoRA run's adapters into its base "
                                 "and write an alignjax export (then alignjax-convert --from=alignjax for HF).")
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--output", required=True)
    args = ap.parse_args(argv)
    try:
        model_cfg = ckpt_lib.resolve(args.checkpoint)[0]  # exists, and is a checkpoint
        run = rundir.RunDir.of(args.checkpoint)
        if run is None or lora_lib.run_spec(run[0])[0] is None:
            raise ckpt_lib.CheckpointError(f"{args.checkpoint} is not a LoRA training run (lora.rank > 0)")
        run = run[0]
        _, params = load_params(args.checkpoint)
        ckpt_lib.save_params(args.output, jax.device_get(params), model_cfg)
    except ckpt_lib.CheckpointError as e:
        print(f"alignjax-lora-merge: error: {e}", file=sys.stderr)
        return 3
    if run.chat_info.is_file():  # the merged model speaks the run's chat format: eval finds its tokenizer here
        shutil.copy(run.chat_info, Path(args.output) / run.chat_info.name)
    print(f"alignjax-lora-merge: wrote merged params to {args.output}")
    return 0
