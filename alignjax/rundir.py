"""A run directory: the one owner of its layout. Every command that writes or reads a run
(train, eval, convert, lora, posttrain, study) goes through ``RunDir``; nothing else builds
these paths.

    <run>/config.json            the resolved config of the first start (never overwritten)
    <run>/runs.jsonl             one row per start: resolved config, changed fields, host, pid
    <run>/checkpoints/<step>/    one Orbax step: state/ (params, optimizer, step, rng), data/, audit
    <run>/metrics.jsonl          one JSON object per logged step (metrics.jsonl.<n>: before a resume)
    <run>/tensorboard/           the same scalars as TensorBoard events
    <run>/data_audit.json        realised token shares and exposures per component
    <run>/chat_tokenizer.json    post-training: the chat tokenizer's spec, template, added ids
    <run>/tokenizer.json         post-training: the chat tokenizer, for HF tools too (+ tokenizer_config.json)
    <run>/reference_logps.npy    DPO with dpo.reference=precompute
    <run>/eval/                  alignjax-eval's default output
    <run>/launch.jsonl           alignjax-launch's requeue log
    <run>/.lock                  the writer's lock (gs://: lock.json, a lease with a heartbeat)
"""

from __future__ import annotations

import json
import os

import orbax.checkpoint as ocp
from etils import epath

CONFIG = "config.json"
RUNS = "runs.jsonl"
CHECKPOINTS = "checkpoints"
METRICS = "metrics.jsonl"
TENSORBOARD = "tensorboard"
AUDIT = "data_audit.json"
CHAT_INFO = "chat_tokenizer.json"  # {spec, template, added_ids, base_vocab_size}
TOKENIZER = "tokenizer.json"
TOKENIZER_CONFIG = "tokenizer_config.json"
REFERENCE = "reference_logps.npy"  # [max pair id + 1, 2] (chosen, rejected); NaN = no such pair
EVAL = "eval"
LAUNCH = "launch.jsonl"


def as_path(path: str | os.PathLike) -> epath.Path:
    """A local or gs:// path: epath keeps the scheme (pathlib would turn gs://b into gs:/b);
    local paths are made absolute, as Orbax wants."""
    p = epath.Path(path)
    return p if "://" in os.fspath(p) else p.absolute()


class RunDir:
    """The layout of one training run's directory (local or gs://)."""

    def __init__(self, root: str | os.PathLike):
        self.root = as_path(root)

    def __repr__(self) -> str:
        return f"RunDir({os.fspath(self.root)!r})"

    def __fspath__(self) -> str:
        return os.fspath(self.root)

    @property
    def remote(self) -> bool:
        return "://" in os.fspath(self.root)

    # files and directories
    config = property(lambda self: self.root / CONFIG)
    runs = property(lambda self: self.root / RUNS)
    checkpoints = property(lambda self: self.root / CHECKPOINTS)
    metrics = property(lambda self: self.root / METRICS)
    tensorboard = property(lambda self: self.root / TENSORBOARD)
    audit = property(lambda self: self.root / AUDIT)
    chat_info = property(lambda self: self.root / CHAT_INFO)
    tokenizer = property(lambda self: self.root / TOKENIZER)
    tokenizer_config = property(lambda self: self.root / TOKENIZER_CONFIG)
    reference = property(lambda self: self.root / REFERENCE)
    eval_dir = property(lambda self: self.root / EVAL)
    launch_log = property(lambda self: self.root / LAUNCH)

    def step_dir(self, step: int) -> epath.Path:
        return self.checkpoints / str(step)

    def state_dir(self, step: int) -> epath.Path:
        return self.step_dir(step) / "state"

    # what is there
    def is_run(self) -> bool:
        """A training run: a saved config and a checkpoints directory."""
        return self.config.is_file() and self.checkpoints.is_dir()

    def load_config(self) -> dict:
        return json.loads(self.config.read_text())

    def steps(self) -> list[int]:
        """Complete (finalized) checkpoint steps, oldest first; Orbax's temporary directories of
        a save in flight are not steps."""
        if not self.checkpoints.is_dir():
            return []
        return sorted(ocp.utils.checkpoint_steps(self.checkpoints))

    @classmethod
    def of(cls, path: str | os.PathLike) -> tuple["RunDir", int | None] | None:
        """The run a path belongs to and the step it names: a run directory (step None: the
        latest readable), ``checkpoints/<step>`` or ``checkpoints/<step>/state``; None for
        anything else (an export, an HF directory)."""
        p = as_path(path)
        if p.name == "state" and p.parent.name.isdigit():
            p = p.parent
        if p.name.isdigit() and p.parent.name == CHECKPOINTS:
            run = cls(p.parent.parent)
            return (run, int(p.name)) if run.config.is_file() else None
        run = cls(p)
        return (run, None) if run.is_run() else None

