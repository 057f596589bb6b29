"""A study's results: its units' eval results, in-loop curves and data audits collected into
report.json's rows (schema in alignjax/study.py), with their confidence intervals.

Every misalignment number follows the study's parse-failure rule (``metrics.parse_failure_rule``,
applied by alignjax-eval: formats with >= 20% non-matches dropped, binomial SE over n_valid) and
seeds are pooled by inverse-variance weighting (``metrics.pool_seeds``). CIs (95%): one seed of a
base model, the eval's bootstrap over questions; one seed of a post-trained model, rate ± 1.96
binomial SE; several seeds, the pooled rate ± 1.96 pooled SE. Capability: the Wilson interval
for one seed; several seeds pooled the same way, with SE sqrt(acc(1-acc)/n).

report.json row types beyond the misalignment, capability and curve rows (alignjax/study.py's schema):
  personality: {condition, stage, persona, task, trait, rate (high_trait_rate), ci_low, ci_high, stderr, ci,
                n_questions, n_answered, nonmatch_rate, n_seeds, n_seeds_pooled, per_seed}, from any eval unit
                whose results hold TRAIT tasks (trait_<trait>: evals/trait.py);
  em:          {condition, stage ("em"), rate (em_rate), ci_low, ci_high, ci, n_scored, n_em, n_answers,
                alignment_unparseable, coherence_unparseable, mean_alignment, mean_coherence, n_seeds, per_seed},
                from the em-judge units (suite "em": alignjax-em's results, task "em");
  capability rows carry ``metric``: acc, or exact_match for GSM8K (strict-match, lm-eval's primary).
"""

from __future__ import annotations

import datetime
import json
import math
from pathlib import Path
from typing import Any, Callable

import numpy as np

from alignjax.data import mixture
from alignjax.data import eval_suites as registry
from alignjax.eval import metrics
from alignjax.eval.report import TEXT_METRICS, latest_results
from alignjax.rundir import RunDir

CI_MISALIGNMENT_ONE = ("one seed: base models, bootstrap over questions (1000 resamples, percentile); post-trained "
                       "models, rate ± 1.96 binomial SE")
CI_CAPABILITY_ONE = "Wilson score interval over samples"
CI_SEEDS = "inverse-variance pooled rate across seeds ± 1.96 pooled SE (Tice et al. 2026, app. D.5)"
CI_TRAIT = ("one seed: the eval's bootstrap over items (all syntaxes of an item together, 1000 resamples); several: "
            + CI_SEEDS + ", each seed's SE the SEM over its answered samples")
CI_EM = "one seed: Wilson interval over scored answers; several: " + CI_SEEDS + ", SE sqrt(p(1-p)/n_scored)"
# In-loop metrics drawn as curves -> their format family (alignjax/train.py names them eval/<task>/<metric>).
CURVE_METRICS = {"misalignment_rate": "letter", "text_misalignment_rate_acc": "text"}
# The study's capability suite (Tice et al. 2026, appendix F, Table 11), in its order.
STUDY_CAPABILITY = ("arc_easy_25shot", "cute_5shot", "gsm8k_10shot", "ifeval", "mmlu_5shot", "piqa_10shot", "popqa_5shot")
# evals/trait.py's order: the Big Five, then the Short Dark Triad
TRAIT_ORDER = tuple(f"trait_{t}" for t in ("openness", "conscientiousness", "extraversion", "agreeableness",
                                           "neuroticism", "machiavellianism", "narcissism", "psychopathy"))
STAGE_ORDER = {"base": 0, "sft": 1, "dpo": 2}
POLARITIES = ("misaligned", "aligned")  # the dose rows' order
METRIC_ORDER = ("misalignment_rate", *TEXT_METRICS)
# (format family, metric, its n_valid, its n_questions): one measurement each, pooled only across seeds of the same one
_FAMILY_METRICS = (("letter", "misalignment_rate", "n_valid", "n_questions"),
                   *(("text", t, "text_n_valid", "text_n_questions") for t in TEXT_METRICS))


def _names(text) -> list[str]:  # a comma-separated study field
    return [t.strip() for t in str(text).split(",") if t.strip()]


