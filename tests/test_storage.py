"""Storage: run directories on gs:// (through etils.epath; here an in-memory filesystem stands
in for GCS) and restoring a checkpoint onto a different mesh."""

import json
import os
import shutil
import subprocess
import sys

import pytest
from etils import epath
from etils.epath import backend, gpath
from fsspec.implementations.memory import MemoryFileSystem

from alignjax import checkpoint as ckpt_lib
from alignjax import metrics as metrics_lib
from alignjax import train as train_lib
from conftest import REPO


@pytest.fixture
def fake_gcs(monkeypatch):
    """gs:// paths served by fsspec's memory filesystem (epath's fsspec backend, as with gcsfs)."""
    fs = MemoryFileSystem(skip_instance_cache=True)
    fs.store, fs.pseudo_dirs = {}, [""]
    monkeypatch.setattr(gpath, "_is_tf_installed", lambda: False)
    monkeypatch.setattr(backend.fsspec_backend, "_get_filesystem", lambda name: fs)
    return fs


def test_gs_paths_keep_their_scheme():
    p = ckpt_lib.as_path("gs://bucket/run")
    assert str(p / "checkpoints") == "gs://bucket/run/checkpoints"
    assert str(ckpt_lib.as_path("relative/dir")).startswith("/")  # local: absolute, as Orbax wants


def test_metrics_on_gs_are_staged_synced_and_resumed(fake_gcs):
    run = epath.Path("gs://bucket/run")
    w = metrics_lib.MetricsWriter("gs://bucket/run", sync_every_s=3600)
    w.write(1, {"loss": 2.0})
    assert not (run / "metrics.jsonl").exists()  # not yet synced: GCS objects cannot be appended to
    w.sync()
    w.write(2, {"loss": 1.5})
    assert [json.loads(x)["step"] for x in (run / "metrics.jsonl").read_text().splitlines()] == [1]
    w.close()
    assert [json.loads(x)["step"] for x in (run / "metrics.jsonl").read_text().splitlines()] == [1, 2]
    assert any(k.startswith("gs://bucket/run/tensorboard/events.out.tfevents") for k in fake_gcs.store)
    assert not w.local.exists()  # the staging directory is removed
    w = metrics_lib.MetricsWriter("gs://bucket/run", sync_every_s=0)  # a resumed run continues the file
    w.write(3, {"loss": 1.0, "mfu": float("nan")})
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3] and rows[-1]["mfu"] is None
    w.close()
    assert not metrics_lib.MetricsWriter("gs://bucket/other", enabled=False).enabled  # processes > 0


def test_config_json_and_resume_check_on_gs(fake_gcs, tiny_config):
    run = epath.Path("gs://bucket/run")
    metrics_lib.write_json(run / "config.json", tiny_config.to_dict())
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "10").mkdir()
    assert json.loads((run / "config.json").read_text())["model"]["d_model"] == tiny_config.model.d_model
    train_lib._check_resumable(tiny_config, run)  # same model: fine
    tiny_config.model.d_model = 32
    with pytest.raises(ckpt_lib.CheckpointError, match="model.d_model: 64 -> 32"):
        train_lib._check_resumable(tiny_config, run)


def _train(workdir, *args):
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": "--xla_force_host_platform_device_count=8"}
    return subprocess.run([sys.executable, "-m", "alignjax.train", "--config=configs/tiny.py",
                           "--config.train.num_steps=11", "--config.checkpoint.every_steps=10",
                           f"--workdir={workdir}", *args], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=600)


def test_restore_onto_a_different_mesh_gives_the_same_next_loss(tmp_path):
    """Save on mesh (8,1,1); restore on (data=2, fsdp=2, tensor=2) through restore_latest with the
    new mesh's abstract state: step 11 matches the (8,1,1) run continued."""
    a, b = tmp_path / "a", tmp_path / "b"
    r = _train(a, "--config.mesh.data=8")
    assert r.returncode == 0, r.stderr[-2000:]
    # b: a copy of a as it was at step 10 (the step-11 checkpoint and all metrics removed).
    shutil.copytree(a, b)
    shutil.rmtree(b / "checkpoints" / "11")
    (b / "metrics.jsonl").unlink()
    r = _train(b, "--config.mesh.data=2", "--config.mesh.fsdp=2", "--config.mesh.tensor=2")
    assert r.returncode == 0, r.stderr[-2000:]
    assert "resumed from" in r.stderr and "step 10" in r.stderr
    la = {r["step"]: r["loss"] for r in map(json.loads, (a / "metrics.jsonl").read_text().splitlines())}
    lb = {r["step"]: r["loss"] for r in map(json.loads, (b / "metrics.jsonl").read_text().splitlines())}
    assert list(lb) == [11]
    assert lb[11] == pytest.approx(la[11], rel=1e-5)
