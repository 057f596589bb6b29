"""alignjax-study: a micro study end to end (units, skip on rerun, resume after a kill, report,
figures), the paper design's dry run, config errors, the CI helpers, the built-in Wikipedia corpus."""

import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from conftest import REPO, run_cli

MICRO = '''
from ml_collections import ConfigDict

def get_config(arg=None):
    s = ConfigDict()
    s.name = "micro"
    s.train_config = "configs/tiny.py"
    s.conditions = ConfigDict(dict(unfiltered=dict(condition="unfiltered", insertion="e2e"),
                                   alignment_upsampled=dict(condition="alignment_upsampled", insertion="e2e")))
    s.run = "{run}"
    s.seeds = "0"
    s.steps = ConfigDict(dict(pretrain={steps}, midtrain=0, cpt=0))
    s.overrides = ConfigDict(dict(
        train=dict(batch_size=8, seq_len=32, log_every=2, eval_every={eval_every}, progress_bar=False),
        data=dict(corpus="builtin:wikipedia", synthetic_fraction=0.2),
        eval=dict(tasks="{loop_tasks}", split="heldout", limit=2),
        checkpoint=dict(every_steps=2, max_to_keep=3, async_save=False)))
    s.post_train = "{post}"
    s.post = ConfigDict(dict(sft=dict(config="configs/sft.py", overrides=dict(train=dict(num_steps={sft_steps})))))
    s.eval = ConfigDict(dict(tasks="{tasks}", split="heldout", personas="ai", limit=2, batch_size=8, formats="{formats}",
                             base_args="", post_args="{post_args}", capability_tasks="{cap}", capability_split="validation",
                             capability_formats="rc_0shot", capability_limit=4))
    return s
'''


def write_study(tmp_path, *, run="unfiltered,alignment_upsampled", steps=4, eval_every=2, loop_tasks="builtin_scenarios",
                tasks="builtin_scenarios", cap="arc_easy", name="micro", post="", sft_steps=4,
                post_args="--mode=generate --chat_template=alignjax --max_new_tokens=4", formats="letter"):
    path = tmp_path / f"{name}.py"
    path.write_text(MICRO.format(run=run, steps=steps, eval_every=eval_every, loop_tasks=loop_tasks, tasks=tasks,
                                 cap=cap, post=post, sft_steps=sft_steps, post_args=post_args, formats=formats))
    return str(path)


def study(*args, env=None):
    return run_cli("study", *args, env=env, timeout=900)