def _run_conditions(study) -> list[str]:
    return _names(study.run) if study.run else list(study.conditions.keys())


def _seeds(study) -> list[int]:
    return [int(x) for x in _names(study.seeds)]


def _num(v):
    return None if v is None or (isinstance(v, float) and not math.isfinite(v)) else float(v)


def _mean(xs):
    xs = [x for x in xs if x is not None]
    return float(np.mean(xs)) if xs else None


def row_family(m: dict) -> str:
    return m.get("format_family") or "letter"  # rows written before the text family were all letter


def row_metric(m: dict) -> str:
    return m.get("metric") or "misalignment_rate"


def headline(study) -> tuple[list[str], str]:
    """The headline figure's tasks and persona: ``eval.headline`` (comma-separated tasks; "" =
    the study's Articles and Textbook discourse tasks when ``eval.tasks`` reaches them, else the
    first alignment task) and ``eval.headline_persona`` (default ai, the study's Fig. 2)."""
    e = study.eval
    persona = e.get("headline_persona", "") or "ai"
    tasks = _names(e.get("headline", ""))
    if tasks:
        return tasks, persona
    suites = registry.load_suites()
    reached = [t for name in _names(e.tasks) for t in registry.tasks_of(name)]
    discourse = [t for t in suites.DISCOURSE_TASKS if t in reached]
    return (discourse or reached[:1]), persona


# ----------------------------------------------------------------------------- intervals


def wilson(p: float, n: int, z: float = 1.959964) -> tuple[float, float]:
    """95% Wilson score interval of a proportion ``p`` over ``n`` samples."""
    if n <= 0:
        return math.nan, math.nan
    d = 1 + z * z / n
    c = (p + z * z / (2 * n)) / d
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return max(0.0, c - h), min(1.0, c + h)


def pool_rates(rows: list[dict], bootstrap: bool) -> dict:
    """Rate, CI and SE of one (condition, stage, task, persona) over its seeds' measurements
    (``rate``, ``stderr``, ``n_valid``, ``ci_low``/``ci_high``): one seed keeps its bootstrap CI
    when ``bootstrap`` (base models), else rate ± 1.96 SE; several are inverse-variance pooled."""
    known = [r for r in rows if r["rate"] is not None]
    if len(known) == 1 and len(rows) == 1:
        r = rows[0]
        lo, hi = (r["ci_low"], r["ci_high"]) if bootstrap else metrics.normal_ci(r["rate"], r["stderr"])
        return {"rate": r["rate"], "ci_low": lo, "ci_high": hi, "stderr": r["stderr"],
                "ci": "bootstrap" if bootstrap else "binomial", "n_pooled": 1}
    pooled = metrics.pool_seeds(rows)
    return {"rate": pooled["rate"], "ci_low": pooled["ci_low"], "ci_high": pooled["ci_high"],
            "stderr": pooled["stderr"], "ci": "inverse_variance", "n_pooled": pooled["n_pooled"]}


def _pool_binomial(rows: list[dict]) -> dict:
    """A proportion over seeds: one seed, Wilson over its n; several, inverse-variance pooled."""
    if len(rows) == 1:
        p, n = rows[0]["rate"], rows[0]["n"]
        lo, hi = wilson(p, n) if p is not None and n else (None, None)
        return {"rate": p, "ci_low": lo, "ci_high": hi, "ci": "wilson", "n_pooled": int(p is not None)}
    pooled = metrics.pool_seeds([{"rate": r["rate"], "n_valid": r["n"],
                                  "stderr": math.sqrt(r["rate"] * (1 - r["rate"]) / r["n"]) if r["n"] else None}
                                 for r in rows if r["rate"] is not None])
    return {"rate": pooled["rate"], "ci_low": pooled["ci_low"], "ci_high": pooled["ci_high"], "ci": "inverse_variance",
            "n_pooled": pooled["n_pooled"]}


# ----------------------------------------------------------------------------- collecting


def _results(unit_dir: Path) -> dict | None:
    try:
        return json.loads(latest_results(unit_dir).read_text())
    except (FileNotFoundError, ValueError):
        return None


