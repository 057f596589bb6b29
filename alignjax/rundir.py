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

import datetime
import fcntl
import json
import logging
import os
import socket
import threading
import time
import uuid

from etils import epath

from alignjax.config import ConfigError
from alignjax.metrics import METRICS, TENSORBOARD, write_json
from alignjax.model_config import ModelConfig

log = logging.getLogger("alignjax")

CONFIG = "config.json"
RUNS = "runs.jsonl"
CHECKPOINTS = "checkpoints"
AUDIT = "data_audit.json"
CHAT_INFO = "chat_tokenizer.json"  # {spec, template, added_ids, base_vocab_size}
TOKENIZER = "tokenizer.json"
TOKENIZER_CONFIG = "tokenizer_config.json"
REFERENCE = "reference_logps.npy"  # [max pair id + 1, 2] (chosen, rejected); NaN = no such pair
EVAL = "eval"
LAUNCH = "launch.jsonl"
LOCK = ".lock"  # local: an fcntl lock, the holder's {host, pid, start} inside
LEASE = "lock.json"  # gs://: a lease {host, pid, start, expires, token} renewed by a heartbeat


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
        import orbax.checkpoint as ocp  # here: the study runner locks its workdir without jax

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

    # ------------------------------------------------------------------------- the writer's side

    def preflight_writable(self) -> None:
        """Every output path can be created and written, checked before any work (a file where a
        directory belongs, a read-only disk): one line (ConfigError) instead of a whole run that
        then fails in its first save. Creates the workdir (the lock lives there); a subdirectory
        that does not exist yet is created, probed and removed again, so a run stopped by a later
        check leaves no empty checkpoints/ behind."""
        probe = f".preflight-{socket.gethostname()}-{os.getpid()}"  # per process: pod hosts probe at once
        for d in (self.root, self.checkpoints, self.tensorboard):
            created = d != self.root and not self.remote and not d.exists()  # GCS has no empty dirs
            try:
                if d.exists() and not d.is_dir():
                    raise ConfigError(f"--workdir={self.root}: {d} is a file, not a directory")
                for attempt in range(3):
                    d.mkdir(parents=True, exist_ok=True)
                    try:
                        (d / probe).write_text("")
                        break
                    except FileNotFoundError:  # another process of the run removed its probe directory
                        if attempt == 2:
                            raise
                (d / probe).unlink()
                if created:
                    try:
                        d.rmdir()
                    except OSError:  # another process of the run is probing it (or wrote into it): keep it
                        pass
            except OSError as e:
                why = e.strerror or type(e).__name__
                raise ConfigError(f"--workdir={self.root}: cannot write to {d} ({why})") from None
        for f in (self.config, self.runs, self.metrics, self.audit):
            if f.is_dir():
                raise ConfigError(f"--workdir={self.root}: {f} is a directory, not a file")
        if not self.remote and self.metrics.exists() and not os.access(self.metrics, os.W_OK):
            raise ConfigError(f"--workdir={self.root}: {self.metrics} is not writable")

    def lock(self, **kwargs) -> "RunLock":
        return RunLock(self, **kwargs)

    def previous_config(self) -> dict | None:
        """The resolved config of the latest start (runs.jsonl), else config.json; None for a new run."""
        if self.runs.is_file():
            rows = [ln for ln in self.runs.read_text().splitlines() if ln.strip()]
            for line in reversed(rows):
                try:
                    return json.loads(line)["config"]
                except (ValueError, KeyError):  # a torn last line (crash mid-append): the one before
                    continue
        return self.load_config() if self.config.is_file() else None

    def record_start(self, config: dict, allow: tuple[str, ...] = ()) -> dict:
        """config.json at the first start only; one runs.jsonl row for every start (resolved
        config, fields changed since the previous start, the changes it allowed). Returns the row."""
        previous = self.previous_config()
        if not self.config.exists():
            write_json(self.config, config)
        row = {"start": _now(), "host": socket.gethostname(), "pid": os.getpid(),
               "changed": {k: list(v) for k, v in config_diff(previous or config, config).items()},
               "allowed": list(allow), "config": config}
        line = json.dumps(row, sort_keys=True, default=str) + "\n"
        if self.remote:  # a GCS object cannot be appended to: rewritten whole (a few KB per start)
            self.runs.write_text((self.runs.read_text() if self.runs.exists() else "") + line)
        else:
            with open(self.runs, "a", encoding="utf-8") as f:
                f.write(line)
        return row


