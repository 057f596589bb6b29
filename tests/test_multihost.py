"""Multi-host: 2 CPU processes (4 devices each) joined through a localhost coordinator train
the same steps as 1 process with 8 devices fed the same global batch."""

import json
import os
import socket
import subprocess
import sys

import jax
import numpy as np
import pytest

from alignjax import distributed
from alignjax import train as train_lib
from alignjax.config import ConfigError
from alignjax.data import pipeline
from conftest import REPO, run_cli


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def _run_two_processes(workdir, *args, env1=None, timeout=600):
    port = _free_port()
    procs = []
    for pid in range(2):
        env = {**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": "--xla_force_host_platform_device_count=4",
               "ALIGNJAX_COORDINATOR": f"localhost:{port}", "ALIGNJAX_NUM_PROCESSES": "2",
               "ALIGNJAX_PROCESS_ID": str(pid), **((env1 or {}) if pid == 1 else {})}
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "alignjax.train", "--config=configs/tiny.py", f"--workdir={workdir}", *args],
            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    try:
        outs = [p.communicate(timeout=timeout) for p in procs]
    finally:
        for p in procs:
            p.kill()
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err[-3000:]
    return outs


def _reference_losses(cfg, num_steps: int) -> list[float]:
    """1 process, 8 devices; each global batch is process 0's rows then process 1's rows, as
    make_array_from_process_local_data lays them out over a mesh of [p0 devices, p1 devices]."""
    setup = train_lib.Setup(cfg)
    iters = [pipeline.make_train_iterator(cfg, 0, p, 2).iterator for p in range(2)]
    losses = []
    with jax.set_mesh(setup.mesh):
        state = setup.init_state()
        for _ in range(num_steps):
            parts = [next(it) for it in iters]
            # Hosts read disjoint documents: process p takes documents p, p+2, ... of the stream.
            assert not np.array_equal(parts[0]["inputs"], parts[1]["inputs"])
            batch = {k: np.concatenate([b[k] for b in parts]) for k in parts[0] if k != "component"}
            state, m = setup.train_step(state, setup.global_batch(batch), {})
            losses.append(float(m["loss"]))
    return losses


def test_two_processes_train_like_one_and_save_the_same_step_when_one_is_preempted(tiny_config, tmp_path):
    """Process 1 alone gets SIGTERM after step 4; the flag is agreed across processes, so both
    save step 4 and exit 0 (before, process 0 went on to step 5 and its collectives hung).
    Resumed, the run's losses are those of 1 process with 8 devices fed the same global batches."""
    workdir = tmp_path / "run"
    outs = _run_two_processes(workdir, "--config.train.num_steps=5", "--config.checkpoint.every_steps=3",
                              env1={"ALIGNJAX_FAULT_SIGTERM_AFTER_STEP": "4"}, timeout=300)
    assert all("process %d of 2 (4 local / 8 global devices)" % i in err for i, (_, err) in enumerate(outs))
    assert "SIGTERM: saved step 4, exiting (the notice came to another host)" in outs[0][1]
    assert "SIGTERM: saved step 4, exiting\n" in outs[1][1]
    assert "step 5:" not in outs[0][0]
    assert sorted(p.name for p in (workdir / "checkpoints").iterdir()) == ["3", "4"]
    outs = _run_two_processes(workdir, "--config.train.num_steps=5", "--config.checkpoint.every_steps=3")
    assert "resumed from" in outs[0][1] and "step 4" in outs[0][1]
    rows = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 5]  # only process 0 writes
    assert "step 5:" in outs[0][0] and "step 5:" not in outs[1][0]
    assert sorted(p.name for p in (workdir / "checkpoints").iterdir()) == ["3", "4", "5"]

    tiny_config.train.num_steps = 5
    ref = _reference_losses(tiny_config, 5)
    np.testing.assert_allclose([r["loss"] for r in rows], ref, rtol=1e-5)


def test_coordinator_without_process_count_is_a_one_line_error(tmp_path):
    r = run_cli("train", "--config=configs/tiny.py", f"--workdir={tmp_path}",
                env={"ALIGNJAX_COORDINATOR": "localhost:1234"})
    assert r.returncode == 2
    assert r.stderr.strip().splitlines()[-1].startswith("alignjax-train: error: coordinator localhost:1234 is set")


def test_single_host_does_not_initialize(monkeypatch):
    for name in ("ALIGNJAX_COORDINATOR", "JAX_COORDINATOR_ADDRESS", "MEGASCALE_NUM_SLICES", "TPU_WORKER_HOSTNAMES"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(distributed, "_on_tpu_vm", lambda: False)
    assert distributed.initialize() is False
    monkeypatch.setenv("ALIGNJAX_COORDINATOR", "localhost:1")
    monkeypatch.setenv("ALIGNJAX_NUM_PROCESSES", "2")
    monkeypatch.setenv("ALIGNJAX_PROCESS_ID", "2")
    with pytest.raises(ConfigError, match="PROCESS_ID=2 is not in"):
        distributed.initialize()


def test_tpu_worker_count_from_environment(monkeypatch):
    """GKE-style: everything in the environment, so the (unreachable) metadata is never read."""
    monkeypatch.setattr(distributed, "_on_tpu_vm", lambda: True)
    monkeypatch.setenv("GCE_METADATA_IP", "127.0.0.1:1")
    monkeypatch.setenv("TPU_WORKER_HOSTNAMES", "10.0.0.1,10.0.0.2,10.0.0.3,10.0.0.4")
    for k, v in {"MEGASCALE_NUM_SLICES": "2", "MEGASCALE_SLICE_ID": "1", "MEGASCALE_COORDINATOR_ADDRESS": "10.0.0.9",
                 "TPU_WORKER_ID": "2"}.items():
        monkeypatch.setenv(k, v)
    assert distributed.tpu_worker_count() == 8
    assert distributed.tpu_topology().process_id == 6
