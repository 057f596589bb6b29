import os
import sys
from pathlib import Path

# 8 fake CPU devices for mesh tests; must be set before jax initialises its backend.
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8").strip()

import pytest  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


def run_cli(module: str, *args: str, env: dict | None = None, timeout: float = 600):
    """Run ``python -m alignjax.<module>`` as a user would; returns CompletedProcess."""
    import subprocess

    full_env = {**os.environ, "JAX_PLATFORMS": "cpu", **(env or {})}
    full_env["XLA_FLAGS"] = " ".join(f for f in full_env.get("XLA_FLAGS", "").split() if "device_count" not in f)
    return subprocess.run([sys.executable, "-m", f"alignjax.{module}", *args], cwd=REPO, env=full_env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def tiny_config():
    from alignjax.config import load_config_file

    return load_config_file(str(REPO / "configs" / "tiny.py"))


def listen_alignjax(caplog, level: int):
    """caplog on alignjax's logger at ``level``: the logger may not propagate
    (config.setup_logging), so the handler is attached to it directly. A generator for fixtures."""
    import logging

    logger = logging.getLogger("alignjax")
    caplog.set_level(level, "alignjax")
    if not logger.propagate:
        logger.addHandler(caplog.handler)
    yield caplog
    if caplog.handler in logger.handlers:
        logger.removeHandler(caplog.handler)
