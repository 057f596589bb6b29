import json
import os
import signal
import subprocess
import sys
import dataclasses
import time

import jax
import numpy as np

from alignjax import checkpoint as ckpt_lib
from alignjax import config as config_lib
from alignjax import model_state, sharding
from alignjax.model import ModelConfig
from conftest import REPO, run_cli

TINY = ["--config=configs/tiny.py", "--config.train.num_steps=20", "--config.checkpoint.every_steps=10"]


def _losses(workdir):
    return {r["step"]: r["loss"] for r in map(json.loads, (workdir / "metrics.jsonl").read_text().splitlines())}


def _params(workdir):
    return jax.tree.leaves(model_state.load_params(workdir)[1])


def test_resume_after_kill_9_is_bitwise_identical(tmp_path):
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    r = run_cli("train", *TINY, f"--workdir={straight}")
    assert r.returncode == 0, r.stderr[-2000:]
    r = run_cli("train", *TINY, f"--workdir={killed}", env={"ALIGNJAX_FAULT_KILL_AFTER_SAVE": "10"})
    assert r.returncode == -signal.SIGKILL
    assert sorted(p.name for p in (killed / "checkpoints").iterdir()) == ["10"]
    r = run_cli("train", *TINY, f"--workdir={killed}")
    assert r.returncode == 0, r.stderr[-2000:]
    assert "resumed from" in r.stderr and "step 10" in r.stderr
    a, b = _losses(straight), _losses(killed)
    assert [a[s] for s in range(11, 21)] == [b[s] for s in range(11, 21)]
    for x, y in zip(_params(straight), _params(killed)):
        assert x.dtype == y.dtype and np.array_equal(np.asarray(x), np.asarray(y))


def test_corrupt_and_incomplete_steps_are_skipped_and_kept(tmp_path):
    r = run_cli("train", *TINY, f"--workdir={tmp_path}")
    assert r.returncode == 0, r.stderr[-2000:]
    ckdir = tmp_path / "checkpoints"
    # Corrupt step 20: truncate every array data file.
    for f in (ckdir / "20" / "state").rglob("*"):
        if f.is_file() and f.stat().st_size > 0 and "metadata" not in f.name.lower() and f.suffix != ".json":
            f.write_bytes(f.read_bytes()[:7])
    # An incomplete save (crash mid-write) leaves a temporary directory.
    (ckdir / "30.orbax-checkpoint-tmp-1").mkdir()
    r = run_cli("train", "--config=configs/tiny.py", "--config.train.num_steps=30",
                "--config.checkpoint.every_steps=10", "--config.train.allow_changes=train.num_steps",
                f"--workdir={tmp_path}")
    assert r.returncode == 0, r.stderr[-2000:]
    assert "skipping checkpoint step 20" in r.stderr and "resumed from" in r.stderr
    assert any(p.name.startswith("corrupt-20-") for p in ckdir.iterdir())  # kept, out of the way
    assert {"10", "20", "30"} <= {p.name for p in ckdir.iterdir()}
    assert all(np.isfinite(np.asarray(x)).all() for x in _params(tmp_path))


def test_sigterm_saves_then_exits_0_and_the_run_resumes(tmp_path):
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": ""}
    p = subprocess.Popen([sys.executable, "-m", "alignjax.train", "--config=configs/tiny.py",
                          "--config.train.num_steps=100000", "--config.checkpoint.every_steps=100000",
                          f"--workdir={tmp_path}"], cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    metrics = tmp_path / "metrics.jsonl"
    deadline = time.time() + 300
    while time.time() < deadline and not (metrics.exists() and metrics.read_text().count("\n") >= 3):
        time.sleep(0.2)
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=300)
    assert p.returncode == 0, err.decode()[-2000:]
    steps = [int(d.name) for d in (tmp_path / "checkpoints").iterdir() if d.name.isdigit()]
    assert len(steps) == 1 and steps[0] >= 3
    r = run_cli("train", "--config=configs/tiny.py", f"--config.train.num_steps={steps[0] + 2}",
                "--config.train.allow_changes=train.num_steps", f"--workdir={tmp_path}")
    assert r.returncode == 0 and f"step {steps[0]}" in r.stderr


def test_missing_init_checkpoint_is_a_one_line_error(tmp_path):
    r = run_cli("train", "--config=configs/tiny.py", f"--workdir={tmp_path}", "--config.checkpoint.init_from=/nonexistent/ckpt")
    assert r.returncode == 3
    assert r.stderr.strip().splitlines()[-1] == "alignjax-train: error: checkpoint /nonexistent/ckpt does not exist"


def test_resuming_with_another_model_is_refused_and_nothing_is_touched(tmp_path):
    r = run_cli("train", *TINY, f"--workdir={tmp_path}")
    assert r.returncode == 0
    before = (tmp_path / "config.json").read_text()
    r = run_cli("train", *TINY, f"--workdir={tmp_path}", "--config.model.d_model=128")
    assert r.returncode == 3
    assert "model.d_model: 64 -> 128" in r.stderr.strip().splitlines()[-1]
    assert (tmp_path / "config.json").read_text() == before
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["10", "20"]


def test_model_identity_is_the_shape_and_the_config_defaults_are_the_dataclass():
    a = ModelConfig(num_layers=1, d_model=32, num_heads=2, d_ff=64, vocab_size=128, max_seq_len=32)
    how = dataclasses.replace(a, scan_layers=True, dtype="bfloat16", max_seq_len=64, init_std=0.1)
    assert how.identity() == a.identity() and set(a.identity()) == set(ModelConfig.SHAPE)
    assert dataclasses.replace(a, num_layers=2).identity() != a.identity()
    assert config_lib.default_config().model.to_dict() == {f.name: f.default for f in dataclasses.fields(ModelConfig)}


def test_model_state_loads_an_export_straight_into_shardings(tmp_path):
    cfg = ModelConfig(num_layers=1, d_model=32, num_heads=2, d_ff=64, vocab_size=128, max_seq_len=32)
    mesh = sharding.make_mesh(1, 1, 1, devices=jax.devices()[:1])
    _, abstract, shardings = model_state.shardings(cfg, mesh)
    params = model_state.init_fn(cfg, shardings)(3)
    assert jax.tree.map(lambda x: (x.shape, x.dtype), params) == jax.tree.map(lambda x: (x.shape, x.dtype), abstract)
    ckpt_lib.save_params(tmp_path / "export", jax.device_get(params), cfg)
    loaded = model_state.load(tmp_path / "export", shardings)
    assert loaded.kind == "export" and loaded.model_cfg == cfg
    assert jax.tree.leaves(jax.tree.map(lambda x, s: x.sharding == s, loaded.params, shardings)) == [True] * len(
        jax.tree.leaves(params))
    for x, y in zip(jax.tree.leaves(loaded.params), jax.tree.leaves(params)):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
