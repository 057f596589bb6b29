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


# ----------------------------------------------------------------------------- one command-line convention


def test_name_value_and_name_space_value_are_the_same():
    a = C.parse_args([f"--config={REPO}/configs/tiny.py", "--config.train.seed=3", "--workdir=/tmp/w"], {"stage": None})
    b = C.parse_args(["--config", f"{REPO}/configs/tiny.py", "--config.train.seed", "3", "--workdir", "/tmp/w"],
                     {"stage": None})
    assert a[0].to_dict() == b[0].to_dict() and a[1] == b[1] and b[0].train.seed == 3 and b[1]["workdir"] == "/tmp/w"
    with pytest.raises(C.ConfigError, match=r"^--workdir needs a value \(--workdir=<value>\)$"):
        C.parse_args(["--workdir"])
    with pytest.raises(C.ConfigError, match="--stage needs a value"):
        C.parse_args(["--stage", "--workdir=/tmp/w"], {"stage": None})


@pytest.mark.parametrize("argv, value", [([], False), (["--dry-run"], True), (["--dry_run"], True),
                                         (["--dry-run=false"], False), (["--dry_run=true"], True)])
def test_a_bare_boolean_flag_is_true(argv, value):
    _, flags = C.parse_args(argv, bools=("dry_run",))
    assert flags["dry_run"] is value


def test_bad_boolean_and_stray_argument_are_one_line():
    with pytest.raises(C.ConfigError, match=r"^--dry_run=maybe: expected a bool \(true/false\)$"):
        C.parse_args(["--dry-run=maybe"], bools=("dry_run",))
    with pytest.raises(C.ConfigError, match=r"^unexpected argument 'x' \(flags are --name=value\)$"):
        C.parse_args(["x"])


def test_help_prints_the_usage_and_exits_0(capsys):
    with pytest.raises(SystemExit) as e:
        C.parse_args(["--workdir=/tmp/w", "-h"], {"topology": None}, bools=("dry_run",), prog="alignjax-x")
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: alignjax-x --config=<path.py>[:<arg>]") and "[--topology=...] [--dry_run]" in out


def _entry_points():
    import configparser

    cp = configparser.ConfigParser()
    cp.read(REPO / "setup.cfg")
    rows = [line.split("=") for line in cp["options.entry_points"]["console_scripts"].strip().splitlines()]
    return [(n.strip(), t.strip()) for n, t in rows] + [("alignjax-lora-merge", "alignjax.model_state:merge_main")]


@pytest.mark.parametrize("name, target", _entry_points(), ids=[n for n, _ in _entry_points()])
@pytest.mark.parametrize("form", ["--bogus_flag=1", "--bogus_flag 1"])
def test_every_command_names_an_unknown_flag_in_one_line(name, target, form, capsys):
    import importlib

    module, fn = target.split(":")
    main = getattr(importlib.import_module(module), fn)
    argv = (["tokenize"] if name == "alignjax-data" else []) + form.split()
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"{name}") and ": error: unknown flag --bogus_flag (valid: " in err[0], err


def _study_error(capsys, tmp_path, *overrides):
    from alignjax import study

    with pytest.raises(SystemExit) as e:
        study.main(["--config=configs/study/demo.py", "--workdir", str(tmp_path), *overrides, "--dry-run"])
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 2 and len(err) == 1, err
    return err[0]


@pytest.mark.parametrize("override, message", [
    ("--config.eval.batch_size=0", "eval.batch_size=0: must be a positive integer"),
    ("--config.eval.limit=-1", "eval.limit=-1: must be a non-negative integer"),
    ("--config.steps.cpt=-5", "steps.cpt=-5: must be a non-negative integer"),
    ("--config.eval.personas=ai,robot", "eval.personas: unknown persona 'robot' (valid: "),
    ("--config.post.sft.model_from_base=maybe", "--config.post.sft.model_from_base=maybe: expected a bool"),
])
def test_a_bad_study_field_is_one_line_exit_2(override, message, capsys, tmp_path):
    assert _study_error(capsys, tmp_path, override).startswith(f"alignjax-study: error: {message}")


@pytest.mark.parametrize("override, message", [
    ("--config.overrides.train.batch_size=0",
     "unit train/s0/pretrain_U: train.batch_size=0: must be a positive integer"),
    ("--config.overrides.stages.cpt.seq_len=2048",
     "unit train/s0/cpt_U-U-M: stages.cpt.seq_len=2048 exceeds model.max_seq_len=1024"),
    ("--config.overrides.optimizer.lr=0", "unit train/s0/pretrain_U: optimizer.lr=0.0: must be > 0"),
])
def test_a_study_unit_failing_schema_resolve_is_one_line_exit_2(override, message, capsys, tmp_path):
    assert _study_error(capsys, tmp_path, override).startswith(f"alignjax-study: error: {message}")
