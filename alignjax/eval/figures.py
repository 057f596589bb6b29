"""A study's report: results of its units collected into report.json (schema in
alignjax/study.py), report.md and the figures in the style of the study's paper:

- ``fig2_misalignment.png``: misalignment rate by condition, base vs post-trained side by side,
  95% CI error bars, chance line at 0.5 (Fig. 2 / Fig. 4 of Tice et al. 2026);
- ``fig4_misalignment_over_training.png``: the in-loop misalignment rate over training steps per
  condition (``train.eval_every`` + ``eval.tasks``), ± SEM across formats;
- ``fig5_breakdown.png``: per eval suite (task) and persona, every condition (Fig. 5).
"""

from __future__ import annotations

import datetime
import io
import json
import math
from pathlib import Path

import numpy as np

from alignjax.eval.report import atomic_write, latest_results

CI_MISALIGNMENT_ONE = "bootstrap over questions (1000 resamples, percentile), rate = mean over prompt formats"
CI_CAPABILITY_ONE = "Wilson score interval over samples"
CI_SEEDS = "Student-t interval of the mean across seeds"
COLORS = {"base": "#4C72B0", "sft": "#DD8452", "dpo": "#55A868"}


# ----------------------------------------------------------------------------- intervals


def wilson(p: float, n: int, z: float = 1.959964) -> tuple[float, float]:
    """95% Wilson score interval of a proportion ``p`` over ``n`` samples."""
    if n <= 0:
        return math.nan, math.nan
    d = 1 + z * z / n
    c = (p + z * z / (2 * n)) / d
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return max(0.0, c - h), min(1.0, c + h)


def t_interval(values: list[float], level: float = 0.95) -> tuple[float, float, float]:
    """(mean, low, high): Student-t interval of the mean of ``values`` (>= 2 of them)."""
    from scipy import stats

    x = np.asarray(values, float)
    m, se = float(x.mean()), float(x.std(ddof=1) / math.sqrt(len(x)))
    h = float(stats.t.ppf(0.5 + level / 2, len(x) - 1)) * se
    return m, m - h, m + h


def _num(v):
    return None if v is None or (isinstance(v, float) and not math.isfinite(v)) else float(v)


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


