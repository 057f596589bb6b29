"""Orbax checkpoints.

Two layouts:
- a training run: ``<workdir>/checkpoints/<step>/{state,data}``: params, optimizer state, step
  and RNG in ``state``; the Grain iterator state in ``data`` (one Orbax step, so model and data
  always resume together). ``<workdir>/config.json`` holds the resolved run config.
- a model export (what ``alignjax-convert --from=hf`` writes): ``<dir>/params`` plus
  ``<dir>/model.json`` (the ModelConfig fields).

``read_params`` reads either (``model_state.load`` is the one caller: it knows the model's shapes
and merges a LoRA run), so every consumer (eval, post-training, convert) takes any of them.
A run directory reads as its newest readable step: unreadable ones (truncated arrays, missing or
garbled metadata) are skipped with one warning each and left on disk; a step named explicitly
(``checkpoints/<step>``) must itself be readable.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import sys
from typing import Any, Callable, NamedTuple

import grain
import orbax.checkpoint as ocp
from etils import epath

from alignjax.model import ModelConfig
from alignjax.rundir import RunDir, as_path  # noqa: F401  (as_path: callers use ckpt_lib.as_path)

log = logging.getLogger("alignjax")


class CheckpointError(Exception):
    """A checkpoint is missing, incomplete or does not match the run."""


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
    try:
        data = json.loads(path.read_text())
        if key:
            data = data[key]
        fields = {f.name for f in dataclasses.fields(ModelConfig)}
        return ModelConfig(**{k: v for k, v in data.items() if k in fields})
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise CheckpointError(f"{path} holds no valid model config ({type(e).__name__}: {_reason(e)})") from None


def _reason(e: BaseException) -> str:
    """An Orbax/TensorStore error's first line, without the TensorStore spec it appends (Orbax's
    "error while reading array index" wrapper gives way to the error it wraps)."""
    while "See full TensorStore details" in str(e) and e.__cause__ is not None:
        e = e.__cause__
    return (str(e).splitlines() or [type(e).__name__])[0].split(" [tensorstore_spec")[0][:240]


def _orbax_leftover(u) -> bool:
    """An unraisable exception a failed restore leaves behind: TensorStore reads still in flight
    that complete after Orbax closed its event loop ('Event loop is closed'), or Orbax's own
    read coroutines garbage-collected with their error."""
    if isinstance(u.exc_value, RuntimeError) and str(u.exc_value) == "Event loop is closed":
        return True
    code = getattr(u.object, "cr_code", None)
    return code is not None and f"{os.sep}orbax{os.sep}" in code.co_filename


def _quiet_closed_loop() -> None:
    """A corrupt step makes Orbax's failed restore print dozens of tracebacks after it raised
    (``_orbax_leftover``); those, and only those, are dropped, process-wide since they arrive
    after the restore returned. Every other unraisable exception goes to the previous hook."""
    if getattr(sys.unraisablehook, "alignjax", False):
        return
    previous = sys.unraisablehook

    def hook(u):
        if not _orbax_leftover(u):
            previous(u)

    hook.alignjax = True
    sys.unraisablehook = hook


def step_problem(state: epath.Path) -> str | None:
    """Why a training step's ``state`` cannot be read, from its files alone (None: none seen).
    Garbled or missing metadata never reaches Orbax, which answers it with a traceback storm."""
    meta = state / "_METADATA"
    if not state.is_dir():
        return "state/ is missing"
    if not meta.is_file():
        return "state/_METADATA is missing"
    for f in (meta, state.parent / "_CHECKPOINT_METADATA"):
        if f.exists():
            try:
                json.loads(f.read_text())
            except (ValueError, UnicodeDecodeError):
                return f"{'state/' if f.parent == state else ''}{f.name} is not valid JSON"
    if any(state.glob("ocdbt.process_*")) and not (state / "manifest.ocdbt").is_file():
        return "state/manifest.ocdbt is missing"
    return None


def _candidates(path: str | os.PathLike) -> tuple[ModelConfig, list[epath.Path], str, RunDir | None, bool]:
    """(model config, params dirs to try in order, kind, run, named): an export's params; a
    run's steps, newest first; or the one step a ``checkpoints/<step>`` path names."""
    path = as_path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} does not exist")
    if (path / "model.json").exists():
        return _model_cfg_from_json(path / "model.json"), [path / "params"], "export", None, True
    found = RunDir.of(path)
    if found is None:
        raise CheckpointError(
            f"{path} is not an alignjax checkpoint (expected model.json + params/, or a workdir with "
            "config.json + checkpoints/, or a checkpoints/<step> directory)")
    run, step = found
    cfg = _model_cfg_from_json(run.config, "model")
    if step is not None:
        return cfg, [run.state_dir(step)], "train", run, True
    steps = run.steps()
    if not steps:
        raise CheckpointError(f"{run.checkpoints} holds no complete step")
    return cfg, [run.state_dir(s) for s in reversed(steps)], "train", run, False


