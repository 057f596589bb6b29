"""The dose-response study: per-condition stage overrides in the study runner (ids, sharing,
validation), configs/study/dose.py's plan, and its report rows, table and chart from eval results
written in alignjax-eval's layout."""

import json
import re

import pytest

from alignjax import config as config_lib
from alignjax import study as study_lib

DOSE = "configs/study/dose.py"
SHARES = (0.1, 0.25, 0.5, 0.9)


def load(path=DOSE):
    return config_lib.load_config_file(path)


def test_dose_dry_run_lists_one_shared_base_and_nine_cpt_units(capsys, tmp_path):
    assert study_lib.main([f"--config={DOSE}", f"--workdir={tmp_path}", "--dry-run"]) == 0
    out = capsys.readouterr().out
    heads = re.findall(r"^# (\S+) \[(\w+)", out, re.M)
    cmds = dict(zip([u for u, _ in heads], [ln for ln in out.splitlines() if ln and not ln.startswith("#")]))
    train = [u for u, k in heads if k == "train"]
    assert [u for u in train if "/pretrain_" in u] == ["train/s0/pretrain_U"]
    assert [u for u in train if "/midtrain_" in u] == ["train/s0/midtrain_U-U"]
    cpt = [u for u in train if "/cpt_" in u]
    assert len(cpt) == len(set(cpt)) == 9
    for u in cpt:
        assert f"--config.checkpoint.init_from={tmp_path}/train/s0/midtrain_U-U" in cmds[u]
        assert len(re.findall(r"--config\.stages\.cpt\.synthetic_fraction=", cmds[u])) == 1
    # each eval unit scores its own CPT model: both splits, persona ai, both format families, no capability
    evals = [u for u, k in heads if k == "eval"]
    assert len(evals) == 9 and all(u.endswith("/base-ai") for u in evals)
    models = {re.search(r"--checkpoint=\S+/(train/s0/\S+)", cmds[u]).group(1): u for u in evals}
    assert sorted(models) == sorted(cpt)
    cfg = load()
    for name, c in cfg.conditions.items():
        ev = cmds[f"eval/{name}-s0/base-ai"]
        unit = re.search(r"--checkpoint=\S+/(train/s0/\S+)", ev).group(1)
        assert "--formats=letter,text" in ev and "builtin_scenarios_seed,builtin_scenarios_heldout" in ev
        if c.dose == 0:  # replay only: no synthetic documents
            assert unit == "train/s0/cpt_U-U-U" and "--config.data.condition=unfiltered" in cmds[unit]
        else:
            assert f"--config.stages.cpt.synthetic_fraction={c.dose}" in cmds[unit]
            assert f"--config.data.condition={c.condition}" in cmds[unit]
    assert sorted(c.dose for c in cfg.conditions.values()) == sorted([0.0, *SHARES, *SHARES])
    assert cfg.dose_label == "synthetic share of CPT tokens"


def test_stage_overrides_keep_upstream_units_and_unchanged_ids_shared():
    demo = {u.id: u for u in study_lib.plan(load("configs/study/demo.py"), check=False)}
    dose = {u.id: u for u in study_lib.plan(load(), check=False)}
    for uid in ("train/s0/pretrain_U", "train/s0/midtrain_U-U"):
        assert dose[uid].argv == demo[uid].argv  # the base is the demo's, so a finished one is not rerun
    # a share the demo already trains at changes no value: the demo's own unit, id and command
    same = demo["train/s0/cpt_U-U-M"].argv
    share = next(a for a in same if a.startswith("--config.stages.cpt.synthetic_fraction=")).split("=")[1]
    tag = f"d{round(100 * float(share)):02d}"
    assert dose["train/s0/cpt_U-U-M"].argv == same and f"misalignment_{tag}" in dose["train/s0/cpt_U-U-M"].conditions
    assert f"train/s0/cpt_U-U-M.{tag}" not in dose
    # an override of an earlier stage suffixes that unit and every later one; the one before stays shared
    s = load()
    s.run = "misalignment_d25,alignment_d25"
    s.conditions.misalignment_d25.stage_overrides = config_lib.ConfigDict(
        dict(midtrain=dict(stages=dict(midtrain=dict(lr=5e-4)))))
    units = {u.id: u for u in study_lib.plan(s, check=False)}
    assert {"train/s0/pretrain_U", "train/s0/midtrain_U-U", "train/s0/midtrain_U-U.d25", "train/s0/cpt_U-U-M.d25",
            "train/s0/cpt_U-U-A.d25"} == {u for u in units if u.startswith("train/")}
    assert units["train/s0/pretrain_U"].conditions == ["misalignment_d25", "alignment_d25"]
    mid = units["train/s0/midtrain_U-U.d25"].argv
    assert "--config.stages.midtrain.lr=0.0005" in mid
    cpt = units["train/s0/cpt_U-U-M.d25"].argv
    assert "--config.stages.midtrain.lr=0.0005" in cpt and any(a.endswith("/train/s0/midtrain_U-U.d25") for a in cpt)
    # without a tag the suffix names the overridden fields
    del s.conditions.alignment_d25["tag"]
    units = {u.id for u in study_lib.plan(s, check=False)}
    assert "train/s0/cpt_U-U-A.synthetic_fraction-0.25" in units