def collect(study, workdir: str, units) -> dict:
    from alignjax import study as study_lib

    wd = Path(workdir)
    names = study_lib._csv(study.run) if study.run else list(study.conditions.keys())
    seeds = [int(x) for x in study_lib._csv(study.seeds)]
    by_id = {u.id: u for u in units}
    unit_rows = []
    for u in units:
        marker = wd / u.id / "unit.json"
        status = study_lib.unit_status(workdir, u)
        seconds = json.loads(marker.read_text()).get("seconds") if status == "done" else None
        unit_rows.append({"id": u.id, "kind": u.kind, "status": {"started": "failed"}.get(status, status),
                          "seconds": seconds, "command": u.display(workdir), "dir": str(wd / u.id),
                          "log": str(wd / u.id / "unit.log"), "conditions": list(u.conditions), "seed": u.seed,
                          "stage": u.stage})
    done = {r["id"] for r in unit_rows if r["status"] == "done"}

    mis, cap = {}, {}
    for u in units:
        if u.kind != "eval" or u.id not in done:
            continue
        res = _results(wd / u.id)
        if res is None:
            continue
        for cond in u.conditions:
            for task, m in res["results"].items():
                # a post-trained model whose answers never parse has a null rate: kept, with its non-match rate
                if u.info["suite"] == "alignment" and "misalignment_rate,none" in m:
                    key = (cond, u.stage, task, u.info["persona"])
                    topics = {k.split("/", 1)[1].removesuffix(",none"): _num(v) for k, v in m.items()
                              if k.startswith("misalignment_rate_by_topic/")}
                    mis.setdefault(key, []).append({
                        "seed": u.seed, "rate": _num(m["misalignment_rate,none"]),
                        "ci_low": _num(m.get("misalignment_rate_ci_low,none")),
                        "ci_high": _num(m.get("misalignment_rate_ci_high,none")),
                        "stderr": _num(m.get("misalignment_rate_stderr,none")),
                        "n_questions": m.get("n_questions,none"), "nonmatch_rate": _num(m.get("nonmatch_rate,none")),
                        "first_option_rate": _num(m.get("first_option_rate,none")), "topics": topics})
                elif u.info["suite"] == "capability" and _num(m.get("acc,none")) is not None:
                    n = int(m.get("n_samples,none") or res.get("n-samples", {}).get(task, {}).get("effective", 0))
                    cap.setdefault((cond, u.stage, task), []).append({"seed": u.seed, "acc": _num(m["acc,none"]),
                                                                      "n_samples": n})
    misalignment = []
    for (cond, stage, task, persona), rows in mis.items():
        rates = [r["rate"] for r in rows]
        known = [x for x in rates if x is not None]
        if len(rows) == 1:
            r = rows[0]
            rate, lo, hi = r["rate"], r["ci_low"], r["ci_high"]
        elif len(known) > 1:
            rate, lo, hi = t_interval(known)
        else:
            rate, lo, hi = (known[0] if known else None), None, None
        misalignment.append({
            "condition": cond, "stage": stage, "task": task, "persona": persona, "rate": rate, "ci_low": lo,
            "ci_high": hi,
            "stderr": rows[0]["stderr"] if len(rows) == 1 else (
                float(np.std(known, ddof=1) / math.sqrt(len(known))) if len(known) > 1 else None),
            "n_questions": rows[0]["n_questions"], "n_seeds": len(rows), "per_seed": rates,
            "nonmatch_rate": _mean([r["nonmatch_rate"] for r in rows]),
            "first_option_rate": _mean([r["first_option_rate"] for r in rows]),
            "topics": {t: _mean([r["topics"].get(t) for r in rows]) for t in rows[0]["topics"]}})
    capability = []
    for (cond, stage, task), rows in cap.items():
        accs = [r["acc"] for r in rows]
        if len(rows) == 1:
            acc, (lo, hi) = accs[0], wilson(accs[0], rows[0]["n_samples"])
        else:
            acc, lo, hi = t_interval(accs)
        capability.append({"condition": cond, "stage": stage, "task": task, "acc": acc, "ci_low": lo, "ci_high": hi,
                           "n_samples": rows[0]["n_samples"], "n_seeds": len(rows), "per_seed": accs})

    curves, audit = [], []
    for cond in names:
        for seed in seeds:
            chain = [u for u in units if u.kind == "train" and u.seed == seed and cond in u.conditions]
            offset, pts, starts = 0, {}, {}
            for u in chain:
                starts[u.stage] = offset
                for row in _metrics_rows(wd / u.id / "metrics.jsonl"):
                    for k, v in row.items():
                        if k.startswith("eval/") and k.endswith("/misalignment_rate") and _num(v) is not None:
                            task = k.split("/")[1]
                            pts.setdefault(task, []).append((offset + row["step"], v,
                                                             _num(row.get(k + "_stderr"))))
                audit_file = wd / u.id / "data_audit.json"
                if audit_file.is_file():
                    for st, entry in json.loads(audit_file.read_text()).items():
                        for comp, c in entry["components"].items():
                            audit.append({"condition": cond, "seed": seed, "stage": st, "unit": u.id,
                                          "component": comp, "source": c.get("source"),
                                          "target_fraction": c.get("target_fraction"),
                                          "realized_fraction": c.get("realized_fraction"), "tokens": c.get("tokens"),
                                          "flagged_fraction_sample": c.get("flagged_fraction_sample")})
                offset += int(u.info.get("steps", 0))
            for task, p in pts.items():
                p.sort()
                curves.append({"condition": cond, "seed": seed, "task": task, "metric": "misalignment_rate",
                               "steps": [x[0] for x in p], "values": [x[1] for x in p],
                               "stderr": [x[2] for x in p], "stage_starts": starts})
    conditions = []
    for cond in names:
        c = study.conditions[cond]
        stages = sorted({u.stage for u in units if u.kind == "train" and cond in u.conditions},
                        key=study_lib.STAGES.index)
        stages += [p for p in study_lib._csv(study.post_train)]
        conditions.append({"name": cond, "condition": c.condition, "insertion": c.insertion, "stages": stages,
                           "seeds": seeds})
    del by_id
    return {
        "schema": "alignjax.study/1", "study": study.get("name", ""), "workdir": str(wd),
        "created": datetime.datetime.now().isoformat(timespec="seconds"),
        "ci_method": {"misalignment": CI_MISALIGNMENT_ONE if len(seeds) == 1 else CI_SEEDS,
                      "capability": CI_CAPABILITY_ONE if len(seeds) == 1 else CI_SEEDS, "level": 0.95},
        "config": study.to_dict(), "conditions": conditions, "units": unit_rows, "misalignment": misalignment,
        "capability": capability, "curves": curves, "data_audit": audit, "figures": {},
    }


