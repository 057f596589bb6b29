"""Orbax checkpoints.

Two layouts:
- a training run: ``<workdir>/checkpoints/<step>/{state,data}``: params, optimizer state, step
  and RNG in ``state``; the Grain iterator state in ``data`` (one Orbax step, so model and data
  always resume together). ``<workdir>/config.json`` holds the resolved run config.
- a model export (what ``alignjax-convert --from=hf`` writes): ``<dir>/params`` plus
  ``<dir>/model.json`` (the ModelConfig fields).

``load_params`` reads either, so every consumer (eval, post-training, convert) takes any of them.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from typing import Any, Callable

import grain
import jax
import orbax.checkpoint as ocp
from etils import epath

from alignjax.model import ModelConfig

log = logging.getLogger("alignjax")


class CheckpointError(Exception):
    """A checkpoint is missing, incomplete or does not match the run."""


def as_path(path: str | os.PathLike) -> epath.Path:
    """A local or gs:// path: epath keeps the scheme (pathlib would turn gs://b into gs:/b);
    local paths are made absolute, as Orbax wants."""
    p = epath.Path(path)
    return p if "://" in os.fspath(p) else p.absolute()


def _abstract(tree, shardings=None):
    if shardings is None:
        return jax.tree.map(ocp.utils.to_shape_dtype_struct, tree)
    return jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), tree, shardings)


# ----------------------------------------------------------------------------- model export


def save_params(path: str | os.PathLike, params: Any, model_cfg: ModelConfig) -> None:
    path = as_path(path)
    if path.exists() and any(path.iterdir()):
        raise CheckpointError(f"{path} exists and is not empty; refusing to overwrite it")
    path.mkdir(parents=True, exist_ok=True)
    with ocp.StandardCheckpointer() as ckptr:
        ckptr.save(path / "params", params)
    (path / "model.json").write_text(json.dumps(dataclasses.asdict(model_cfg), indent=2))


def _model_cfg_from_json(path: epath.Path, key: str | None = None) -> ModelConfig:
    data = json.loads(path.read_text())
    if key:
        data = data[key]
    fields = {f.name for f in dataclasses.fields(ModelConfig)}
    return ModelConfig(**{k: v for k, v in data.items() if k in fields})


def resolve(path: str | os.PathLike) -> tuple[ModelConfig, epath.Path, str]:
    """(model config, directory holding the params tree, kind) for an export, a training
    workdir (its latest complete step) or one step directory of a training run."""
    path = as_path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} does not exist")
    if (path / "model.json").exists():
        return _model_cfg_from_json(path / "model.json"), path / "params", "export"
    if (path / "config.json").exists() and (path / "checkpoints").is_dir():
        steps = ocp.utils.checkpoint_steps(path / "checkpoints")
        if not steps:
            raise CheckpointError(f"{path}/checkpoints holds no complete step")
        return _model_cfg_from_json(path / "config.json", "model"), path / "checkpoints" / str(max(steps)) / "state", "train"
    if (path / "state").is_dir() and (path.parent.parent / "config.json").exists():
        return _model_cfg_from_json(path.parent.parent / "config.json", "model"), path / "state", "train"
    raise CheckpointError(
        f"{path} is not an alignjax checkpoint (expected model.json + params/, or a workdir with "
        "config.json + checkpoints/, or a checkpoints/<step> directory)"
    )


def load_params(path: str | os.PathLike, shardings: Any = None) -> tuple[ModelConfig, Any]:
    """Load params from any alignjax checkpoint layout, optionally straight into ``shardings``."""
    from alignjax import model as model_lib
    from flax import nnx

    model_cfg, tree_dir, kind = resolve(path)
    if kind == "train":  # a LoRA run's steps hold adapters only: merged into the run's base here
        from alignjax import lora

        merged = lora.maybe_load_merged(model_cfg, tree_dir, shardings)
        if merged is not None:
            return model_cfg, merged
    abstract = nnx.state(nnx.eval_shape(lambda: model_lib.init(model_cfg, 0)), nnx.Param).to_pure_dict()
    abstract = _abstract(abstract, shardings)
    try:
        with ocp.StandardCheckpointer() as ckptr:
            if kind == "export":
                params = ckptr.restore(tree_dir, abstract)
            else:
                meta = ckptr.metadata(tree_dir)
                del meta  # partial restore of only the params subtree
                restored = ocp.PyTreeCheckpointer().restore(
                    tree_dir,
                    args=ocp.args.PyTreeRestore(
                        item={"params": abstract},
                        restore_args=ocp.checkpoint_utils.construct_restore_args({"params": abstract}),
                        partial_restore=True,
                    ),
                )
                params = restored["params"]
    except Exception as e:  # orbax raises many types for truncated/corrupt files
        raise CheckpointError(f"cannot read params from {tree_dir}: {str(e).splitlines()[0]}") from e
    return model_cfg, params


# ----------------------------------------------------------------------------- training runs


class TrainCheckpointer:
    """Orbax CheckpointManager for a training run: one step directory holds the train state
    (params, optimizer state, step, rng) and the data iterator's state."""

    def __init__(self, directory: str | os.PathLike, max_to_keep: int, async_save: bool = True):
        self.directory = as_path(directory)
        self.manager = ocp.CheckpointManager(
            self.directory,
            options=ocp.CheckpointManagerOptions(
                max_to_keep=max_to_keep,
                enable_async_checkpointing=async_save,
                create=True,
            ),
        )

    def save(self, step: int, state: Any, data_iter: grain.DatasetIterator | None, audit: dict) -> None:
        existing = self.directory / str(step)
        if existing.exists():  # a step skipped as corrupt on restore: keep it, out of the way
            existing.rename(self.directory / f"corrupt-{step}-{os.getpid()}")
            self.manager.reload()
        items = {"state": ocp.args.StandardSave(state), "audit": ocp.args.JsonSave(audit)}
        if data_iter is not None:
            items["data"] = grain.checkpoint.CheckpointSave(data_iter)
        self.manager.save(step, args=ocp.args.Composite(**items), force=True)

    def restore_latest(self, abstract_state: Any, data_iter_for: Callable[[int], grain.DatasetIterator | None]):
        """(state, step, data iterator, audit) from the newest step that restores, or None when
        there are no steps. ``data_iter_for(step)`` gives the iterator to restore the data state
        into, or None where the step starts a fresh iterator (a stage boundary). Unreadable steps
        are skipped with a warning and left on disk; if none restores, that is an error rather
        than a silent restart from scratch."""
        steps = sorted(self.manager.all_steps(), reverse=True)
        for step in steps:
            data_iter = data_iter_for(step)  # data errors are the user's to see, not a corrupt step
            try:
                items = {"state": ocp.args.StandardRestore(abstract_state), "audit": ocp.args.JsonRestore()}
                if data_iter is not None:
                    items["data"] = grain.checkpoint.CheckpointRestore(data_iter)
                restored = self.manager.restore(step, args=ocp.args.Composite(**items))
            except Exception as e:  # truncated files, missing items, wrong shapes, ...
                log.warning("skipping checkpoint step %d in %s: %s", step, self.directory,
                            (str(e).splitlines() or [type(e).__name__])[0][:300])
                continue
            return restored.state, step, data_iter, restored.audit
        if steps:
            raise CheckpointError(f"none of the {len(steps)} checkpoint steps in {self.directory} restores "
                                  "(see the warnings above); move the directory away to start afresh")
        return None

    def wait(self) -> None:
        self.manager.wait_until_finished()

    def close(self) -> None:
        self.manager.close()
