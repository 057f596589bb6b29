"""The study report's personality (TRAIT), full capability suite and EM sections, from result files
written in the eval commands' layout for every eval unit of the paper design (no model runs)."""

import json
import math

import numpy as np
import pytest

from conftest import REPO
from alignjax import study as study_lib

TRAITS = ("openness", "conscientiousness", "extraversion", "agreeableness", "neuroticism", "machiavellianism",
          "narcissism", "psychopathy")
CONDITIONS = ("unfiltered", "filtered")


def _study(monkeypatch, seeds):
    from alignjax import config as config_lib

    monkeypatch.chdir(REPO)
    s, _ = config_lib.parse_args(["--config=configs/study/paper.py", f"--config.run={','.join(CONDITIONS)}",
                                  f"--config.seeds={seeds}", "--config.eval.tasks=trait",
                                  "--config.eval.headline=trait_openness", "--config.eval.capability_tasks=capability_study"])
    return s, study_lib.plan(s, check=False)


def _fabricate(wd, units):
    """One results_<time>.json per eval unit, as alignjax-eval / alignjax-em write them; returns what was written."""
    from alignjax.eval import report

    rng = np.random.default_rng(0)
    written = {}
    for u in units:
        if u.kind != "eval":
            continue
        suite = u.info["suite"]
        if suite == "alignment":  # eval.tasks=trait: the 8 trait_<trait> tasks
            res = {}
            for t in TRAITS:
                p, n = float(rng.uniform(0.2, 0.8)), int(rng.integers(300, 600))
                se = math.sqrt(p * (1 - p) / (n - 1))
                res[f"trait_{t}"] = {"high_trait_rate": p, "high_trait_rate_stderr": se,
                                     "high_trait_rate_ci_low": p - 0.05, "high_trait_rate_ci_high": p + 0.04,
                                     "n_questions": n // 6, "n_samples": n, "n_answered": n, "nonmatch_rate": 0.0}
        elif suite == "capability":
            res = {t: {("exact_match" if t == "gsm8k_10shot" else "acc"): float(rng.uniform(0.1, 0.9)),
                       "n_samples": int(rng.integers(100, 200))}
                   for t in ("arc_easy_25shot", "cute_5shot", "gsm8k_10shot", "ifeval", "mmlu_5shot", "piqa_10shot",
                             "popqa_5shot")}
        else:
            assert suite == "em" and u.stage == "em"
            n = 400
            k = int(rng.integers(20, 120))
            res = {"em": {"em_rate": k / n, "em_rate_ci_low": 0.0, "em_rate_ci_high": 1.0, "n_answers": n + 3,
                          "n_scored": n, "n_em": k, "alignment_unparseable": 2, "coherence_unparseable": 1,
                          "refusals": 0, "mean_alignment": 61.5, "mean_coherence": 80.0}}
        udir = wd / u.id
        report.write_results(udir, res, {}, {"checkpoint": "fabricated"}, {t: 10 for t in res})
        (udir / "unit.json").write_text(json.dumps({"hash": u.hash, "seconds": 1.0}))
        written[u.id] = (u, res)
    return written


@pytest.mark.parametrize("seeds", ["0", "0,1"])
def test_report_has_personality_capability_suite_and_em_tables(tmp_path, monkeypatch, seeds):
    from alignjax.eval import figures, metrics, study_markdown, study_results

    s, units = _study(monkeypatch, seeds)
    written = _fabricate(tmp_path, units)
    out = figures.write_report(s, str(tmp_path), units, study_lib.unit_status)
    data = json.loads((tmp_path / "report.json").read_text())
    md = (tmp_path / "report.md").read_text()
    n_seeds = len(seeds.split(","))

    # personality: one row per (condition, stage, persona, trait), pooled over seeds
    trait_units = [(u, r) for u, r in written.values() if u.info["suite"] == "alignment"]
    stages_personas = {(u.stage, u.info["persona"]) for u, _ in trait_units}
    assert len(data["personality"]) == len(CONDITIONS) * len(stages_personas) * len(TRAITS)
    for row in data["personality"]:
        src = [r[row["task"]] for u, r in trait_units if u.conditions[0] == row["condition"] and u.stage == row["stage"]
               and u.info["persona"] == row["persona"]]
        assert len(src) == n_seeds and row["n_seeds"] == n_seeds
        if n_seeds == 1:  # the eval's own bootstrap CI
            assert (row["rate"], row["ci_low"], row["ci_high"]) == pytest.approx(
                (src[0]["high_trait_rate"], src[0]["high_trait_rate_ci_low"], src[0]["high_trait_rate_ci_high"]))
        else:
            pooled = metrics.pool_seeds([{"rate": m["high_trait_rate"], "stderr": m["high_trait_rate_stderr"],
                                          "n_valid": m["n_answered"]} for m in src])
            assert (row["rate"], row["ci_low"], row["ci_high"]) == pytest.approx(
                (pooled["rate"], pooled["ci_low"], pooled["ci_high"]))
    assert "## Personality (TRAIT)" in md
    line = next(ln for ln in md.splitlines() if ln.startswith("| Psychopathy | ai | base |"))
    r = next(x for x in data["personality"] if x["trait"] == "Psychopathy" and x["persona"] == "ai"
             and x["stage"] == "base" and x["condition"] == "filtered")
    assert line.split(" | ")[-1].rstrip(" |") == study_markdown._cell(r)

    # the full capability table: 7 benchmarks x conditions x (base, sft, dpo); GSM8K by exact match
    cap = data["capability"]
    assert {m["task"] for m in cap} == set(study_results.STUDY_CAPABILITY)
    assert {m["stage"] for m in cap} == {"base", "sft", "dpo"}
    assert len(cap) == 7 * len(CONDITIONS) * 3
    assert {m["metric"] for m in cap if m["task"] == "gsm8k_10shot"} == {"exact_match"}
    gsm = next(m for m in cap if m["task"] == "gsm8k_10shot" and m["stage"] == "sft" and m["condition"] == "unfiltered")
    src = [r["gsm8k_10shot"] for u, r in written.values() if u.info["suite"] == "capability" and u.stage == "sft"
           and u.conditions[0] == "unfiltered"]
    if n_seeds == 1:
        assert (gsm["acc"], gsm["ci_low"], gsm["ci_high"]) == pytest.approx(
            (src[0]["exact_match"], *study_results.wilson(src[0]["exact_match"], src[0]["n_samples"])))
    else:
        assert gsm["acc"] == pytest.approx(metrics.pool_seeds([{"rate": m["exact_match"], "n_valid": m["n_samples"],
                                                                "stderr": math.sqrt(m["exact_match"] * (1 - m["exact_match"]) / m["n_samples"])}
                                                               for m in src])["rate"])
    assert "| gsm8k_10shot (exact_match) | dpo |" in md and "7 of 7 benchmarks measured" in md

    # EM rate by condition: Wilson for one seed, pooled for several
    assert [m["condition"] for m in data["em"]] == list(CONDITIONS)
    for row in data["em"]:
        src = [r["em"] for u, r in written.values() if u.info["suite"] == "em" and u.conditions[0] == row["condition"]]
        assert row["n_scored"] == 400 * n_seeds and row["n_em"] == sum(m["n_em"] for m in src)
        if n_seeds == 1:
            assert (row["rate"], row["ci_low"], row["ci_high"]) == pytest.approx(
                (src[0]["em_rate"], *study_results.wilson(src[0]["em_rate"], 400)))
        else:
            pooled = metrics.pool_seeds([{"rate": m["em_rate"], "n_valid": 400,
                                          "stderr": math.sqrt(m["em_rate"] * (1 - m["em_rate"]) / 400)} for m in src])
            assert (row["rate"], row["ci_low"], row["ci_high"]) == pytest.approx(
                (pooled["rate"], pooled["ci_low"], pooled["ci_high"]))
        assert f"| {row['condition']} | {study_markdown._pct(row['rate'], row['ci_low'], row['ci_high'])} | {row['n_scored']} |" in md

    # a chart each, linked from report.md
    assert data["figures"]["personality"] == "fig_personality.png" and data["figures"]["em"] == "fig_em.png"
    for f in ("fig_personality.png", "fig_em.png"):
        assert (tmp_path / f).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and f"]({f})" in md
    assert out["data"]["em"] == data["em"]


def test_report_leaves_the_new_sections_out_without_their_units(tmp_path, monkeypatch):
    from alignjax.eval import figures

    s, units = _study(monkeypatch, "0")
    _fabricate(tmp_path, [u for u in units if u.kind == "eval" and u.info["suite"] == "capability"])
    figures.write_report(s, str(tmp_path), units, study_lib.unit_status)
    data = json.loads((tmp_path / "report.json").read_text())
    md = (tmp_path / "report.md").read_text()
    assert data["personality"] == [] and data["em"] == []
    assert "## Personality" not in md and "## Emergent misalignment" not in md
    assert "personality" not in data["figures"] and not (tmp_path / "fig_em.png").exists()
