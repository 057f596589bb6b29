import json

import pytest

from alignjax import config as C
from alignjax import rundir
from conftest import REPO, run_cli


def test_overrides_reach_every_named_field():
    cfg, flags = C.parse_args([
        f"--config={REPO}/configs/pythia.py:70m", "--config.optimizer.lr=3e-4", "--config.train.num_steps=100",
        "--config.checkpoint.every_steps=10", "--config.model.dtype=bfloat16", "--config.mesh.fsdp=2",
        "--config.optimizer.decay_steps=50", "--config.checkpoint.init_from=/tmp/x", "--workdir=/tmp/w",
    ])
    assert cfg.model.d_model == 512 and cfg.optimizer.lr == 3e-4 and cfg.train.num_steps == 100
    assert cfg.checkpoint.every_steps == 10 and cfg.model.dtype == "bfloat16" and cfg.mesh.fsdp == 2
    assert cfg.optimizer.decay_steps == 50 and cfg.checkpoint.init_from == "/tmp/x"  # placeholders
    assert flags["workdir"] == "/tmp/w"


def test_int_accepted_for_float_and_bools_parse():
    cfg, _ = C.parse_args(["--config.optimizer.lr=1", "--config.train.progress_bar=false"])
    assert cfg.optimizer.lr == 1.0 and isinstance(cfg.optimizer.lr, float)
    assert cfg.train.progress_bar is False


@pytest.mark.parametrize("arg, needle", [
    ("--config.optimizer.learning_rate=1", "optimizer.learning_rate"),
    ("--config.nope.x=1", "'nope'"),
    ("--config.train.num_steps=ten", "train.num_steps"),
    ("--config.train.num_steps=1.5", "expected int"),
    ("--config.train=3", "is a group"),
    ("--config=configs/missing.py", "does not exist"),
    ("--config=configs/pythia.py:7b", "valid: 14m"),
    ("--steps=3", "unknown flag --steps"),
])
def test_bad_config_input_is_a_one_line_error(arg, needle):
    with pytest.raises(C.ConfigError, match=needle):
        C.parse_args([arg])


def test_cli_exits_2_with_one_line_naming_the_field(tmp_path):
    r = run_cli("train", "--config=configs/tiny.py", f"--workdir={tmp_path}", "--config.train.nums_steps=3")
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "train.nums_steps" in lines[0] and lines[0].startswith("alignjax-train: error:")
    assert not (tmp_path / "config.json").exists()


def test_resolved_config_is_saved(tmp_path):
    cfg, _ = C.parse_args(["--config.optimizer.lr=0.5"])
    rundir.RunDir(tmp_path).record_start(cfg.to_dict())
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["optimizer"]["lr"] == 0.5 and saved["optimizer"]["decay_steps"] is None