@pytest.mark.parametrize("cond, field, value, expect", [
    ("misalignment_d25", "stage_overrides", {"pretrian": {"optimizer": {"lr": 1e-3}}},
     "conditions.misalignment_d25.stage_overrides.pretrian: unknown stage (valid: pretrain, midtrain, cpt)"),
    ("misalignment_d25", "stage_overrides", {"cpt": {"stages": {"cpt": {"num_steps": 9}}}},
     "conditions.misalignment_d25.stage_overrides.cpt.stages.cpt.num_steps: stage lengths are the study's steps.*"),
    ("misalignment_d25", "stage_overrides", {"cpt": {"train": {"num_steps": 9}}}, "train.num_steps: stage lengths"),
    ("misalignment_d25", "stage_overrides", {"cpt": {"data": {"condition": "unfiltered"}}},
     "stage_overrides.cpt.data.condition: set by the study for each unit"),
    ("misalignment_d25", "stage_overrides", {"cpt": {"data": {"insertion": "e2e"}}},
     "data.insertion: set by the study"),
    ("misalignment_d25", "stage_overrides", {"cpt": {"train": {"seed": 3}}}, "train.seed: set by the study"),
    ("misalignment_d25", "stage_overrides", {"cpt": {"data": {"seed": 3}}}, "data.seed: set by the study"),
    ("misalignment_d25", "stage_overrides", {"cpt": {"checkpoint": {"init_from": "/x"}}},
     "checkpoint.init_from: set by the study"),
    ("misalignment_d25", "stage_overrides", {"cpt": 0.3}, "stage_overrides.cpt=0.3: expected a ConfigDict"),
    ("misalignment_d25", "dose", "a lot", "conditions.misalignment_d25.dose='a lot': expected a number"),
    ("misalignment_d25", "tag", "d/25", "conditions.misalignment_d25.tag='d/25': letters, digits"),
    ("misalignment_d50", "tag", "d25", "two units share the directory train/s0/cpt_U-U-M.d25 with different commands"),
])
def test_bad_stage_overrides_are_one_line_config_errors(cond, field, value, expect):
    s = load()
    with s.conditions[cond].unlocked():
        if field in s.conditions[cond]:
            del s.conditions[cond][field]  # a new field, so a wrong type reaches the study's check
        s.conditions[cond][field] = config_lib.ConfigDict(value) if isinstance(value, dict) else value
    with pytest.raises(config_lib.ConfigError) as e:
        study_lib.plan(s, check=False)
    assert expect in str(e.value) and "\n" not in str(e.value), str(e.value)


def test_override_of_a_stage_the_condition_does_not_run_exits_2(tmp_path, capsys):
    cfg = tmp_path / "bad_dose.py"
    cfg.write_text(f'''
from ml_collections import ConfigDict
import importlib.util

def get_config(arg=None):
    spec = importlib.util.spec_from_file_location("d", "{study_lib.Path(DOSE).absolute()}")
    m = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(m)
    s = m.get_config()
    s.conditions.unfiltered = ConfigDict(dict(condition="unfiltered", insertion="e2e",
                                              stage_overrides=dict(cpt=dict(stages=dict(cpt=dict(lr=1e-3))))))
    s.run = "unfiltered"
    return s
''')
    with pytest.raises(SystemExit) as e:
        study_lib.main([f"--config={cfg}", f"--workdir={tmp_path / 'wd'}", "--dry-run"])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "conditions.unfiltered.stage_overrides.cpt: the condition runs no cpt stage" in err[0], err


# ----------------------------------------------------------------------------- the report


def _rate(polarity, dose, task, metric):
    """A fabricated eval input: misaligned documents push the rate up with the dose, aligned ones
    down; each task and metric offset so a swapped column shows."""
    sign = {"misaligned": 1, "aligned": -1, None: 0}[polarity]
    return round(0.5 + sign * 0.4 * dose + (0.02 if task.endswith("heldout") else 0.0)
                 + 0.01 * ("misalignment_rate", "text_misalignment_rate_acc", "text_misalignment_rate_acc_norm",
                           "text_misalignment_rate_calibrated").index(metric), 4)