def _now(t: float | None = None) -> str:
    return datetime.datetime.fromtimestamp(time.time() if t is None else t).astimezone().isoformat(timespec="seconds")


# ----------------------------------------------------------------------------- experiment identity

# A resumed run must be the same experiment as the run it resumes. Each dotted field (or group
# prefix) below is identity or a run setting; the longest matching prefix decides, and a field
# neither table names is identity (a new config field is safe until it is listed as a setting).
IDENTITY = (
    *(f"model.{f}" for f in ModelConfig.SHAPE),  # the model: ModelConfig.identity(), its one definition
    "model.dtype",  # the run's numerics
    "data", "stages", "chat", "dpo", "lora", "optimizer",
    "train",  # num_steps, batch_size, seq_len, seed, objective
    "checkpoint.init_from",
)
RUN_SETTINGS = (
    "model",  # the rest of the model group (remat, attention, scan_layers...): the same function, computed differently
    "train.log_every", "train.eval_every", "train.progress_bar", "train.peak_flops_per_device",
    "train.loss_chunk",  # the same loss, computed a chunk at a time
    "train.grad_accum",  # the same update (train_step accumulates exactly)
    "train.allow_changes",
    "checkpoint",  # every_steps, max_to_keep, async_save (init_from is identity, above)
    "mesh", "eval",
    "data.max_bad_fraction", "chat.max_bad_fraction",  # tolerances: they stop a run, never change its data
)