def _mean(xs):
    xs = [x for x in xs if x is not None]
    return float(np.mean(xs)) if xs else None


# ----------------------------------------------------------------------------- figures


def _figure(w: float, h: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(w, h), dpi=120)
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path: Path) -> str:
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    atomic_write(path, buf.getvalue())
    return path.name


def _bars(ax, groups: list[str], series: dict[str, list], colors=None):
    """Grouped bars with asymmetric CI error bars; ``series``: label -> [(rate, lo, hi) | None]."""
    n = max(len(series), 1)
    width = 0.8 / n
    for k, (label, pts) in enumerate(series.items()):
        xs = np.arange(len(groups)) + (k - (n - 1) / 2) * width
        pts = [p if p and p[0] is not None else None for p in pts]  # no rate (e.g. nothing parsed): no bar
        vals = np.array([100 * p[0] if p else np.nan for p in pts])
        lo = np.array([100 * (p[0] - p[1]) if p and p[1] is not None else 0.0 for p in pts])
        hi = np.array([100 * (p[2] - p[0]) if p and p[2] is not None else 0.0 for p in pts])
        ax.bar(xs, vals, width * 0.9, yerr=[lo, hi], capsize=3, label=label,
               color=(colors or {}).get(label), ecolor="black", error_kw={"linewidth": 1})
        for x, v, h in zip(xs, vals, hi):
            if not np.isnan(v):
                ax.text(x, v + h + 1, f"{v:.0f}", ha="center", va="bottom", fontsize=7)
    ax.axhline(50, color="grey", linestyle="--", linewidth=1, label="chance (0.5)")
    ax.set_xticks(range(len(groups)), groups, rotation=20 if len(groups) > 3 else 0,
                  ha="right" if len(groups) > 3 else "center", fontsize=8)
    ax.set_ylim(0, 105)
    ax.grid(axis="y", alpha=0.3)


def _primary(data: dict, study) -> tuple[str | None, str | None]:
    from alignjax import study as study_lib

    tasks = [t for t in study_lib._csv(study.eval.tasks)]
    personas = study_lib._csv(study.eval.personas)
    have = {(m["task"], m["persona"]) for m in data["misalignment"]}
    for p in personas:
        for t in sorted({t for t, _ in have}, key=lambda t: (t not in tasks, t)):
            if (t, p) in have:
                return t, p
    return None, None


def plot_fig2(data: dict, study, path: Path) -> str | None:
    task, persona = _primary(data, study)
    if task is None:
        return None
    conds = [c["name"] for c in data["conditions"]]
    stages = [s for s in ("base", "sft", "dpo") if any(m["stage"] == s for m in data["misalignment"])]
    idx = {(m["condition"], m["stage"]): m for m in data["misalignment"] if m["task"] == task and m["persona"] == persona}
    series = {s: [(idx[(c, s)]["rate"], idx[(c, s)]["ci_low"], idx[(c, s)]["ci_high"]) if (c, s) in idx else None
                  for c in conds] for s in stages}
    fig = _figure(max(6.0, 1.2 + 1.1 * len(conds) * max(1, len(stages)) ** 0.5), 4.5)
    ax = fig.add_subplot()
    _bars(ax, conds, {("base model" if s == "base" else f"after {s.upper()}"): v for s, v in series.items()},
          {"base model": COLORS["base"], "after SFT": COLORS["sft"], "after DPO": COLORS["dpo"]})
    ax.set_xlabel("Pretraining data condition")
    ax.set_ylabel("Misalignment rate (%)")
    ax.set_title(f"{task}, persona {persona!r} (95% CI)", fontsize=9)
    ax.legend(fontsize=7, loc="upper right")
    return _save(fig, path)