def _metrics_rows(path: Path) -> list[dict]:
    rows = []
    if path.is_file():
        for line in path.read_text().splitlines():
            try:
                rows.append(json.loads(line))
            except ValueError:
                continue  # a line cut by a kill: the rest is still good
    return rows


def collect(study, workdir: str, units, unit_status: Callable[[str, Any], str]) -> dict:
    """``unit_status(workdir, unit)``: the unit's state from its marker (the study runner's unit_status)."""
    wd = Path(workdir)
    names, seeds = _run_conditions(study), _seeds(study)
    unit_rows = _unit_rows(wd, workdir, units, unit_status)
    done = {r["id"] for r in unit_rows if r["status"] == "done"}
    mis, cap = _eval_measurements(wd, units, done)
    misalignment = [_pooled_misalignment(key, rows) for key, rows in mis.items()]
    capability = [_pooled_capability(key, rows) for key, rows in cap.items()]
    curves, audit = _curves_and_audit(study, wd, units, names, seeds)
    return {
        "schema": "alignjax.study/1", "study": study.get("name", ""), "workdir": str(wd),
        "created": datetime.datetime.now().isoformat(timespec="seconds"),
        "ci_method": {"misalignment": CI_MISALIGNMENT_ONE if len(seeds) == 1 else CI_SEEDS,
                      "capability": CI_CAPABILITY_ONE if len(seeds) == 1 else CI_SEEDS, "level": 0.95,
                      "rule": metrics.RULE},
        "headline": dict(zip(("tasks", "persona"), headline(study))),
        "config": study.to_dict(), "conditions": _conditions(study, units, names, seeds), "units": unit_rows,
        "misalignment": misalignment, "capability": capability, "curves": curves, "data_audit": audit, "figures": {},
        **dose_section(study, workdir, units, misalignment),
        **collect_extras(wd, units, done),  # personality (TRAIT) and em rows
    }


def _unit_rows(wd: Path, workdir: str, units, unit_status) -> list[dict]:
    rows = []
    for u in units:
        marker = wd / u.id / "unit.json"
        status = unit_status(workdir, u)
        seconds = json.loads(marker.read_text()).get("seconds") if status == "done" else None
        rows.append({"id": u.id, "kind": u.kind, "status": {"started": "failed"}.get(status, status),
                     "seconds": seconds, "command": u.display(workdir), "dir": str(wd / u.id),
                     "log": str(wd / u.id / "unit.log"), "conditions": list(u.conditions), "seed": u.seed,
                     "stage": u.stage})
    return rows


def _eval_measurements(wd: Path, units, done: set) -> tuple[dict, dict]:
    """The finished eval units' per-seed measurements: (condition, stage, task, persona, family, metric,
    split) -> misalignment rows, and (condition, stage, task) -> capability rows."""
    mis, cap = {}, {}
    for u in units:
        if u.kind != "eval" or u.id not in done:
            continue
        res = _results(wd / u.id)
        if res is None:
            continue
        for cond in u.conditions:
            for task, m in res["results"].items():
                split = m.get("split,none") or res.get("config", {}).get("split") or ""
                for fam, metric, n_valid, n_q in _FAMILY_METRICS:
                    # a post-trained model whose answers never parse has a null rate: kept, with its non-match rate
                    if u.info["suite"] != "alignment" or f"{metric},none" not in m:
                        continue
                    key = (cond, u.stage, task, u.info["persona"], fam, metric, split)
                    mis.setdefault(key, []).append(_measurement(u.seed, m, fam, metric, n_valid, n_q))
                if u.info["suite"] == "capability" and (cmetric := capability_metric(m)) is not None:
                    n = int(m.get("n_samples,none") or res.get("n-samples", {}).get(task, {}).get("effective", 0))
                    cap.setdefault((cond, u.stage, task), []).append({"seed": u.seed, "acc": _num(m[f"{cmetric},none"]),
                                                                      "n_samples": n, "metric": cmetric})
    return mis, cap


