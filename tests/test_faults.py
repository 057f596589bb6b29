"""The fault matrix: every fault a run, its readers and its data preparation handle, as a user
meets it (the commands as subprocesses on configs/tiny.py, or the functions they call), each
asserting the exit code, the one-line message and that no saved data changed.

- writer: one writer per run (lock), a resume is the same experiment (identity), output paths
  checked before any work, SIGINT/SIGTERM at any time, metrics after a crash, bad data mid-run;
- readers: a corrupt latest step is skipped with one warning, a corrupt step named explicitly or a
  run with no readable step is one line (exit 3), eval's mistakes fail before the model loads, a
  converted model carries its tokenizer, offline tokenizers fail at once;
- data: one bad-record threshold (sources.BadRecords: more than max_bad_fraction unreadable once
  MIN_RECORDS_FOR_FRACTION were read) for training, filter and tokenize, naming file:line.
"""

import gc
import gzip
import hashlib
import json
import logging
import re
import shutil
import subprocess
import time

import pytest

from alignjax import rundir
from alignjax.data import blocklist as bl_lib
from alignjax.data import mixture, pipeline, shards
from alignjax.data.sources import MIN_RECORDS_FOR_FRACTION, BadDataError, DocumentSource
from alignjax.data.tokenizer import Tokenizer
from conftest import SHARED_DATA, listen_alignjax, run_cli


# ========== the writer: alignjax-train / alignjax-study on a run directory
TINY = ["--config=configs/tiny.py", "--config.train.num_steps=20", "--config.checkpoint.every_steps=10",
        "--config.checkpoint.async_save=false"]


def _snapshot(workdir) -> dict:
    """Every byte a run has saved: checkpoint step dirs, config.json, runs.jsonl, metrics.jsonl."""
    files = [p for p in (workdir / "checkpoints").rglob("*") if p.is_file()]
    files += [workdir / n for n in ("config.json", "runs.jsonl", "metrics.jsonl", "data_audit.json")]
    return {str(p.relative_to(workdir)): p.read_bytes() for p in files if p.exists()}


def _steps(workdir) -> list[int]:
    return [json.loads(x)["step"] for x in (workdir / "metrics.jsonl").read_text().splitlines()]


def _last_line(r) -> str:
    return r.stderr.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def crashed(tmp_path_factory):
    """A run killed -9 at step 15, between saves: step 10 saved, metrics rows 1-15, the lock
    file of a process that is gone."""
    workdir = tmp_path_factory.mktemp("crashed") / "run"
    r = run_cli("train", *TINY, f"--workdir={workdir}", env={"ALIGNJAX_FAULT_KILL_AT_STEP": "15"})
    assert r.returncode == -9, r.stderr[-2000:]
    assert sorted(p.name for p in (workdir / "checkpoints").iterdir()) == ["10"]
    assert _steps(workdir) == list(range(1, 16)) and (workdir / rundir.LOCK).exists()
    return workdir


@pytest.fixture
def crashed_run(crashed, tmp_path):
    shutil.copytree(crashed, tmp_path / "run")
    return tmp_path / "run"


def test_a_second_writer_exits_3_naming_the_holder(crashed_run):
    before = _snapshot(crashed_run)
    with rundir.RunDir(crashed_run).lock() as held:  # a live writer (this process)
        r = run_cli("train", *TINY, f"--workdir={crashed_run}", "--config.optimizer.lr=0.01")
    assert r.returncode == 3, r.stderr[-2000:]
    line = _last_line(r)
    assert line.startswith(f"alignjax-train: error: {crashed_run} is in use by another writer (host {held.me['host']}, "
                           f"pid {held.me['pid']}, started {held.me['start']})")
    assert "Traceback" not in r.stderr and _snapshot(crashed_run) == before


def test_a_second_study_runner_exits_3(tmp_path):
    from test_study import write_study

    cfg, wd = write_study(tmp_path, run="unfiltered", steps=2, eval_every=0, loop_tasks="", tasks="", cap=""), \
        tmp_path / "study"
    wd.mkdir()
    with rundir.RunDir(wd).lock() as held:
        r = run_cli("study", f"--config={cfg}", f"--workdir={wd}")
    assert r.returncode == 3, r.stderr[-2000:]
    assert _last_line(r).startswith(f"alignjax-study: error: {wd} is in use by another writer (host "
                                    f"{held.me['host']}, pid {held.me['pid']}")
    assert not (wd / "train").exists()  # no unit started