def plot_fig4(data: dict, path: Path) -> str | None:
    if not data["curves"]:
        return None
    fig = _figure(7.0, 4.5)
    ax = fig.add_subplot()
    tasks = sorted({c["task"] for c in data["curves"]})
    task = tasks[0]
    by_cond = {}
    for c in data["curves"]:
        if c["task"] == task:
            by_cond.setdefault(c["condition"], []).append(c)
    starts = {}
    for cond, curves in by_cond.items():
        steps = sorted(set.intersection(*(set(c["steps"]) for c in curves)))
        vals = np.array([[dict(zip(c["steps"], c["values"]))[s] for s in steps] for c in curves]) * 100
        if len(curves) > 1:  # spread across seeds
            mean, err = vals.mean(0), vals.std(0, ddof=1) / math.sqrt(len(curves))
        else:
            sem = dict(zip(curves[0]["steps"], curves[0]["stderr"]))
            mean, err = vals[0], np.array([100 * (sem[s] or 0.0) for s in steps])
        line, = ax.plot(steps, mean, marker="o", markersize=3, label=cond)
        ax.fill_between(steps, mean - err, mean + err, color=line.get_color(), alpha=0.15)
        for st, s in curves[0]["stage_starts"].items():
            if s > 0:
                starts[st] = s
    for st, s in starts.items():
        ax.axvline(s, color="black", linestyle=":", linewidth=0.8)
        ax.text(s, 102, f" {st}", fontsize=7, va="top")
    ax.axhline(50, color="grey", linestyle="--", linewidth=1, label="chance (0.5)")
    ax.set_ylim(0, 105)
    ax.set_xlabel("Training step")
    ax.set_ylabel("Misalignment rate (%)")
    ax.set_title(f"In-loop {task} misalignment (shaded: ± SEM)", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return _save(fig, path)


def plot_fig5(data: dict, path: Path) -> str | None:
    if not data["misalignment"]:
        return None
    tasks = sorted({m["task"] for m in data["misalignment"]})
    stages = [s for s in ("base", "sft", "dpo") if any(m["stage"] == s for m in data["misalignment"])]
    conds = [c["name"] for c in data["conditions"]]
    personas = [p for p in dict.fromkeys(m["persona"] for m in data["misalignment"])]
    fig = _figure(max(6.0, 1.5 + 0.5 * len(personas) * len(conds)) * len(tasks) ** 0.5 + 1, 3.2 * len(stages) + 0.6)
    idx = {(m["condition"], m["stage"], m["task"], m["persona"]): m for m in data["misalignment"]}
    for i, stage in enumerate(stages):
        for j, task in enumerate(tasks):
            ax = fig.add_subplot(len(stages), len(tasks), i * len(tasks) + j + 1)
            series = {c: [(idx[k]["rate"], idx[k]["ci_low"], idx[k]["ci_high"]) if (k := (c, stage, task, p)) in idx
                          else None for p in personas] for c in conds}
            _bars(ax, [f"persona: {p}" for p in personas], series)
            ax.set_title(f"{task} - {stage}", fontsize=8)
            ax.set_xlabel("System prompt (persona)", fontsize=8)
            ax.set_ylabel("Misalignment rate (%)", fontsize=8)
            if i == 0 and j == len(tasks) - 1:
                ax.legend(fontsize=6, loc="upper right")
    return _save(fig, path)


# ----------------------------------------------------------------------------- report


def _pct(v, lo=None, hi=None) -> str:
    if v is None:
        return "–"
    return f"{100 * v:.1f}%" + (f" [{100 * lo:.1f}, {100 * hi:.1f}]" if lo is not None and hi is not None else "")


def _cell(m: dict | None) -> str:
    if m is None:
        return "–"
    nonmatch = m.get("nonmatch_rate")
    extra = f" (non-match {100 * nonmatch:.0f}%)" if nonmatch else ""
    return _pct(m["rate"], m["ci_low"], m["ci_high"]) + extra


def markdown(data: dict, study) -> str:
    conds = [c["name"] for c in data["conditions"]]
    md = [f"# Study report: {data['study']}", "", f"Workdir: `{data['workdir']}`; written {data['created']}.", ""]
    md += ["## Design", "", "| condition | data.condition | insertion | stages | seeds |", "|---|---|---|---|---|"]
    md += [f"| {c['name']} | {c['condition']} | {c['insertion']} | {' -> '.join(c['stages'])} | "
           f"{', '.join(map(str, c['seeds']))} |" for c in data["conditions"]]
    n_done = sum(u["status"] == "done" for u in data["units"])
    secs = sum(u["seconds"] or 0 for u in data["units"])
    md += ["", f"Units: {n_done} of {len(data['units'])} done ({secs / 60:.1f} min of unit time recorded).", ""]

    md += ["## Misalignment rate by condition", "",
           f"Rate with 95% CI: {data['ci_method']['misalignment']}. Chance is 50% (two options).", ""]
    keys = sorted({(m["task"], m["persona"], m["stage"]) for m in data["misalignment"]},
                  key=lambda k: (k[0], k[1], ("base", "sft", "dpo").index(k[2]) if k[2] in ("base", "sft", "dpo") else 9))
    idx = {(m["condition"], m["task"], m["persona"], m["stage"]): m for m in data["misalignment"]}
    if keys:
        md += ["| task | persona | stage | " + " | ".join(conds) + " |", "|---|---|---|" + "---|" * len(conds)]
        for t, p, s in keys:
            cells = [_cell(idx.get((c, t, p, s))) for c in conds]
            md.append(f"| {t} | {p} | {s} | " + " | ".join(cells) + " |")
        pos = [m["first_option_rate"] for m in data["misalignment"] if m["first_option_rate"] is not None]
        if pos:
            md += ["", f"Position bias (share of first-option picks), over all rows: {100 * min(pos):.1f}% to "
                       f"{100 * max(pos):.1f}% (50% = none)."]
            if max(abs(p - 0.5) for p in pos) >= 0.45:
                md += ["A model that (nearly) always picks the same position scores about 50% whatever it "
                       "prefers, because every question is asked in both answer orders: such rows measure "
                       "position bias, not alignment."]
    else:
        md.append("No misalignment results yet.")
    md += [""]
    md += ["## Capability", "", f"Accuracy with 95% CI: {data['ci_method']['capability']}.", ""]
    ckeys = sorted({(m["task"], m["stage"]) for m in data["capability"]})
    cidx = {(m["condition"], m["task"], m["stage"]): m for m in data["capability"]}
    if ckeys:
        md += ["| task | stage | n | " + " | ".join(conds) + " |", "|---|---|---|" + "---|" * len(conds)]
        for t, s in ckeys:
            n = next(m["n_samples"] for m in data["capability"] if m["task"] == t and m["stage"] == s)
            cells = [(_pct(m["acc"], m["ci_low"], m["ci_high"]) if (m := cidx.get((c, t, s))) else "–") for c in conds]
            md.append(f"| {t} | {s} | {n} | " + " | ".join(cells) + " |")
    else:
        md.append("No capability results yet.")
    md += ["", "## Data audit", "",
           "Token share of each component as trained (realized) vs the target, and the share of corpus documents "
           "the blocklist flags in a 64-document sample taken before training (flagged documents are dropped in "
           "the filtered conditions).", "",
           "| condition | seed | stage | component | source | target | realized | tokens | flagged (sample) |",
           "|---|---|---|---|---|---|---|---|---|"]
    for a in data["data_audit"]:
        md.append(f"| {a['condition']} | {a['seed']} | {a['stage']} | {a['component']} | {a['source']} | "
                  f"{_pct(a['target_fraction'])} | {_pct(a['realized_fraction'])} | {a['tokens']:,} | "
                  f"{_pct(a['flagged_fraction_sample']) if a['flagged_fraction_sample'] is not None else ''} |")
    md += ["", "## Figures", ""]
    titles = {"misalignment": "Misalignment by condition (Fig. 2 style)",
              "curves": "Misalignment over training (Fig. 4 style)", "breakdown": "By suite and persona (Fig. 5 style)"}
    for k, f in data["figures"].items():
        md += [f"### {titles[k]}", "", f"![{k}]({f})", ""]
    md += ["## Units", "", "| unit | status | seconds | log |", "|---|---|---|---|"]
    md += [f"| {u['id']} | {u['status']} | {u['seconds'] if u['seconds'] is not None else ''} | `{u['log']}` |"
           for u in data["units"]]
    md += ["", "Commands: `study.log` (and the first line of each unit's `unit.log`)."]
    return "\n".join(md) + "\n"


def write_report(study, workdir: str, units) -> dict:
    """Collect, plot and write report.json / report.md / the PNGs into ``workdir``."""
    wd = Path(workdir)
    data = collect(study, workdir, units)
    figs = {"misalignment": plot_fig2(data, study, wd / "fig2_misalignment.png"),
            "curves": plot_fig4(data, wd / "fig4_misalignment_over_training.png"),
            "breakdown": plot_fig5(data, wd / "fig5_breakdown.png")}
    data["figures"] = {k: v for k, v in figs.items() if v}
    atomic_write(wd / "report.json", json.dumps(data, indent=1, default=str) + "\n")
    atomic_write(wd / "report.md", markdown(data, study))
    return {"json": str(wd / "report.json"), "markdown": str(wd / "report.md"), "data": data}