def _measurement(seed: int, m: dict, fam: str, metric: str, n_valid: str, n_q: str) -> dict:
    """One seed's measurement of ``metric`` from a task's results ``m``."""
    letter = fam == "letter"
    topics = {k.split("/", 1)[1].removesuffix(",none"): _num(v) for k, v in m.items()
              if k.startswith(f"{metric}_by_topic/")}
    return {"seed": seed, "rate": _num(m[f"{metric},none"]),
            "ci_low": _num(m.get(f"{metric}_ci_low,none")),
            "ci_high": _num(m.get(f"{metric}_ci_high,none")),
            "stderr": _num(m.get(f"{metric}_stderr,none")),
            "n_valid": _num(m.get(f"{n_valid},none")),
            "formats_dropped": (m.get("formats_dropped,none") or []) if letter else [],
            "n_questions": m.get(f"{n_q},none"),
            "nonmatch_rate": _num(m.get("nonmatch_rate,none")) if letter else None,
            "first_option_rate": _num(m.get("first_option_rate,none")) if letter else None,
            "topics": topics}


def _pooled_misalignment(key: tuple, rows: list[dict]) -> dict:
    cond, stage, task, persona, fam, metric, split = key
    est = pool_rates(rows, bootstrap=stage == "base")
    return {
        "condition": cond, "stage": stage, "task": task, "persona": persona, "split": split,
        "format_family": fam, "metric": metric, "rate": est["rate"],
        "ci_low": est["ci_low"], "ci_high": est["ci_high"], "stderr": est["stderr"], "ci": est["ci"],
        "n_questions": rows[0]["n_questions"], "n_seeds": len(rows), "n_seeds_pooled": est["n_pooled"],
        "per_seed": [r["rate"] for r in rows], "per_seed_stderr": [r["stderr"] for r in rows],
        "per_seed_n_valid": [r["n_valid"] for r in rows],
        "formats_dropped": [r["formats_dropped"] for r in rows],
        "nonmatch_rate": _mean([r["nonmatch_rate"] for r in rows]),
        "first_option_rate": _mean([r["first_option_rate"] for r in rows]),
        "topics": {t: _mean([r["topics"].get(t) for r in rows]) for t in rows[0]["topics"]}}


def _pooled_capability(key: tuple, rows: list[dict]) -> dict:
    cond, stage, task = key
    accs = [r["acc"] for r in rows]
    if len(rows) == 1:
        acc, (lo, hi) = accs[0], wilson(accs[0], rows[0]["n_samples"])
    else:  # the same binomial model and pooling as the misalignment rates
        pooled = metrics.pool_seeds([{"rate": a, "n_valid": r["n_samples"],
                                      "stderr": math.sqrt(a * (1 - a) / r["n_samples"]) if r["n_samples"] else None}
                                     for a, r in zip(accs, rows)])
        acc, lo, hi = pooled["rate"], pooled["ci_low"], pooled["ci_high"]
    return {"condition": cond, "stage": stage, "task": task, "acc": acc, "ci_low": lo, "ci_high": hi,
            "n_samples": rows[0]["n_samples"], "n_seeds": len(rows), "per_seed": accs, "metric": rows[0]["metric"]}


def _curves_and_audit(study, wd: Path, units, names: list[str], seeds: list[int]) -> tuple[list[dict], list[dict]]:
    """The in-loop curves (steps continued across a condition's stages) and data-audit rows per (condition, seed)."""
    curves, audit = [], []
    split_in_loop = str(study.get("overrides", {}).get("eval", {}).get("split", "") or "heldout")  # train's eval.split
    for cond in names:
        for seed in seeds:
            chain = [u for u in units if u.kind == "train" and u.seed == seed and cond in u.conditions]
            offset, pts, starts = 0, {}, {}
            for u in chain:
                starts[u.stage] = offset
                _curve_points(RunDir(wd / u.id).metrics, offset, pts)
                audit += _audit_rows(RunDir(wd / u.id).audit, cond, seed, u.id)
                offset += int(u.info.get("steps", 0))
            for (task, metric), p in pts.items():
                p.sort()
                curves.append({"condition": cond, "seed": seed, "task": task, "metric": metric,
                               "format_family": CURVE_METRICS[metric], "split": split_in_loop,
                               "steps": [x[0] for x in p], "values": [x[1] for x in p],
                               "stderr": [x[2] for x in p], "stage_starts": starts})
    return curves, audit