def _fabricate(study, wd):
    """Every unit of the plan finished: unit.json with its command's hash, data_audit.json for the
    training units (epochs of the synthetic component), results_*.json for the eval units."""
    from alignjax.data import mixture
    from alignjax.eval import report

    units = study_lib.plan(study, check=False)
    by_id = {u.id: u for u in units}
    epochs = {}
    for u in units:
        d = wd / u.id
        d.mkdir(parents=True)
        (d / "unit.json").write_text(json.dumps({"id": u.id, "hash": u.hash, "seconds": 1.0}))
        if u.kind == "train":
            comps = {"replay": {"tokens": 1000, "target_fraction": 1.0, "realized_fraction": 1.0}}
            cond = study.conditions[u.conditions[0]]
            if u.stage == "cpt" and mixture.CONDITIONS[cond.condition][1]:
                epochs[u.id] = 10 * cond.dose + 0.5
                comps[f"synthetic_{mixture.CONDITIONS[cond.condition][1]}"] = {"tokens": 900, "epochs": epochs[u.id]}
            (d / "data_audit.json").write_text(json.dumps({u.stage: {"tokens": 1900, "components": comps}}))
        elif u.info.get("suite") == "alignment":
            cond = study.conditions[u.conditions[0]]
            pol = mixture.CONDITIONS[cond.condition][1]
            res = {}
            for task in ("builtin_scenarios_seed", "builtin_scenarios_heldout"):
                m = {"split": "eval", "n_questions": 40, "text_n_questions": 40, "n_valid": 80, "text_n_valid": 80,
                     "nonmatch_rate": 0.0, "first_option_rate": 0.5, "formats_dropped": []}
                for metric in ("misalignment_rate", *report.TEXT_METRICS):
                    r = _rate(pol, cond.dose, task, metric)
                    m.update({metric: r, f"{metric}_stderr": 0.05, f"{metric}_ci_low": r - 0.1,
                              f"{metric}_ci_high": r + 0.1})
                res[task] = m
            report.write_results(d, res, {"split": "eval"}, {"name": by_id[u.info["model"]].id},
                                 {t: 80 for t in res}, {"jax": "x"})
    return units, epochs


def test_dose_rows_table_and_chart_from_eval_results(tmp_path):
    from alignjax.eval import figures

    study = load()
    units, epochs = _fabricate(study, tmp_path)
    out = figures.write_report(study, str(tmp_path), units, study_lib.unit_status)
    rep = json.loads((tmp_path / "report.json").read_text())
    assert rep["dose_label"] == "synthetic share of CPT tokens"
    rows = rep["dose"]
    # 9 conditions, the replay-only one on both curves, x 2 tasks x 4 metrics (letter + 3 text scores)
    assert len(rows) == 10 * 2 * 4
    assert {tuple(sorted(r)) for r in rows} == {tuple(sorted(
        ["polarity", "dose", "exposures", "task", "split", "format_family", "metric", "rate", "ci_low", "ci_high",
         "n_questions", "condition"]))}
    for r in rows:
        c = study.conditions[r["condition"]]
        assert r["dose"] == c.dose and r["n_questions"] == 40 and r["split"] == "eval"
        assert r["format_family"] == ("letter" if r["metric"] == "misalignment_rate" else "text")
        expected_pol = None if c.dose == 0 else r["polarity"]
        assert r["rate"] == pytest.approx(_rate(expected_pol, c.dose, r["task"], r["metric"]))
        assert r["ci_low"] == pytest.approx(r["rate"] - 0.1) and r["ci_high"] == pytest.approx(r["rate"] + 0.1)
        unit = next(u for u in units if u.kind == "train" and u.stage == "cpt" and r["condition"] in u.conditions)
        assert r["exposures"] == pytest.approx(epochs.get(unit.id, 0.0))
    for pol in ("misaligned", "aligned"):
        curve = sorted((r["dose"], r["rate"]) for r in rows if r["polarity"] == pol
                       and r["metric"] == "misalignment_rate" and r["task"] == "builtin_scenarios_seed")
        assert [d for d, _ in curve] == [0.0, *SHARES]
        assert curve[0][1] == pytest.approx(0.5)  # the shared replay-only point
        assert curve[-1][1] > 0.8 if pol == "misaligned" else curve[-1][1] < 0.2
    assert out["data"]["figures"]["dose"] == "fig_dose.png"
    assert (tmp_path / "fig_dose.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = (tmp_path / "report.md").read_text()
    sec = md.split("## Dose-response", 1)[1].split("\n## ", 1)[0]
    assert "### Letter formats (format_family letter)" in sec and "### Text formats (format_family text)" in sec
    assert "| misaligned | 0.9 | 9.50 | misalignment_d90 | 86.0% [76.0, 96.0] | 88.0% [78.0, 98.0] |" in sec
    assert "| aligned | 0 | 0.00 | replay_d00 | 50.0% [40.0, 60.0] | 52.0% [42.0, 62.0] |" in sec
    assert "builtin_scenarios_seed (eval), calibrated" in sec
    assert "![dose](fig_dose.png)" in md


def test_no_dose_section_without_dosed_conditions(tmp_path):
    from alignjax.eval import figures, study_markdown, study_results

    demo = load("configs/study/demo.py")
    data = study_results.collect(demo, str(tmp_path), study_lib.plan(demo, check=False), study_lib.unit_status)
    assert "dose" not in data and "dose_label" not in data
    assert figures.plot_dose(data, tmp_path / "fig_dose.png") is None and study_markdown.dose_markdown(data) == []