def _flat(tree: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in tree.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _matches(field: str, prefix: str) -> bool:
    return field == prefix or field.startswith(prefix + ".")


def is_identity(field: str) -> bool:
    best = max([(len(p), True) for p in IDENTITY if _matches(field, p)]
               + [(len(p), False) for p in RUN_SETTINGS if _matches(field, p)], default=(0, True))
    return best[1]


def config_diff(old: dict, new: dict) -> dict[str, tuple]:
    """{dotted field: (old, new)} of every leaf that differs (None: absent); values compared as
    config.json holds them (JSON: tuples are lists)."""
    old, new = _flat(_jsonable(old)), _flat(_jsonable(new))
    return {k: (old.get(k), new.get(k)) for k in sorted(old.keys() | new.keys()) if old.get(k) != new.get(k)}


def _jsonable(tree: dict) -> dict:
    return json.loads(json.dumps(tree, default=str))


def parse_allow(spec: str, config: dict) -> tuple[str, ...]:
    """``train.allow_changes`` ("optimizer.lr,train.num_steps", or a group such as "optimizer"),
    each checked to name a field or group of the config (a typo would silently allow nothing)."""
    allow = tuple(a.strip() for a in spec.split(",") if a.strip())
    fields = _flat(_jsonable(config))
    for a in allow:
        if not any(_matches(f, a) for f in fields):
            raise ConfigError(f"train.allow_changes: {a!r} is not a config field or group")
    return allow


def identity_changes(old: dict, new: dict, allow: tuple[str, ...] = (), defaults: dict | None = None
                     ) -> tuple[dict, dict]:
    """(every changed field, the identity fields among them that ``allow`` does not permit). A
    field the old config lacks that holds its ``defaults`` value is a field added to alignjax
    since the run started, not a change (a new data source is one: it has no default)."""
    changed = config_diff(old, new)
    have, dflt = _flat(_jsonable(old)), _flat(_jsonable(defaults or {}))
    refused = {k: v for k, v in changed.items() if is_identity(k) and not any(_matches(k, a) for a in allow)
               and not (k not in have and k in dflt and dflt[k] == v[1])}
    return changed, refused


# ----------------------------------------------------------------------------- one writer per run


class LockError(Exception):
    """Another writer holds the run directory (exit 3). One line naming the holder."""


class RunLock:
    """One writer per run directory. Local: an fcntl lock on ``.lock`` (the kernel drops it with
    the process, so a kill -9 leaves no stale lock; the file names the holder). gs:// (or
    ``lease=True``): ``lock.json``, a lease {host, pid, start, expires} that a heartbeat thread
    renews every ``renew_s``; a preempted VM's lease lapses after ``ttl_s`` and may then be
    taken. Taking a run another writer holds raises LockError (exit 3) naming the holder.
    ``clock`` is injectable for tests."""

    def __init__(self, run: RunDir, *, lease: bool | None = None, ttl_s: float = 120.0, renew_s: float = 30.0,
                 clock=time.time, heartbeat: bool = True):
        self.run, self.lease = run, run.remote if lease is None else lease
        self.ttl_s, self.renew_s, self.clock, self.heartbeat = ttl_s, renew_s, clock, heartbeat
        self.path = run.root / (LEASE if self.lease else LOCK)
        self.me = {"host": socket.gethostname(), "pid": os.getpid(), "start": _now(clock()),
                   "token": uuid.uuid4().hex}
        self.lost = False  # the lease was taken over (it lapsed): this writer must stop
        self._file, self._thread, self._stop = None, None, threading.Event()

    def __enter__(self) -> "RunLock":
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    def _held(self, holder: dict | None, extra: str = "") -> LockError:
        who = (f"host {holder.get('host')}, pid {holder.get('pid')}, started {holder.get('start')}" if holder
               else "holder unknown")
        return LockError(f"{self.run.root} is in use by another writer ({who}{extra}); "
                               "wait for it to finish or use another --workdir")

    def acquire(self) -> None:
        if self.lease:
            return self._acquire_lease()
        f = open(self.path, "a+", encoding="utf-8")  # not inherited by subprocesses (PEP 446)
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            f.seek(0)
            try:
                holder = json.loads(f.read())
            except ValueError:  # the holder is between taking the lock and naming itself
                holder = None
            f.close()
            raise self._held(holder) from None
        f.seek(0)
        f.truncate()
        f.write(json.dumps({k: v for k, v in self.me.items() if k != "token"}) + "\n")
        f.flush()
        self._file = f

    def _read_lease(self) -> dict | None:
        try:
            return json.loads(self.path.read_text())
        except (OSError, ValueError):  # none, or torn: nobody holds it
            return None

    def _write_lease(self) -> None:
        self.path.write_text(json.dumps({**self.me, "expires": self.clock() + self.ttl_s}) + "\n")

    def _acquire_lease(self) -> None:
        cur = self._read_lease()
        if cur and cur.get("token") != self.me["token"] and float(cur.get("expires", 0)) > self.clock():
            raise self._held(cur, f", lease until {_now(float(cur['expires']))}")
        self._write_lease()
        cur = self._read_lease()  # two takers at once: the last write wins, the other sees it here
        if not cur or cur.get("token") != self.me["token"]:
            raise self._held(cur)
        if self.heartbeat:
            self._thread = threading.Thread(target=self._beat, name="alignjax-run-lease", daemon=True)
            self._thread.start()

    def renew(self) -> bool:
        """Extend the lease; False (and ``lost``) when another writer took it after it lapsed."""
        cur = self._read_lease()
        if cur is not None and cur.get("token") != self.me["token"]:
            self.lost = True
            log.error("%s: the run lease was taken by host %s, pid %s (ours lapsed)", self.run.root,
                      cur.get("host"), cur.get("pid"))
            return False
        self._write_lease()
        return True

    def _beat(self) -> None:
        while not self._stop.wait(self.renew_s):
            try:
                if not self.renew():
                    return
            except OSError as e:  # a transient storage error: the next beat retries within the ttl
                log.warning("%s: renewing the run lease: %s", self.run.root, e)

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._file is not None:
            self._file.close()  # closes the lock (the .lock file stays: its next holder rewrites it)
            self._file = None
        elif self.lease and not self.lost:
            cur = self._read_lease()
            if cur and cur.get("token") == self.me["token"]:
                self.path.unlink()