_warned: set[str] = set()  # state dirs skipped: one log line each per process (the reason varies by read)


def first_readable(path, read: Callable[[ModelConfig, epath.Path, str], Any]):
    """(model config, params dir, kind, read's result) for the newest step that ``read`` gets
    through: a run's unreadable steps are skipped with one warning each; a step named
    explicitly, an export, or a run with no readable step is a CheckpointError."""
    _quiet_closed_loop()
    cfg, dirs, kind, run, named = _candidates(path)
    skipped = []
    for d in dirs:
        try:
            if kind == "train" and (problem := step_problem(d)) is not None:
                raise CheckpointError(problem)
            result = read(cfg, d, kind)
        except CheckpointError as e:
            if named and kind == "train":
                raise CheckpointError(f"checkpoint step {d.parent.name} of {run.root} is unreadable: {e}; "
                                      "name the run directory to read its latest readable step") from None
            if named:  # an export
                raise CheckpointError(f"{d}: {e}") from None
            skipped.append((d, str(e)))
            continue
        for s, why in skipped:
            if os.fspath(s) not in _warned:
                _warned.add(os.fspath(s))
                log.warning("skipping unreadable checkpoint step %s of %s (%s); reading step %s",
                            s.parent.name, run.root, why, d.parent.name)
        return cfg, d, kind, result
    reasons = "; ".join(f"step {d.parent.name}: {why[:160]}" for d, why in skipped)
    raise CheckpointError(f"no readable checkpoint step in {run.checkpoints} ({reasons})")


def resolve(path: str | os.PathLike) -> tuple[ModelConfig, epath.Path, str]:
    """(model config, directory holding the params tree, kind) for an export, a training run
    (its newest step whose files look whole: no array is read here, see ``load``) or one step
    directory of a run (``checkpoints/<step>[/state]``)."""
    return first_readable(path, lambda cfg, d, kind: None)[:3]


class Loaded(NamedTuple):
    model_cfg: ModelConfig
    params: Any
    tree_dir: epath.Path  # the step (or export) the params came from
    kind: str  # "export" or "train"


def read_params(abstract: Any, tree_dir: epath.Path, kind: str, what: str = "params"):
    """The params tree shaped as ``abstract`` (ShapeDtypeStructs, with shardings to restore
    straight into them) from an export's ``params`` or, partially, from a training step's state."""
    try:
        if kind == "export":
            with ocp.StandardCheckpointer() as ckptr:
                return ckptr.restore(tree_dir, abstract)
        with ocp.PyTreeCheckpointer() as ckptr:  # partial restore: only the params subtree
            return ckptr.restore(tree_dir, args=ocp.args.PyTreeRestore(
                item={"params": abstract}, partial_restore=True,
                restore_args=ocp.checkpoint_utils.construct_restore_args({"params": abstract})))["params"]
    except Exception as e:  # orbax raises many types for truncated/corrupt files
        raise CheckpointError(f"cannot read {what}: {_reason(e)}") from e


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
        _quiet_closed_loop()
        steps = sorted(self.manager.all_steps(), reverse=True)
        for step in steps:
            data_iter = data_iter_for(step)  # data errors are the user's to see, not a corrupt step
            try:
                if (problem := step_problem(self.directory / str(step) / "state")) is not None:
                    raise CheckpointError(problem)  # before Orbax, which answers it with a traceback storm
                items = {"state": ocp.args.StandardRestore(abstract_state), "audit": ocp.args.JsonRestore()}
                if data_iter is not None:
                    items["data"] = grain.checkpoint.CheckpointRestore(data_iter)
                restored = self.manager.restore(step, args=ocp.args.Composite(**items))
            except Exception as e:  # truncated files, missing items, wrong shapes, ...
                log.warning("skipping checkpoint step %d in %s: %s", step, self.directory, _reason(e)[:300])
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