def test_a_resume_of_another_experiment_exits_3_naming_the_fields(crashed_run):
    before = _snapshot(crashed_run)
    r = run_cli("train", *TINY, f"--workdir={crashed_run}", "--config.optimizer.lr=0.01", "--config.train.seed=3")
    assert r.returncode == 3, r.stderr[-2000:]
    line = _last_line(r)
    assert "optimizer.lr: 0.001 -> 0.01; train.seed: 0 -> 3" in line
    assert line.endswith("--config.train.allow_changes=optimizer.lr,train.seed to change it")
    assert _snapshot(crashed_run) == before


def test_a_resume_after_a_crash_logs_each_step_once_and_records_what_changed(crashed_run):
    """Rows 11-15 (logged after the step-10 save, before the crash) are cut, the old file kept;
    a run setting (model.remat) may change, an identity field only when allowed; config.json
    stays the first start's and runs.jsonl gets a row per start."""
    old_metrics, old_config = (crashed_run / "metrics.jsonl").read_bytes(), (crashed_run / "config.json").read_bytes()
    r = run_cli("train", *TINY, f"--workdir={crashed_run}", "--config.model.remat=full", "--config.optimizer.lr=0.002",
                "--config.train.allow_changes=optimizer.lr")
    assert r.returncode == 0, r.stderr[-2000:]
    assert "resumed from" in r.stderr and "step 10" in r.stderr  # kill -9 left no stale lock
    assert _steps(crashed_run) == list(range(1, 21))
    assert (crashed_run / "metrics.jsonl.1").read_bytes() == old_metrics
    assert (crashed_run / "config.json").read_bytes() == old_config
    rows = [json.loads(x) for x in (crashed_run / "runs.jsonl").read_text().splitlines()]
    assert len(rows) == 2 and rows[0]["changed"] == {} and rows[1]["allowed"] == ["optimizer.lr"]
    assert rows[1]["changed"] == {"model.remat": ["none", "full"], "optimizer.lr": [0.001, 0.002],
                                  "train.allow_changes": ["", "optimizer.lr"]}
    assert rows[1]["config"]["optimizer"]["lr"] == 0.002 and rows[1]["pid"] != rows[0]["pid"]


def test_unwritable_output_paths_exit_2_before_any_work(tmp_path):
    (tmp_path / "file").write_text("x")
    (tmp_path / "w2").mkdir()
    (tmp_path / "w2" / "checkpoints").write_text("x")
    cases = [(tmp_path / "file", "file is a file, not a directory"),
             (tmp_path / "w2", "w2/checkpoints is a file, not a directory")]
    ro = tmp_path / "ro"
    ro.mkdir()
    immutable = subprocess.run(["chattr", "+i", str(ro)], capture_output=True).returncode == 0
    if immutable:  # read-only even for root (chmod is not, and tests may run as root)
        cases.append((ro, "cannot write to"))
    try:
        for workdir, says in cases:
            r = run_cli("train", *TINY, f"--workdir={workdir}")
            assert r.returncode == 2, r.stderr[-2000:]
            assert _last_line(r).startswith(f"alignjax-train: error: --workdir={workdir}: ") and says in _last_line(r)
            assert not r.stdout and "stage pretrain" not in r.stderr  # before the model and the data
    finally:
        if immutable:
            subprocess.run(["chattr", "-i", str(ro)])
    assert not (tmp_path / "w2" / "config.json").exists() and not list(ro.iterdir())
    if not immutable:
        pytest.skip("chattr +i is not available here: the read-only case did not run")


def test_sigint_saves_then_exits_130_without_a_traceback(tmp_path):
    r = run_cli("train", "--config=configs/tiny.py", "--config.train.num_steps=50",
                "--config.checkpoint.every_steps=1000", f"--workdir={tmp_path}",
                env={"ALIGNJAX_FAULT_SIGINT_AFTER_STEP": "3"})
    assert r.returncode == 130, r.stderr[-2000:]
    assert _last_line(r) == "alignjax-train: interrupted" and "Traceback" not in r.stderr
    assert "SIGINT: saved step 3, exiting" in r.stderr
    assert rundir.RunDir(tmp_path).steps() == [3] and _steps(tmp_path) == [1, 2, 3]