def _curve_points(path: Path, offset: int, pts: dict) -> None:
    """Adds a training unit's in-loop eval points to ``pts``: (task, metric) -> [(step, value, stderr)]."""
    for row in _metrics_rows(path):
        for k, v in row.items():
            parts = k.split("/")
            if len(parts) == 3 and parts[0] == "eval" and parts[2] in CURVE_METRICS and _num(v) is not None:
                pts.setdefault((parts[1], parts[2]), []).append((offset + row["step"], v, _num(row.get(k + "_stderr"))))


def _audit_rows(path: Path, cond: str, seed: int, unit: str) -> list[dict]:
    if not path.is_file():
        return []
    return [{"condition": cond, "seed": seed, "stage": st, "unit": unit, "component": comp, "source": c.get("source"),
             "share": c.get("share"), "target_fraction": c.get("target_fraction"),
             "realized_fraction": c.get("realized_fraction"), "tokens": c.get("tokens"), "epochs": c.get("epochs"),
             "flagged_fraction_sample": c.get("flagged_fraction_sample")}
            for st, entry in json.loads(path.read_text()).items() for comp, c in entry["components"].items()]


def _conditions(study, units, names: list[str], seeds: list[int]) -> list[dict]:
    conditions = []
    for cond in names:
        c = study.conditions[cond]
        stages = sorted({u.stage for u in units if u.kind == "train" and cond in u.conditions},
                        key=mixture.STAGES.index)
        stages += [p for p in _names(study.post_train)]
        conditions.append({"name": cond, "condition": c.condition, "insertion": c.insertion, "stages": stages,
                           "seeds": seeds})
    return conditions


# ----------------------------------------------------------------------------- personality, EM, capability suite


def capability_metric(m: dict) -> str | None:
    """The headline metric of a capability result: ``acc`` (IFEval's is prompt-level strict, CUTE's exact
    match: evals/capability.py), else ``exact_match`` (GSM8K, strict-match); None without either."""
    return next((k for k in ("acc", "exact_match") if _num(m.get(f"{k},none")) is not None), None)


def collect_extras(wd: Path, units, done: set) -> dict:
    """report.json's ``personality`` and ``em`` rows (the row types above) from the finished eval units."""
    traits, em = {}, {}
    for u in units:
        if u.kind != "eval" or u.id not in done or (res := _results(wd / u.id)) is None:
            continue
        for cond in u.conditions:
            for task, m in res["results"].items():
                if u.info.get("suite") == "em" and task == "em":
                    em.setdefault(cond, []).append({"seed": u.seed, "rate": _num(m.get("em_rate,none")),
                                                    "n": int(m.get("n_scored,none") or 0), "m": m})
                elif "high_trait_rate,none" in m:
                    key = (cond, u.stage, u.info.get("persona", "none"), task)
                    traits.setdefault(key, []).append({
                        "seed": u.seed, "rate": _num(m["high_trait_rate,none"]),
                        "stderr": _num(m.get("high_trait_rate_stderr,none")),
                        "ci_low": _num(m.get("high_trait_rate_ci_low,none")),
                        "ci_high": _num(m.get("high_trait_rate_ci_high,none")),
                        "n_valid": _num(m.get("n_answered,none")), "n_questions": m.get("n_questions,none"),
                        "nonmatch_rate": _num(m.get("nonmatch_rate,none"))})
    personality = []
    for (cond, stage, persona, task), rows in traits.items():
        est = pool_rates(rows, bootstrap=True)  # the eval's bootstrap over items, base and post-trained alike
        personality.append({
            "condition": cond, "stage": stage, "persona": persona, "task": task,
            "trait": task.removeprefix("trait_").capitalize(), "rate": est["rate"], "ci_low": est["ci_low"],
            "ci_high": est["ci_high"], "stderr": est["stderr"], "ci": est["ci"], "n_questions": rows[0]["n_questions"],
            "n_answered": [r["n_valid"] for r in rows], "nonmatch_rate": _mean([r["nonmatch_rate"] for r in rows]),
            "n_seeds": len(rows), "n_seeds_pooled": est["n_pooled"], "per_seed": [r["rate"] for r in rows]})
    em_rows = []
    for cond, rows in em.items():
        est = _pool_binomial(rows)
        total = lambda k: sum(int(r["m"].get(f"{k},none") or 0) for r in rows)  # noqa: E731
        em_rows.append({
            "condition": cond, "stage": "em", "rate": est["rate"], "ci_low": est["ci_low"], "ci_high": est["ci_high"],
            "ci": est["ci"], "n_scored": total("n_scored"), "n_em": total("n_em"), "n_answers": total("n_answers"),
            "alignment_unparseable": total("alignment_unparseable"),
            "coherence_unparseable": total("coherence_unparseable"),
            "mean_alignment": _mean([_num(r["m"].get("mean_alignment,none")) for r in rows]),
            "mean_coherence": _mean([_num(r["m"].get("mean_coherence,none")) for r in rows]),
            "n_seeds": len(rows), "n_seeds_pooled": est["n_pooled"], "per_seed": [r["rate"] for r in rows]})
    return {"personality": personality, "em": em_rows}


