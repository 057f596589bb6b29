"""Metrics: one JSON object per logged step in metrics.jsonl, the same scalars in TensorBoard,
and model FLOPs utilisation against the device kind's peak. The workdir may be local or on
gs:// (through etils.epath / gcsfs)."""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
import time
from pathlib import Path

from etils import epath

METRICS = "metrics.jsonl"  # a run directory's names for them (alignjax/rundir.py's layout)
TENSORBOARD = "tensorboard"


def is_remote(path) -> bool:
    return "://" in os.fspath(path)


def write_json(path, obj) -> None:
    """Write ``obj`` as indented JSON to a local or gs:// path, replacing it whole: atomically
    (temp file + rename) on local disks; a GCS object write is atomic by itself."""
    write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def write_text(path, text: str) -> None:
    """Replace a local or gs:// file whole: temp file + rename locally; a GCS object write is
    atomic by itself."""
    path = epath.Path(path)
    if is_remote(path):
        path.write_text(text)
        return
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


# Dense bf16 peak FLOP/s per device as jax reports device_kind (vendor datasheets).
PEAK_FLOPS = {
    "TPU v4": 275e12,
    "TPU v5 lite": 197e12,  # v5e
    "TPU v5": 459e12,  # v5p
    "TPU v5p": 459e12,
    "TPU v6 lite": 918e12,  # v6e (Trillium)
    "TPU v6e": 918e12,
    "NVIDIA H100 80GB HBM3": 989e12,
    "NVIDIA H200": 989e12,
    "NVIDIA A100-SXM4-80GB": 312e12,
}


def peak_flops(device_kind: str, override: float | None = None) -> float | None:
    return override if override else PEAK_FLOPS.get(device_kind)


def mfu(tokens_per_sec: float, flops_per_token: float, num_devices: int, peak: float | None) -> float | None:
    """MFU = achieved model FLOP/s / (devices x peak); model FLOPs per token from
    ``model.flops_per_token`` (6N + causal attention, no rematerialisation counted)."""
    if not peak:
        return None
    return tokens_per_sec * flops_per_token / (num_devices * peak)


def _row_step(line: str) -> int | None:
    try:
        return int(json.loads(line)["step"])
    except (ValueError, KeyError, TypeError):  # a torn last line (killed mid-write)
        return None


def truncate_after(path, step: int) -> epath.Path | None:
    """Drop the rows of ``path`` (metrics.jsonl, local or gs://) logged after ``step``, the step
    a resumed run restored: it logs them again, and every step keeps one row. The whole old file
    is kept first as ``metrics.jsonl.<n>`` (n = 1, 2, ...), which is returned (None: nothing cut)."""
    path = epath.Path(path)
    if not path.exists():
        return None
    text = path.read_text()
    lines = text.splitlines(keepends=True)
    keep = [ln for ln in lines if (s := _row_step(ln)) is not None and s <= step and ln.endswith("\n")]
    if len(keep) == len(lines):
        return None
    n = 1 + max([int(p.name.rsplit(".", 1)[1]) for p in path.parent.glob(path.name + ".*")
                 if p.name.rsplit(".", 1)[1].isdigit()], default=0)
    backup = path.parent / f"{path.name}.{n}"
    backup.write_text(text)
    write_text(path, "".join(keep))
    return backup


class MetricsWriter:
    """Appends to <workdir>/metrics.jsonl (so a resumed run continues the same file) and
    writes TensorBoard events under <workdir>/tensorboard. Only process 0 writes.

    ``resume_step`` (the step a run restored, 0 for a fresh start): rows after it are cut
    (``truncate_after``) and TensorBoard hides its events after it (purge_step), so the rows
    between the last save and a crash are not there twice.

    GCS objects cannot be appended to, so for a gs:// workdir both live in a local staging
    directory (seeded with the existing metrics.jsonl on resume) and are copied up every
    ``sync_every_s`` seconds and on close (SIGTERM saves also close)."""

    def __init__(self, workdir, enabled: bool = True, sync_every_s: float = 60.0, resume_step: int | None = None):
        self.enabled = enabled
        if not enabled:
            return
        from tensorboardX import SummaryWriter

        self.workdir, self.remote = epath.Path(workdir), is_remote(workdir)
        self.sync_every_s, self._synced_at, self._uploaded = sync_every_s, time.monotonic(), {}
        local = Path(tempfile.mkdtemp(prefix="alignjax-metrics-")) if self.remote else Path(workdir)
        self.local, self.path = local, local / METRICS
        purge, self.cut = None, None
        if resume_step is not None:
            self.cut = truncate_after(self.workdir / METRICS, resume_step)
            tb = self.workdir / TENSORBOARD
            if self.cut is not None or (tb.is_dir() and any(tb.glob("events.out.tfevents.*"))):
                purge = resume_step + 1  # TensorBoard hides the old events from this step on
        if self.remote and (self.workdir / METRICS).exists():
            self.path.write_bytes((self.workdir / METRICS).read_bytes())
        self.file = self.path.open("a", encoding="utf-8")
        # tensorboardX names event files by second and host only: a restart within the same second
        # would truncate the previous file. A nanosecond suffix keeps each writer's file, in order.
        self.tb = SummaryWriter(str(local / TENSORBOARD), purge_step=purge, filename_suffix=f".{time.time_ns()}")

    def write(self, step: int, metrics: dict) -> None:
        if not self.enabled:
            return
        clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in metrics.items()}
        self.file.write(json.dumps({"step": step, **clean}) + "\n")
        self.file.flush()
        for k, v in metrics.items():
            if isinstance(v, (int, float)) and v is not None:
                self.tb.add_scalar(k, v, step)
        if self.remote and time.monotonic() - self._synced_at >= self.sync_every_s:
            self.sync()

    def sync(self) -> None:
        """Copy metrics.jsonl and changed TensorBoard event files up to a gs:// workdir."""
        if not (self.enabled and self.remote):
            return
        self.tb.flush()
        for f in [self.path, *sorted((self.local / TENSORBOARD).rglob("*"))]:
            if f.is_file() and self._uploaded.get(f) != f.stat().st_size:
                data, dest = f.read_bytes(), self.workdir / str(f.relative_to(self.local))
                dest.parent.mkdir(parents=True, exist_ok=True)
                dest.write_bytes(data)
                self._uploaded[f] = len(data)
        self._synced_at = time.monotonic()

    def close(self) -> None:
        if self.enabled:
            self.file.close()
            self.tb.close()
            if self.remote:
                self.sync()
                shutil.rmtree(self.local, ignore_errors=True)