def test_a_signal_during_start_up_stops_before_the_first_step_saving_nothing(crashed_run, tmp_path):
    before = _snapshot(crashed_run)
    r = run_cli("train", *TINY, f"--workdir={crashed_run}", env={"ALIGNJAX_FAULT_SIGNAL_AT_START": "TERM"})
    assert r.returncode == 0, r.stderr[-2000:]
    assert "SIGTERM: saved step 10 (stopped during start-up: nothing new to save), exiting" in r.stderr
    assert "resumed from" not in r.stderr and _snapshot(crashed_run) == before
    fresh = tmp_path / "fresh"
    r = run_cli("train", *TINY, f"--workdir={fresh}", env={"ALIGNJAX_FAULT_SIGNAL_AT_START": "INT"})
    assert r.returncode == 130, r.stderr[-2000:]
    assert _last_line(r) == "alignjax-train: interrupted" and "Traceback" not in r.stderr
    assert rundir.RunDir(fresh).steps() == [] and not (fresh / "config.json").exists()
    assert not (fresh / "metrics.jsonl").exists()


def test_bad_data_mid_run_saves_the_last_step_and_exits_2(tmp_path):
    """300 good documents, then bad lines: past the pre-flight sample, the reader stops the
    run mid-way; the last completed step is saved and the run resumes from it once
    data.max_bad_fraction (a run setting) lets the records be skipped."""
    corpus = tmp_path / "corpus.jsonl"
    good = [json.dumps({"text": f"document {i}: " + "the quick brown fox jumps over the lazy dog " * 2})
            for i in range(300)]
    corpus.write_text("\n".join(good + ["{not json"] * 200) + "\n")
    args = ["--config=configs/tiny.py", f"--config.data.corpus={corpus}", "--config.train.num_steps=1000",
            "--config.checkpoint.every_steps=1000", "--config.train.log_every=1", f"--workdir={tmp_path / 'run'}"]
    r = run_cli("train", *args)
    assert r.returncode == 2, r.stderr[-2000:]
    line = _last_line(r)
    assert line.startswith(f"alignjax-train: error: {corpus}:") and "max_bad_fraction" in line, line
    assert "Traceback" not in r.stderr
    saved = rundir.RunDir(tmp_path / "run").steps()
    assert len(saved) == 1 and 1 < saved[0] < 1000 and f"saved step {saved[0]}, " in line
    assert _steps(tmp_path / "run") == list(range(1, saved[0] + 1))
    r = run_cli("train", *args[:2], "--config.data.max_bad_fraction=0.9", f"--config.train.num_steps={saved[0] + 2}",
                "--config.train.allow_changes=train.num_steps", *args[3:])
    assert r.returncode == 0, r.stderr[-2000:]
    assert f"step {saved[0]}" in r.stderr and "resumed from" in r.stderr
    assert _steps(tmp_path / "run") == list(range(1, saved[0] + 3))