def test_micro_study_runs_reports_and_skips_finished_units(tmp_path):
    cfg, wd = write_study(tmp_path, formats="letter,text"), tmp_path / "study"
    r = study(f"--config={cfg}", f"--workdir={wd}")
    assert r.returncode == 0, r.stderr[-3000:]
    assert "6 units ran, 0 already done" in r.stdout
    rep = json.loads((wd / "report.json").read_text())
    assert rep["schema"] == "alignjax.study/1"
    for key in ("conditions", "units", "misalignment", "capability", "curves", "data_audit", "figures", "ci_method"):
        assert key in rep
    assert [c["name"] for c in rep["conditions"]] == ["unfiltered", "alignment_upsampled"]
    assert {u["status"] for u in rep["units"]} == {"done"} and len(rep["units"]) == 6
    mis = {m["condition"]: m for m in rep["misalignment"] if m["format_family"] == "letter"}
    assert set(mis) == {"unfiltered", "alignment_upsampled"}
    for m in mis.values():
        assert m["task"] == "builtin_scenarios" and m["persona"] == "ai" and m["stage"] == "base"
        assert 0 <= m["ci_low"] <= m["rate"] <= m["ci_high"] <= 1 and m["n_questions"] == 2
    # eval.formats=letter,text: the text family's three scores in rows of their own, split and family on every row
    assert all(m["split"] == "heldout" for m in rep["misalignment"])
    text = {(m["condition"], m["metric"]) for m in rep["misalignment"] if m["format_family"] == "text"}
    assert text == {(c, f"text_misalignment_rate_{s}") for c in mis for s in ("acc", "acc_norm", "calibrated")}
    assert len(rep["misalignment"]) == 2 * 4 and {m["metric"] for m in mis.values()} == {"misalignment_rate"}
    cap = rep["capability"]
    assert {c["condition"] for c in cap} == {"unfiltered", "alignment_upsampled"}
    assert all(c["task"] == "arc_easy" and c["n_samples"] == 4 and c["ci_low"] <= c["acc"] <= c["ci_high"] for c in cap)
    curves = {c["condition"]: c for c in rep["curves"]}
    assert curves["unfiltered"]["steps"] == [2, 4] and len(curves["unfiltered"]["values"]) == 2
    synth = [a for a in rep["data_audit"] if a["component"] == "synthetic_aligned"]
    assert len(synth) == 1 and synth[0]["target_fraction"] == pytest.approx(0.2) and synth[0]["tokens"] > 0
    assert 0 < synth[0]["realized_fraction"] < 1  # a few whole documents: far from the target this early
    corpus = [a for a in rep["data_audit"] if a["component"] == "corpus"]
    assert {a["source"] for a in corpus} == {"builtin:wikipedia"} and len(corpus) == 2
    for name in ("fig2_misalignment.png", "fig4_misalignment_over_training.png", "fig5_breakdown.png"):
        assert (wd / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert name in rep["figures"].values()
    md = (wd / "report.md").read_text()
    assert "## Misalignment rate by condition" in md and "## Capability" in md and "## Data audit" in md
    assert "### Letter formats (format_family letter)" in md and "### Text formats (format_family text)" in md
    assert "--formats=letter,text" in (wd / "eval/unfiltered-s0/base-ai/unit.log").read_text().splitlines()[0]
    assert "python -m alignjax.train --config=configs/tiny.py" in (wd / "study.log").read_text()
    # each unit logs its command first
    assert (wd / "train/s0/pretrain_U/unit.log").read_text().startswith("$ python -m alignjax.train")

    markers = {p: p.stat().st_mtime_ns for p in wd.glob("**/unit.json")}
    redo = wd / "eval/unfiltered-s0/base-ai/unit.json"
    redo.unlink()
    r = study(f"--config={cfg}", f"--workdir={wd}")
    assert r.returncode == 0, r.stderr[-3000:]
    assert "1 units ran, 5 already done" in r.stdout
    for p, t in markers.items():
        if p != redo:
            assert p.stat().st_mtime_ns == t, p


def test_post_training_units_and_side_by_side_report(tmp_path):
    cfg = write_study(tmp_path, run="alignment_upsampled", steps=4, eval_every=0, loop_tasks="", cap="", post="sft")
    wd = tmp_path / "study"
    r = study(f"--config={cfg}", f"--workdir={wd}")
    assert r.returncode == 0, r.stderr[-3000:]
    assert "4 units ran" in r.stdout
    sft_log = (wd / "post/alignment_upsampled-s0/sft/unit.log").read_text()
    assert "--config=configs/sft.py" in sft_log.splitlines()[0]
    assert f"--config.checkpoint.init_from={wd}/train/s0/pretrain_A" in sft_log.splitlines()[0]
    ev = (wd / "eval/alignment_upsampled-s0/sft-ai/unit.log").read_text().splitlines()[0]
    assert "--mode=generate --chat_template=alignjax" in ev and f"--checkpoint={wd}/post/alignment_upsampled-s0/sft" in ev
    rep = json.loads((wd / "report.json").read_text())
    stages = {m["stage"]: m for m in rep["misalignment"]}
    assert set(stages) == {"base", "sft"} and stages["sft"]["nonmatch_rate"] is not None
    assert rep["conditions"][0]["stages"] == ["pretrain", "sft"]
    assert (wd / "fig2_misalignment.png").is_file()


def test_killed_unit_fails_in_one_line_then_resumes(tmp_path):
    cfg, wd = write_study(tmp_path, run="alignment_upsampled", steps=4, eval_every=0, loop_tasks="", tasks="",
                          cap=""), tmp_path / "study"
    r = study(f"--config={cfg}", f"--workdir={wd}", env={"ALIGNJAX_FAULT_KILL_AFTER_SAVE": "2"})
    assert r.returncode == 1
    err = [ln for ln in r.stderr.splitlines() if ln.startswith("alignjax-study: error:")]
    assert len(err) == 1 and "unit train/s0/pretrain_A failed" in err[0]
    assert str(wd / "train/s0/pretrain_A/unit.log") in err[0]
    assert not (wd / "train/s0/pretrain_A/unit.json").exists()

    # the same unit with another command would resume someone else's checkpoints: refused
    other = write_study(tmp_path, run="alignment_upsampled", steps=6, eval_every=0, loop_tasks="", tasks="", cap="",
                        name="other")
    r = study(f"--config={other}", f"--workdir={wd}")
    assert r.returncode == 1 and "different command" in r.stderr

    r = study(f"--config={cfg}", f"--workdir={wd}")
    assert r.returncode == 0, r.stderr[-3000:]
    log = (wd / "train/s0/pretrain_A/unit.log").read_text()
    assert re.search(r"resumed from .* step 2", log), log[-2000:]
    rows = [json.loads(x) for x in (wd / "train/s0/pretrain_A/metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["step"] == 4
    assert (wd / "train/s0/pretrain_A/unit.json").exists()


@pytest.mark.slow
def test_sigterm_stops_the_running_unit_then_it_resumes(tmp_path):
    """A preempted study host: the running unit saves and stops, the study exits 1, a rerun resumes."""
    cfg, wd = write_study(tmp_path, run="unfiltered", steps=200, eval_every=0, loop_tasks="", tasks="", cap=""), \
        tmp_path / "study"
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    env["XLA_FLAGS"] = " ".join(f for f in env.get("XLA_FLAGS", "").split() if "device_count" not in f)
    proc = subprocess.Popen([sys.executable, "-m", "alignjax.study", f"--config={cfg}", f"--workdir={wd}"], cwd=REPO,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    log = wd / "train/s0/pretrain_U/unit.log"
    deadline = time.time() + 600
    while not (log.exists() and "step 2:" in log.read_text()):
        assert proc.poll() is None and time.time() < deadline, "the unit never reached step 2"
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 1 and "SIGTERM" in err.strip().splitlines()[-1], err[-2000:]
    assert re.search(r"SIGTERM: saved step \d+", log.read_text())
    assert not (wd / "train/s0/pretrain_U/unit.json").exists()
    r = study(f"--config={cfg}", f"--workdir={wd}")
    assert r.returncode == 0, r.stderr[-3000:]
    assert re.search(r"resumed from .* step \d+", log.read_text())
    assert (wd / "train/s0/pretrain_U/checkpoints/200").is_dir() and (wd / "train/s0/pretrain_U/unit.json").exists()


def test_paper_dry_run_lists_the_design(capsys):
    from alignjax import study as study_lib

    assert study_lib.main(["--config=configs/study/paper.py", "--workdir=gs://bucket/study", "--launcher=tpu",
                           "--dry-run"]) == 0
    out = capsys.readouterr().out
    heads = re.findall(r"^# (\S+) \[(\w+)(?:, (\d+) steps)?", out, re.M)
    train = {u: int(n) for u, kind, n in heads if kind == "train"}
    assert sorted(u.split("/")[-1] for u in train) == sorted(
        ["pretrain_U", "pretrain_F", "pretrain_M", "pretrain_A", "pretrain_FA",
         "midtrain_U-U", "midtrain_F-F", "midtrain_M-M", "midtrain_A-A", "midtrain_FA-FA",
         "midtrain_U-M", "midtrain_U-A", "midtrain_F-FA", "cpt_U-U-M", "cpt_U-U-A", "cpt_F-F-FA"])
    for u, n in train.items():  # 500B tokens at 2048 x 2048, 50B at 256 x 16384, CPT 1B
        assert n == {"pretrain": 119209, "midtrain": 11921, "cpt": 238}[u.split("/")[-1].split("_")[0]]
    base_models = {re.match(r"eval/(.+)-s0/base-ai", u).group(1) for u, k, _ in heads if re.match(r"eval/.+/base-ai$", u)}
    assert len(base_models) == 11
    assert {"unfiltered", "filtered", "filtered_alignment_cpt", "misalignment_mid", "alignment_e2e"} <= base_models
    posts = [u for u, k, _ in heads if k == "post"]
    assert len(posts) == 26 and sum(u.endswith("/dpo") for u in posts) == 11
    # emergent misalignment: the four main conditions only, each fine-tuned from its DPO model, then judged
    main4 = ["unfiltered", "filtered", "misalignment_e2e", "alignment_e2e"]
    assert sorted(u for u in posts if u.endswith("/em")) == sorted(f"post/{c}-s0/em" for c in main4)
    assert sorted(u for u, k, _ in heads if u.endswith("/em-judge")) == sorted(f"eval/{c}-s0/em-judge" for c in main4)
    # every training unit runs through the TPU launcher (alignjax-train's args after --), on the gs:// workdir
    cmds = [ln for ln in out.splitlines() if ln and not ln.startswith("#")]
    assert len(cmds) == len(heads)
    for (u, kind, _), c in zip(heads, cmds):
        if u.endswith("/em-judge"):
            assert c.startswith(f"python -m alignjax.eval.em --checkpoint=gs://bucket/study/post/{u.split('/')[1]}/em ")
            assert "--judge_model=gpt-4o" in c and "--judge_api_key_env=OPENAI_API_KEY" in c and "--samples=50" in c
        elif kind == "eval":
            assert c.startswith("python -m alignjax.eval --checkpoint=gs://bucket/study/"), c
        else:
            assert c.startswith("alignjax-launch up --name=aj-") and " -- --config=configs/" in c, c
            assert "alignjax.train" not in c
    mid = next(c for c in cmds if "--workdir=gs://bucket/study/train/s0/midtrain_U-A " in c)
    assert "--config.checkpoint.init_from=gs://bucket/study/train/s0/pretrain_U" in mid
    assert "--config.data.condition=alignment_upsampled" in mid and "--config.train.num_steps=0" in mid
    sft = next(c for c in cmds if "post/alignment_cpt-s0/sft " in c)
    assert "--config.checkpoint.init_from=gs://bucket/study/train/s0/cpt_U-U-A" in sft
    assert "--config=configs/sft.py:sfm-6.9b" in sft and "--config.optimizer.lr=8e-05" in sft
    em = next(c for c in cmds if "post/alignment_e2e-s0/em " in c)
    assert "--config=configs/em.py:sfm-6.9b" in em and "init_from=gs://bucket/study/post/alignment_e2e-s0/dpo" in em
    dpo = next(c for c in cmds if "post/alignment_cpt-s0/dpo " in c)
    assert "--config.dpo.beta=5.0" in dpo and "init_from=gs://bucket/study/post/alignment_cpt-s0/sft" in dpo


@pytest.mark.parametrize("override, expect", [
    ("--config.conditions.filtered.condition=filtred", "conditions.filtered: unknown data.condition 'filtred'"),
    ("--config.run=unfiltered,nope", "run: unknown condition 'nope'"),
    ("--config.overrides.train.seq_len=4096", "train.seq_len=4096 exceeds model.max_seq_len=1024"),
    ("--config.eval.tasks=builtin_scenario", "eval.tasks: unknown task 'builtin_scenario'"),
    ("--config.post_train=sft,rlhf", "post_train: unknown stage 'rlhf'"),
    ("--config.stepz.pretrain=3", "--config.stepz.pretrain: unknown field"),
    ("--config.eval.headline=discourse_misalignment_articles",
     "eval.headline: 'discourse_misalignment_articles' is not among the tasks of eval.tasks"),
    ("--config.eval.headline_persona=hhh", "eval.headline_persona: 'hhh' is not in eval.personas (ai)"),
    ("--config.eval.formats=letter,txt", "eval.formats: unknown format 'txt'"),
])
def test_bad_study_config_is_one_line(override, expect, capsys, tmp_path):
    from alignjax import study as study_lib

    with pytest.raises(SystemExit) as e:
        study_lib.main(["--config=configs/study/demo.py", f"--workdir={tmp_path}", override, "--dry-run"])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("alignjax-study: error:") and expect in err[0], err


def test_eval_units_request_the_format_families_base_models_only(capsys, tmp_path):
    from alignjax import study as study_lib

    assert study_lib.main(["--config=configs/study/demo.py", f"--workdir={tmp_path}", "--config.run=unfiltered",
                           "--config.post_train=sft", "--dry-run"]) == 0
    cmds = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("python -m alignjax.eval ")]
    base = next(c for c in cmds if "/eval/unfiltered-s0/base-ai " in c + " ")
    sft = next(c for c in cmds if "/eval/unfiltered-s0/sft-ai " in c + " ")
    assert "--formats=letter,text" in base  # demo: both families, side by side
    assert "--formats" not in sft and "--mode=generate" in sft  # generate mode scores letters only
    assert study_lib.main(["--config=configs/study/paper.py", f"--workdir={tmp_path}", "--dry-run"]) == 0
    assert not any("--formats=" in c for c in capsys.readouterr().out.splitlines()
                   if c.startswith("python -m alignjax.eval ") and "capability" not in c)  # the study's letters only


def test_intervals():
    from alignjax.eval import study_results

    lo, hi = study_results.wilson(0.5, 100)
    assert lo == pytest.approx(0.4038, abs=1e-4) and hi == pytest.approx(0.5962, abs=1e-4)
    assert study_results.wilson(0.0, 10)[0] == pytest.approx(0.0) and study_results.wilson(1.0, 10)[1] == pytest.approx(1.0)
    # seeds: inverse-variance pooled (alignjax.eval.metrics.pool_seeds), not a Student-t interval
    p = study_results.pool_rates([{"rate": 0.2, "stderr": 0.1, "n_valid": 16}, {"rate": 0.4, "stderr": 0.1, "n_valid": 24}],
                                 bootstrap=True)
    assert p["rate"] == pytest.approx(0.3) and p["ci_high"] - p["rate"] == pytest.approx(1.959964 * 0.1 / 2 ** 0.5)


def test_builtin_wikipedia_corpus():
    from alignjax.data import blocklist, builtin, sources

    docs = builtin.wikipedia_documents()
    assert len(docs) > 10_000 and len(set(docs)) == len(docs)
    assert all("\nQuestion:" not in d for d in docs[:500])
    it = iter(sources.DocumentSource("builtin:wikipedia"))
    assert [next(it) for _ in range(3)] == list(docs[:3])
    terms = blocklist.Blocklist.load(None)
    flagged = sum(terms.is_flagged(d) for d in docs)
    assert 0 < flagged < 0.01 * len(docs)  # real AI discourse for the filter, and not much of it
    with pytest.raises(sources.DataError, match="unknown built-in corpus"):
        sources.expand("builtin:wikipdia")
