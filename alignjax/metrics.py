"""Metrics: one JSON object per logged step in metrics.jsonl, the same scalars in TensorBoard,
and model FLOPs utilisation against the device kind's peak."""

from __future__ import annotations

import json
import math
from pathlib import Path

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


class MetricsWriter:
    """Appends to <workdir>/metrics.jsonl (so a resumed run continues the same file) and
    writes TensorBoard events under <workdir>/tensorboard. Only process 0 writes."""

    def __init__(self, workdir: str | Path, enabled: bool = True):
        self.enabled = enabled
        if not enabled:
            return
        from tensorboardX import SummaryWriter

        self.path = Path(workdir) / "metrics.jsonl"
        self.file = self.path.open("a", encoding="utf-8")
        self.tb = SummaryWriter(str(Path(workdir) / "tensorboard"))

    def write(self, step: int, metrics: dict) -> None:
        if not self.enabled:
            return
        clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in metrics.items()}
        self.file.write(json.dumps({"step": step, **clean}) + "\n")
        self.file.flush()
        for k, v in metrics.items():
            if isinstance(v, (int, float)) and v is not None:
                self.tb.add_scalar(k, v, step)

    def close(self) -> None:
        if self.enabled:
            self.file.close()
            self.tb.close()