# ========== the readers: alignjax-eval, alignjax-convert, checkpoint.init_from, alignjax-plan
GPT_NEOX = SHARED_DATA / "tokenizers" / "gpt-neox-20b-tokenizer.json"
FAST = ["--tasks=builtin_scenarios", "--limit=1", "--formats=w1_ab"]
CORRUPTIONS = ("truncated", "no_metadata", "no_manifest", "garbage_manifest", "garbage_metadata",
               "garbage_checkpoint_metadata")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny run (steps 10 and 20) trained with its own BPE tokenizer.json (300 tokens < 512 rows)."""
    from alignjax.data.tokenizer import train_bpe

    root = tmp_path_factory.mktemp("readers")
    train_bpe(iter([f"the quick brown fox jumps over the lazy dog {i}" for i in range(200)]), 300, root / "tok.json")
    r = run_cli("train", "--config=configs/tiny.py", f"--workdir={root / 'run'}", "--config.train.num_steps=20",
                f"--config.data.tokenizer={root / 'tok.json'}")
    assert r.returncode == 0, r.stderr[-2000:]
    return root / "run"


@pytest.fixture
def run(trained, tmp_path):
    shutil.copytree(trained, tmp_path / "run")
    return tmp_path / "run"


def corrupt(run, step: int, how: str) -> None:
    s = run / "checkpoints" / str(step)
    if how == "truncated":  # every array file cut short (a disk that filled up mid-copy)
        for f in (s / "state").rglob("*"):
            if f.is_file() and f.stat().st_size > 7 and "metadata" not in f.name.lower() and f.suffix != ".json":
                f.write_bytes(f.read_bytes()[:7])
    elif how == "no_metadata":
        (s / "state" / "_METADATA").unlink()
    elif how == "no_manifest":
        (s / "state" / "manifest.ocdbt").unlink()
    elif how == "garbage_manifest":
        (s / "state" / "manifest.ocdbt").write_bytes(b"\x00garbage" * 8)
    elif how == "garbage_metadata":
        (s / "state" / "_METADATA").write_text('{"tree_metadata": {')
    elif how == "garbage_checkpoint_metadata":
        (s / "_CHECKPOINT_METADATA").write_text("not json")


def snapshot(run) -> dict:
    return {str(f.relative_to(run)): hashlib.sha256(f.read_bytes()).hexdigest()
            for f in sorted((run / "checkpoints").rglob("*")) if f.is_file()}


def lines(text: str) -> list[str]:
    return text.strip().splitlines()


def no_spam(text: str) -> bool:
    return "Traceback" not in text and "Event loop is closed" not in text and "Exception ignored" not in text


# ----------------------------------------------------------------------------- readers fall back


@pytest.mark.parametrize("how", CORRUPTIONS)
def test_a_corrupt_latest_step_is_skipped_with_one_warning(run, how, caplog, capfd):
    from alignjax import checkpoint as ckpt_lib
    from alignjax import model_state

    corrupt(run, 20, how)
    before = snapshot(run)
    with caplog.at_level(logging.WARNING, logger="alignjax"):
        loaded = model_state.load(run)
        assert ckpt_lib.resolve(run)[0] == loaded.model_cfg  # resolve again: the skip is not logged twice
        model_state.load_params(run)
    gc.collect()
    time.sleep(0.5)  # TensorStore reads a failed restore left in flight report late
    assert loaded.tree_dir.parent.name == "10"
    warnings = [r.getMessage() for r in caplog.records if "checkpoint step" in r.getMessage()]
    assert len(warnings) == 1 and warnings[0].startswith(f"skipping unreadable checkpoint step 20 of {run} (")
    assert warnings[0].endswith("reading step 10")
    assert no_spam(capfd.readouterr().err)
    assert snapshot(run) == before


def test_eval_scores_the_latest_readable_step(run, tmp_path):
    corrupt(run, 20, "truncated")
    before = snapshot(run)
    r = run_cli("eval", f"--checkpoint={run}", *FAST, f"--output={tmp_path / 'out'}")
    assert r.returncode == 0, r.stderr[-2000:]
    warnings = [x for x in lines(r.stderr) if "checkpoint step" in x]
    assert len(warnings) == 1 and warnings[0].startswith("WARNING alignjax: skipping unreadable checkpoint step 20")
    assert no_spam(r.stderr) and "builtin_scenarios: misalignment_rate" in r.stdout
    assert list((tmp_path / "out").glob("results_*.json")) and snapshot(run) == before


def test_convert_and_init_from_read_the_latest_readable_step(run, tmp_path):
    from alignjax import convert

    corrupt(run, 20, "garbage_manifest")
    before = snapshot(run)
    r = run_cli("convert", "--from=alignjax", f"--input={run}", f"--output={tmp_path / 'hf'}")
    assert r.returncode == 0, r.stderr[-2000:]
    assert len([x for x in lines(r.stderr) if "skipping unreadable checkpoint step 20" in x]) == 1 and no_spam(r.stderr)
    step10 = run / "checkpoints" / "10"
    assert convert.main(["--from=alignjax", f"--input={step10}", f"--output={tmp_path / 'hf10'}"]) == 0
    weights = lambda d: (tmp_path / d / "model.safetensors").read_bytes()  # noqa: E731
    assert weights("hf") == weights("hf10")  # step 10's params, bit for bit

    r = run_cli("train", "--config=configs/tiny.py", f"--workdir={tmp_path / 'next'}", "--config.train.num_steps=2",
                f"--config.checkpoint.init_from={run}")
    assert r.returncode == 0, r.stderr[-2000:]
    assert "skipping unreadable checkpoint step 20" in r.stderr and no_spam(r.stderr)
    assert snapshot(run) == before


def test_a_named_corrupt_step_is_one_line_exit_3(run, tmp_path):
    corrupt(run, 20, "truncated")
    before = snapshot(run)
    step = run / "checkpoints" / "20"
    r = run_cli("eval", f"--checkpoint={step}", *FAST, f"--output={tmp_path / 'out'}")
    assert r.returncode == 3
    assert lines(r.stderr) == [lines(r.stderr)[0]] and lines(r.stderr)[0].startswith(
        f"alignjax-eval: error: checkpoint step 20 of {run} is unreadable: cannot read params: ")
    assert not (tmp_path / "out").exists()
    r = run_cli("convert", "--from=alignjax", f"--input={step / 'state'}", f"--output={tmp_path / 'hf'}")
    assert r.returncode == 3 and len(lines(r.stderr)) == 1
    assert lines(r.stderr)[0].startswith(f"alignjax-convert: error: checkpoint step 20 of {run} is unreadable")
    assert not (tmp_path / "hf").exists() and snapshot(run) == before


def test_no_readable_step_is_one_line_exit_3(run, tmp_path):
    corrupt(run, 20, "truncated")
    corrupt(run, 10, "no_manifest")
    before = snapshot(run)
    want = f"no readable checkpoint step in {run / 'checkpoints'} (step 20: cannot read params: "
    r = run_cli("eval", f"--checkpoint={run}", *FAST, f"--output={tmp_path / 'out'}")
    assert r.returncode == 3 and len(lines(r.stderr)) == 1
    assert lines(r.stderr)[0].startswith(f"alignjax-eval: error: {want}")
    assert "step 10: state/manifest.ocdbt is missing" in r.stderr and not (tmp_path / "out").exists()
    r = run_cli("convert", "--from=alignjax", f"--input={run}", f"--output={tmp_path / 'hf'}")
    assert r.returncode == 3 and len(lines(r.stderr)) == 1 and want in r.stderr and not (tmp_path / "hf").exists()
    r = run_cli("train", "--config=configs/tiny.py", f"--workdir={tmp_path / 'next'}", "--config.train.num_steps=2",
                f"--config.checkpoint.init_from={run}")
    assert r.returncode == 3 and lines(r.stderr)[-1].startswith(f"alignjax-train: error: {want}") and no_spam(r.stderr)
    assert snapshot(run) == before


# ----------------------------------------------------------------------------- eval pre-flight


@pytest.fixture
def no_model_load(monkeypatch):
    from alignjax.eval import scoring

    def fail(*args, **kwargs):
        raise AssertionError("the model was loaded before the pre-flight checks")

    monkeypatch.setattr(scoring.Scorer, "from_path", fail)


def _eval_error(argv, capsys) -> str:
    from alignjax.eval import run as eval_run

    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        eval_run.main(argv)
    err = lines(capsys.readouterr().err)
    assert e.value.code == 2 and len(err) == 1 and err[0].startswith("alignjax-eval: error: "), err
    return err[0].removeprefix("alignjax-eval: error: ")


@pytest.mark.parametrize("case, message", [
    ("output_is_a_file", "--output={f}: {f} is a file, not a directory"),
    ("output_under_a_file", "--output={f}/x: {f} is a file, not a directory"),
    ("persona", "--persona: unknown persona 'evill' (valid: none, ai, helpful, hhh, evil)"),
    ("split", "--split: builtin_scenarios: unknown split 'nope' (valid: eval, seed, heldout)"),
    ("tokenizer", "tokenizer {tok} has 50,277 tokens but the model {run} has vocab_size 512: not the tokenizer it "
                  "was trained with (pass --tokenizer=...)"),
])
def test_eval_mistakes_fail_before_the_model_loads(trained, tmp_path, capsys, no_model_load, case, message):
    if case == "tokenizer" and not GPT_NEOX.exists():
        pytest.skip(f"{GPT_NEOX} not present")
    f = tmp_path / "a_file"
    f.write_text("mine")
    argv = [f"--checkpoint={trained}", *FAST, f"--output={tmp_path / 'out'}"] + {
        "output_is_a_file": [f"--output={f}"], "output_under_a_file": [f"--output={f}/x"],
        "persona": ["--persona=ai,evill"], "split": ["--split=nope"], "tokenizer": [f"--tokenizer={GPT_NEOX}"]}[case]
    assert _eval_error(argv, capsys) == message.format(f=f, tok=GPT_NEOX, run=trained)
    assert f.read_text() == "mine" and not (tmp_path / "out").exists() and not (trained / "eval").exists()


@pytest.fixture
def hf_without_tokenizer(trained, tmp_path):
    from alignjax import convert

    assert convert.main(["--from=alignjax", f"--input={trained}", f"--output={tmp_path / 'hf'}"]) == 0
    (tmp_path / "hf" / "tokenizer.json").unlink()
    return tmp_path / "hf"


def test_offline_without_a_local_tokenizer_fails_at_once(hf_without_tokenizer, tmp_path, capsys, monkeypatch,
                                                         no_model_load):
    from huggingface_hub import constants

    hf = hf_without_tokenizer
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    t0 = time.perf_counter()
    assert _eval_error([f"--checkpoint={hf}", *FAST], capsys) == (
        "EleutherAI/gpt-neox-20b: tokenizer.json is not in the local Hugging Face cache and HF_HUB_OFFLINE is set; "
        f"{hf} has no tokenizer.json beside it: pass --tokenizer=<path to tokenizer.json>")
    assert time.perf_counter() - t0 < 10 and not (hf / "eval").exists()
    if not GPT_NEOX.exists():
        return
    # the tokenizer in the local HF cache: read from there, offline (then refused: 50,277 tokens > 512 rows)
    snap = tmp_path / "hub" / "models--EleutherAI--gpt-neox-20b"
    (snap / "snapshots" / "abc123").mkdir(parents=True)
    (snap / "refs").mkdir()
    (snap / "refs" / "main").write_text("abc123")
    shutil.copy(GPT_NEOX, snap / "snapshots" / "abc123" / "tokenizer.json")
    assert _eval_error([f"--checkpoint={hf}", *FAST], capsys).startswith(
        "tokenizer EleutherAI/gpt-neox-20b has 50,277 tokens but the model")


def test_an_unreachable_hub_is_one_line_not_retries(hf_without_tokenizer, tmp_path):
    env = {"HF_HOME": str(tmp_path / "hf_home"), "HF_ENDPOINT": "http://127.0.0.1:9", "HF_HUB_OFFLINE": "0"}
    t0 = time.perf_counter()
    r = run_cli("eval", f"--checkpoint={hf_without_tokenizer}", *FAST, env=env)
    assert r.returncode == 2 and time.perf_counter() - t0 < 20  # huggingface_hub's retries alone take ~25 s
    assert lines(r.stderr) == ["alignjax-eval: error: EleutherAI/gpt-neox-20b: tokenizer.json is not in the local "
                               "Hugging Face cache and 127.0.0.1 is unreachable (Connection refused); "
                               f"{hf_without_tokenizer} has no tokenizer.json beside it: pass "
                               "--tokenizer=<path to tokenizer.json>"]


def test_plan_output_under_a_file_fails_before_the_compile(tmp_path, capsys, monkeypatch):
    from alignjax import plan

    monkeypatch.setattr(plan, "build_plan", lambda *a, **k: pytest.fail("compiled before checking --output"))
    (tmp_path / "f").write_text("mine")
    with pytest.raises(SystemExit) as e:
        plan.main(["--config=configs/tiny.py", "--topology=v5e-8", f"--output={tmp_path / 'f'}/x"])
    assert e.value.code == 2
    assert lines(capsys.readouterr().err) == [f"alignjax-plan: error: --output={tmp_path / 'f'}/x: {tmp_path / 'f'} "
                                              "is a file, not a directory"]


# ----------------------------------------------------------------------------- tokenizers travel


def test_converted_models_carry_their_tokenizer_and_eval_finds_it(run, tmp_path, capsys):
    from alignjax import convert, posttrain
    from alignjax.data import chat
    from alignjax.data.tokenizer import Tokenizer
    from alignjax.eval.run import chat_template, default_tokenizer
    from alignjax.rundir import RunDir

    spec = json.loads((run / "config.json").read_text())["data"]["tokenizer"]
    capsys.readouterr()
    assert convert.main(["--from=alignjax", f"--input={run}", f"--output={tmp_path / 'hf'}"]) == 0
    assert lines(capsys.readouterr().out)[-1] == f"alignjax-convert: tokenizer: tokenizer.json from {spec}"
    assert json.loads((tmp_path / "hf" / "tokenizer.json").read_text()) == json.loads(open(spec).read())
    r = run_cli("eval", f"--checkpoint={tmp_path / 'hf'}", *FAST, env={"HF_HUB_OFFLINE": "1"})
    assert r.returncode == 0, r.stderr[-2000:]
    results = json.loads(next((tmp_path / "hf" / "eval").glob("results_*.json")).read_text())
    assert results["config"]["tokenizer"] == str(tmp_path / "hf" / "tokenizer.json")

    # a post-trained run: its chat tokenizer and template (as train writes them) go along
    tok = chat.chat_tokenizer(spec)
    chat.save_chat_tokenizer(tok, run)
    posttrain.ChatInfo(spec, "alignjax", tok.added_ids, 300).save(RunDir(run).chat_info)
    assert convert.main(["--from=alignjax", f"--input={run}", f"--output={tmp_path / 'chat'}"]) == 0
    out = tmp_path / "chat"
    assert {p.name for p in out.iterdir()} == {"config.json", "model.safetensors", "tokenizer.json",
                                               "tokenizer_config.json", "chat_tokenizer.json"}
    assert json.loads((out / "tokenizer_config.json").read_text())["chat_template"] == chat.ALIGNJAX_JINJA
    assert default_tokenizer(str(out)) == str(out) and chat_template("auto", str(out)) == "alignjax"
    again = Tokenizer.load(str(out))
    assert again.vocab_size == tok.vocab_size == 303
    assert again.encode("<|assistant|>").tolist() == [tok.added_ids["<|assistant|>"], again.eos_id]

    # alignjax's byte tokenizer has no HF file: the log line says so, and nothing is written
    cfg = json.loads((run / "config.json").read_text())
    cfg["data"]["tokenizer"] = "bytes"
    (run / "config.json").write_text(json.dumps(cfg))
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_tokenizer.json"):
        (run / name).unlink()
    capsys.readouterr()
    assert convert.main(["--from=alignjax", f"--input={run}", f"--output={tmp_path / 'bytes'}"]) == 0
    assert lines(capsys.readouterr().out)[-1] == (
        "alignjax-convert: no tokenizer.json written: tokenizer bytes is alignjax's UTF-8 byte tokenizer, which has "
        "no HF tokenizers file (alignjax-eval reads it by name: --tokenizer=bytes)")
    assert not (tmp_path / "bytes" / "tokenizer.json").exists()


# ========== bad data: training, alignjax-data filter / tokenize
GOOD = 300
# Cycled after the good lines: the kinds of bad record a corpus has.
BAD = [b"{not json", json.dumps({"body": "no text field"}).encode(), b'{"text": "caf\xe9 au lait"}']


def _corpus(path, good=GOOD, bad=10, bad_at=()):
    """``good`` documents then ``bad`` bad lines; or bad lines at the 1-based line numbers ``bad_at``."""
    lines = [json.dumps({"text": f"<doc{i:04d}> the shepherd counted his sheep by the river"}).encode()
             for i in range(good)]
    for k, n in enumerate(bad_at):
        lines[n - 1] = BAD[k % len(BAD)]
    lines += [BAD[k % len(BAD)] for k in range(bad if not bad_at else 0)]
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


@pytest.fixture
def info_log(caplog):
    yield from listen_alignjax(caplog, logging.INFO)


# Lines 301.. are bad; at line 304 4 of 304 records (1.3%) are over the default 1%.
def _expected(path, name):
    return rf"^{re.escape(str(path))}:304: 4 of 304 records unreadable \(1\.3%\) > {re.escape(name)}=0\.01 " \
           r"\(last: malformed JSON"


def test_bad_records_after_the_sample_raise_from_next_through_the_prefetch_thread(tiny_config, tmp_path):
    path = _corpus(tmp_path / "corpus.jsonl")
    tiny_config.data.corpus = str(path)
    data = pipeline.make_train_iterator(tiny_config)  # its batches come from Grain's prefetch thread
    batches = 0
    with pytest.raises(BadDataError, match=_expected(path, "data.max_bad_fraction")) as e:
        while True:
            next(data.iterator)
            batches += 1
    assert batches > 10 and "\n" not in str(e.value)
    # What the trainer saves before it exits: the state after the last good batch.
    state = data.iterator.get_state()
    json.dumps(state)
    again = pipeline.make_train_iterator(tiny_config)
    again.iterator.set_state(state)
    with pytest.raises(BadDataError, match=_expected(path, "data.max_bad_fraction")):  # the data is still bad
        while True:
            next(again.iterator)
    _corpus(path, good=GOOD + 10, bad=0)  # fixed in place: the resumed run goes on past the bad lines
    fixed = pipeline.make_train_iterator(tiny_config)
    fixed.iterator.set_state(state)
    for _ in range(80):  # ~400 documents: past the lines that were bad and into the next epoch
        next(fixed.iterator)


def test_a_file_that_cannot_be_read_on_raises_bad_data_error(tmp_path):
    path = tmp_path / "corpus.jsonl.gz"
    blob = gzip.compress(b"".join(json.dumps({"text": f"document {i} " * 20}).encode() + b"\n" for i in range(20000)))
    path.write_bytes(blob[: len(blob) // 2])  # truncated: a copy that did not finish
    it = iter(DocumentSource(str(path), repeat=True))
    with pytest.raises(BadDataError, match=rf"^{re.escape(str(path))}:\d+: unreadable \(EOFError: "):
        while True:
            next(it)
    assert it.records > 100


def test_bad_records_before_the_minimum_are_judged_once_it_is_reached(tmp_path):
    path = _corpus(tmp_path / "c.jsonl", good=1000, bad_at=(10, 20, 30))
    it = iter(DocumentSource(str(path)))
    with pytest.raises(BadDataError, match=rf"^{re.escape(str(path))}:30: 3 of 100 records unreadable \(3\.0%\)"):
        list(it)
    assert it.records == MIN_RECORDS_FOR_FRACTION


def test_bad_data_within_the_sample_fails_pre_flight(tiny_config, tmp_path):
    path = _corpus(tmp_path / "corpus.jsonl", good=1000, bad_at=(10, 20, 30))
    tiny_config.data.corpus = str(path)
    comp = mixture.plan(tiny_config)[0].components[0]
    with pytest.raises(BadDataError, match=rf"^{re.escape(str(path))}:30: 3 of 100 records unreadable"):
        pipeline.check_component(comp, "pretrain", tiny_config.data, Tokenizer.load("bytes"))
    # The same file with one bad line in the first 100 passes (1 of 100 is not over 1%).
    _corpus(path, good=1000, bad_at=(10,))
    assert pipeline.check_component(comp, "pretrain", tiny_config.data, Tokenizer.load("bytes"))


def test_train_exits_2_with_one_line_before_the_model_is_built(tmp_path):
    path = _corpus(tmp_path / "corpus.jsonl", good=1000, bad_at=(10, 20, 30))
    r = run_cli("train", "--config=configs/tiny.py", f"--workdir={tmp_path / 'run'}", f"--config.data.corpus={path}",
                timeout=300)
    assert r.returncode == 2, r.stderr[-2000:]
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("alignjax-train: error: ") and f"{path}:30: 3 of 100 records unreadable (3.0%) > " \
        "data.max_bad_fraction=0.01" in last, last
    assert "Traceback" not in r.stderr
    ckpts = tmp_path / "run" / "checkpoints"
    assert not (ckpts.exists() and any(ckpts.iterdir())) and not (tmp_path / "run" / "metrics.jsonl").exists()


def _error_lines(stderr: str) -> str:
    """stderr without the per-record warnings (shown when alignjax's log goes to stderr)."""
    return "".join(ln for ln in stderr.splitlines(keepends=True) if not ln.startswith("WARNING alignjax: "))


def test_filter_stops_over_the_threshold_and_counts_skipped_records_under_it(tmp_path, capsys, info_log):
    path = _corpus(tmp_path / "a.jsonl")
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as e:
        bl_lib.cli([f"--input={path}", f"--output={out}"])
    err = _error_lines(capsys.readouterr().err)
    assert e.value.code == 2 and err.count("\n") == 1, err
    assert re.match(_expected(path, "--max_bad_fraction").replace("^", "^alignjax-data filter: error: "), err), err
    assert not out.exists()  # no kept/flagged/report left behind
    assert bl_lib.cli([f"--input={path}", f"--output={out}", "--max_bad_fraction=0.05"]) == 0
    rep = json.loads((out / "report.json").read_text())
    assert (rep["documents"], rep["malformed"], rep["malformed_by_file"]) == (GOOD, 10, {str(path): 10})
    assert len((out / "kept.jsonl").read_text().splitlines()) + rep["flagged"] == GOOD
    assert any(f"{GOOD} documents:" in m and "10 malformed skipped" in m for m in info_log.messages), info_log.messages


def test_tokenize_stops_over_the_threshold_and_counts_skipped_records_under_it(tmp_path, capsys, info_log):
    path = _corpus(tmp_path / "a.jsonl")
    out = tmp_path / "shards"
    with pytest.raises(SystemExit) as e:
        shards.cli([f"--input={path}", "--tokenizer=bytes", f"--output={out}"])
    err = _error_lines(capsys.readouterr().err)
    assert e.value.code == 2 and err.count("\n") == 1, err
    assert re.match(_expected(path, "--max_bad_fraction").replace("^", "^alignjax-data tokenize: error: "), err), err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.jsonl"]  # no output, no temporary directory
    assert shards.cli([f"--input={path}", "--tokenizer=bytes", f"--output={out}", "--max_bad_fraction=0.05"]) == 0
    m = json.loads((out / "manifest.json").read_text())
    assert (m["documents"], m["bad_records"]) == (GOOD, 10)
    assert any(f"{GOOD} documents" in m and "10 bad records skipped" in m for m in info_log.messages), info_log.messages
