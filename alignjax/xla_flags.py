"""XLA flags for the CPU backend. Call ``apply()`` before jax initialises its backend."""

from __future__ import annotations

import os

CPU_FLAGS: list[str] = []
_applied: list[str] = []


def apply(flags: list[str] | None = None) -> None:
    """Append ``flags`` (default CPU_FLAGS) to $XLA_FLAGS; a flag the user already set wins."""
    flags = CPU_FLAGS if flags is None else flags
    extra = os.environ.get("BENCH_XLA_FLAGS")  # experiments
    if extra is not None:
        flags = extra.split()
    current = os.environ.get("XLA_FLAGS", "")
    have = {f.split("=")[0] for f in current.split()}
    add = [f for f in flags if f.split("=")[0] not in have]
    os.environ["XLA_FLAGS"] = " ".join([current, *add]).strip()
    _applied[:] = os.environ["XLA_FLAGS"].split()


def applied() -> str:
    return " ".join(_applied)