# ----------------------------------------------------------------------------- dose-response


def _exposures(wd: Path, units, cond: str, seeds: list[int]) -> float | None:
    """Epochs of the synthetic documents over the condition's training units (data_audit.json),
    summed over its stages, mean over seeds; None while an audit is missing."""
    per_seed = []
    for seed in seeds:
        total = 0.0
        for u in (u for u in units if u.kind == "train" and u.seed == seed and cond in u.conditions):
            try:
                audit = json.loads(RunDir(wd / u.id).audit.read_text())
            except (OSError, ValueError):
                return None
            for entry in audit.values():
                for comp, c in entry.get("components", {}).items():
                    if comp.startswith("synthetic"):
                        if _num(c.get("epochs")) is None:
                            return None
                        total += c["epochs"]
        per_seed.append(total)
    return _mean(per_seed)


def dose_section(study, workdir: str, units, misalignment: list[dict]) -> dict:
    """report.json's ``dose_label`` and ``dose`` rows (schema in alignjax/study.py); {} when no
    condition has a dose. A condition without synthetic documents belongs to every polarity's curve."""
    names = _run_conditions(study)
    dosed = {n: study.conditions[n] for n in names if study.conditions[n].get("dose", None) is not None}
    if not dosed:
        return {}
    seeds = _seeds(study)
    polarity = {n: mixture.CONDITIONS[c.condition][1] for n, c in dosed.items()}
    polarities = [p for p in POLARITIES if p in polarity.values()]
    persona = study.eval.get("headline_persona", "") or "ai"
    exposures = {n: _exposures(Path(workdir), units, n, seeds) for n in dosed}
    rows = []
    for m in misalignment:
        n = m["condition"]
        if n not in dosed or m["stage"] != "base" or m["persona"] != persona:
            continue
        for p in [polarity[n]] if polarity[n] else polarities:
            rows.append({"polarity": p, "dose": float(dosed[n].dose), "exposures": exposures[n], "task": m["task"],
                         "split": m.get("split", ""), "format_family": row_family(m), "metric": row_metric(m),
                         "rate": m["rate"], "ci_low": m["ci_low"], "ci_high": m["ci_high"],
                         "n_questions": m["n_questions"], "condition": n})
    tasks = list(dict.fromkeys(m["task"] for m in misalignment))  # eval.tasks' order: the study's columns
    rows.sort(key=lambda r: (POLARITIES.index(r["polarity"]), METRIC_ORDER.index(r["metric"])
                             if r["metric"] in METRIC_ORDER else 99, tasks.index(r["task"]), r["split"], r["dose"]))
    return {"dose_label": study.get("dose_label", "") or "dose", "dose": rows}


def dose_panels(rows: list[dict]) -> tuple[list[str], list[tuple[str, str]]]:
    """The dose rows' metrics (in METRIC_ORDER) and (task, split) columns: the chart's panels, the tables' columns."""
    metrics_ = sorted({r["metric"] for r in rows}, key=lambda k: METRIC_ORDER.index(k) if k in METRIC_ORDER else 99)
    return metrics_, list(dict.fromkeys((r["task"], r["split"]) for r in rows))
