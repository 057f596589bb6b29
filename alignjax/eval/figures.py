"""A study's figures in the style of the study's paper, and ``write_report``: the results collected
(alignjax/eval/study_results.py) into report.json, report.md (alignjax/eval/study_markdown.py) and
these PNGs:

- ``fig2_misalignment.png``: the headline (``eval.headline``, default the Articles and Textbook
  discourse tasks, persona ``eval.headline_persona`` = ai): one panel per headline task side by
  side, misalignment rate by condition, base vs post-trained, 95% CI error bars, chance line at
  0.5 (Fig. 2 of Tice et al. 2026: Articles left, Textbook right);
- ``fig4_misalignment_over_training.png``: the in-loop misalignment rate over training steps per
  condition (``train.eval_every`` + ``eval.tasks``), ± its binomial SE;
- ``fig5_breakdown.png``: per eval suite (task) and persona, every condition (Fig. 5);
- ``fig_dose.png``, ``fig_personality.png``, ``fig_em.png``: dose-response, TRAIT and EM, when measured.
"""

from __future__ import annotations

import io
import json
import math
from pathlib import Path
from typing import Any, Callable

import numpy as np

from alignjax.eval.report import atomic_write
from alignjax.eval.study_markdown import markdown
from alignjax.eval.study_results import (CURVE_METRICS, POLARITIES, STAGE_ORDER, TRAIT_ORDER, collect, dose_panels,
                                         headline, row_family, row_metric)

COLORS = {"base": "#4C72B0", "sft": "#DD8452", "dpo": "#55A868"}
POLARITY_COLORS = dict(zip(POLARITIES, ("#C44E52", "#4C72B0")))


# The figures' rows per format family: the letter family's rate (the study's, the headline) and the
# text family's acc (lm-eval's primary multiple-choice score); report.md tables show all three text scores.
FIGURE_METRIC = {"letter": "misalignment_rate", "text": "text_misalignment_rate_acc"}


def _figure_rows(data: dict) -> dict[str, list[dict]]:
    """Family -> its misalignment rows drawn in the figures (never mixed in one panel)."""
    out = {}
    for fam, metric in FIGURE_METRIC.items():
        rows = [m for m in data["misalignment"] if row_family(m) == fam and row_metric(m) == metric]
        if rows:
            out[fam] = rows
    return out


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


def _family_title(fam: str) -> str:
    return "letter formats" if fam == "letter" else "text formats, acc"


def plot_fig2(data: dict, study, path: Path) -> str | None:
    """The headline tasks side by side; one row of panels per format family (letter on top, the
    study's; text below when measured), never the two in one panel."""
    tasks, persona = headline(study)
    fams = _figure_rows(data)
    have = {(m["task"], m["persona"]) for rows in fams.values() for m in rows}
    tasks = [t for t in tasks if (t, persona) in have]
    if not tasks:
        return None
    conds = [c["name"] for c in data["conditions"]]
    stages = [s for s in ("base", "sft", "dpo") if any(m["stage"] == s for m in data["misalignment"])]
    w = max(6.0, 1.2 + 1.1 * len(conds) * max(1, len(stages)) ** 0.5)
    fig = _figure(w * len(tasks), 4.5 * len(fams))
    labels = {"base": "base model", "sft": "after SFT", "dpo": "after DPO"}
    for i, (fam, rows) in enumerate(fams.items()):
        for j, task in enumerate(tasks):
            idx = {(m["condition"], m["stage"]): m for m in rows if m["task"] == task and m["persona"] == persona}
            series = {labels[s]: [(idx[(c, s)]["rate"], idx[(c, s)]["ci_low"], idx[(c, s)]["ci_high"])
                                  if (c, s) in idx else None for c in conds] for s in stages}
            ax = fig.add_subplot(len(fams), len(tasks), i * len(tasks) + j + 1)
            _bars(ax, conds, series, {labels[k]: COLORS[k] for k in COLORS})
            ax.set_xlabel("Pretraining data condition")
            ax.set_ylabel("Misalignment rate (%)")
            title = f"{task}, persona {persona!r} (95% CI)"
            ax.set_title(title if len(fams) == 1 and fam == "letter" else f"{title}\n{_family_title(fam)}", fontsize=9)
            ax.legend(fontsize=7, loc="upper right")
    return _save(fig, path)


def plot_fig4(data: dict, path: Path) -> str | None:
    """One panel per in-loop metric (the letter family's rate; the text family's acc beside it)."""
    metrics_ = [k for k in CURVE_METRICS if any(c.get("metric", "misalignment_rate") == k for c in data["curves"])]
    if not metrics_:
        return None
    fig = _figure(7.0 * len(metrics_), 4.5)
    for n, metric in enumerate(metrics_):
        curves = [c for c in data["curves"] if c.get("metric", "misalignment_rate") == metric]
        _curve_panel(fig.add_subplot(1, len(metrics_), n + 1), curves,
                     "" if len(metrics_) == 1 else f" ({_family_title(CURVE_METRICS[metric])})")
    return _save(fig, path)


def _curve_panel(ax, curves: list[dict], family_note: str) -> None:
    tasks = sorted({c["task"] for c in curves})
    task = tasks[0]
    by_cond = {}
    for c in curves:
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
    ax.set_title(f"In-loop {task} misalignment{family_note} (shaded: ± binomial SE; across seeds ± SEM)", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)


def plot_fig5(data: dict, path: Path) -> str | None:
    """Per task (columns) and stage x format family (rows), every condition by persona."""
    fams = _figure_rows(data)
    if not fams:
        return None
    tasks = sorted({m["task"] for m in data["misalignment"]})
    stages = [s for s in ("base", "sft", "dpo") if any(m["stage"] == s for m in data["misalignment"])]
    panel_rows = [(st, fam) for st in stages for fam in fams if any(m["stage"] == st for m in fams[fam])]
    conds = [c["name"] for c in data["conditions"]]
    personas = [p for p in dict.fromkeys(m["persona"] for m in data["misalignment"])]
    fig = _figure(max(6.0, 1.5 + 0.5 * len(personas) * len(conds)) * len(tasks) ** 0.5 + 1,
                  3.2 * len(panel_rows) + 0.6)
    for i, (stage, fam) in enumerate(panel_rows):
        idx = {(m["condition"], m["stage"], m["task"], m["persona"]): m for m in fams[fam]}
        for j, task in enumerate(tasks):
            ax = fig.add_subplot(len(panel_rows), len(tasks), i * len(tasks) + j + 1)
            series = {c: [(idx[k]["rate"], idx[k]["ci_low"], idx[k]["ci_high"]) if (k := (c, stage, task, p)) in idx
                          else None for p in personas] for c in conds}
            _bars(ax, [f"persona: {p}" for p in personas], series)
            ax.set_title(f"{task} - {stage}" + ("" if len(fams) == 1 else f" - {_family_title(fam)}"), fontsize=8)
            ax.set_xlabel("System prompt (persona)", fontsize=8)
            ax.set_ylabel("Misalignment rate (%)", fontsize=8)
            if i == 0 and j == len(tasks) - 1:
                ax.legend(fontsize=6, loc="upper right")
    return _save(fig, path)


def write_report(study, workdir: str, units, unit_status: Callable[[str, Any], str]) -> dict:
    """Collect, plot and write report.json / report.md / the PNGs into ``workdir``."""
    wd = Path(workdir)
    data = collect(study, workdir, units, unit_status)
    figs = {"misalignment": plot_fig2(data, study, wd / "fig2_misalignment.png"),
            "curves": plot_fig4(data, wd / "fig4_misalignment_over_training.png"),
            "breakdown": plot_fig5(data, wd / "fig5_breakdown.png"),
            "dose": plot_dose(data, wd / "fig_dose.png"),
            "personality": plot_traits(data, wd / "fig_personality.png"), "em": plot_em(data, wd / "fig_em.png")}
    data["figures"] = {k: v for k, v in figs.items() if v}
    atomic_write(wd / "report.json", json.dumps(data, indent=1, default=str) + "\n")
    atomic_write(wd / "report.md", markdown(data, study))
    return {"json": str(wd / "report.json"), "markdown": str(wd / "report.md"), "data": data}


# ----------------------------------------------------------------------------- dose-response


def _metric_title(metric: str) -> str:
    return "letter formats" if metric == "misalignment_rate" else f"text formats, {metric.rsplit('rate_', 1)[-1]}"


def plot_dose(data: dict, path: Path) -> str | None:
    """Misalignment rate vs dose, 95% CI error bars, one line per polarity; a row of panels per
    format family metric, a column per task/split; chance at 0.5."""
    rows = data.get("dose") or []
    if not rows:
        return None
    metrics_, cols = dose_panels(rows)
    fig = _figure(5.0 * len(cols), 3.6 * len(metrics_))
    for i, metric in enumerate(metrics_):
        for j, (task, split) in enumerate(cols):
            ax = fig.add_subplot(len(metrics_), len(cols), i * len(cols) + j + 1)
            for pol, color in POLARITY_COLORS.items():
                pts = sorted((r["dose"], r) for r in rows if r["polarity"] == pol and r["metric"] == metric
                             and (r["task"], r["split"]) == (task, split) and r["rate"] is not None)
                if not pts:
                    continue
                x = [d for d, _ in pts]
                y = np.array([100 * r["rate"] for _, r in pts])
                lo = np.array([100 * r["ci_low"] if r["ci_low"] is not None else v for (_, r), v in zip(pts, y)])
                hi = np.array([100 * r["ci_high"] if r["ci_high"] is not None else v for (_, r), v in zip(pts, y)])
                ax.errorbar(x, y, yerr=[np.maximum(y - lo, 0), np.maximum(hi - y, 0)], marker="o", markersize=4,
                            capsize=3, color=color, label=f"{pol} documents")
            ax.axhline(50, color="grey", linestyle="--", linewidth=1, label="chance (0.5)")
            ax.set_xticks(sorted({r["dose"] for r in rows}))
            ax.set_ylim(0, 105)
            ax.set_xlabel(data.get("dose_label", "dose"), fontsize=8)
            ax.set_ylabel("Misalignment rate (%)", fontsize=8)
            ax.set_title(f"{task} ({split or '–'}) - {_metric_title(metric)} (95% CI)", fontsize=8)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=6, loc="upper left")
    return _save(fig, path)


# ----------------------------------------------------------------------------- personality, EM


def plot_traits(data: dict, path: Path) -> str | None:
    """High-trait rate by trait (groups) and condition (bars), one panel per (stage, persona)."""
    rows = data.get("personality") or []
    if not rows:
        return None
    panels = sorted({(m["stage"], m["persona"]) for m in rows}, key=lambda k: (STAGE_ORDER.get(k[0], 9), k[1]))
    tasks = sorted({m["task"] for m in rows}, key=lambda t: (TRAIT_ORDER.index(t) if t in TRAIT_ORDER else 99, t))
    names = {m["task"]: m["trait"] for m in rows}
    conds = [c["name"] for c in data["conditions"]]
    fig = _figure(max(6.0, 1.5 + 0.35 * len(tasks) * len(conds)), 3.6 * len(panels))
    for i, (stage, persona) in enumerate(panels):
        idx = {(m["condition"], m["task"]): m for m in rows if m["stage"] == stage and m["persona"] == persona}
        series = {c: [(idx[(c, t)]["rate"], idx[(c, t)]["ci_low"], idx[(c, t)]["ci_high"]) if (c, t) in idx else None
                      for t in tasks] for c in conds}
        ax = fig.add_subplot(len(panels), 1, i + 1)
        _bars(ax, [names[t] for t in tasks], series)
        ax.set_ylabel("High-trait rate (%)")
        ax.set_title(f"TRAIT, {stage}, persona {persona!r} (95% CI; dashed: no lean)", fontsize=9)
        ax.legend(fontsize=6, loc="upper right")
    return _save(fig, path)


def plot_em(data: dict, path: Path) -> str | None:
    """EM rate by condition with its 95% CI."""
    rows = data.get("em") or []
    if not rows:
        return None
    by = {m["condition"]: m for m in rows}
    conds = [c["name"] for c in data["conditions"] if c["name"] in by]
    fig = _figure(max(5.0, 1.5 + 1.0 * len(conds)), 4.0)
    ax = fig.add_subplot(1, 1, 1)
    vals = np.array([100 * by[c]["rate"] if by[c]["rate"] is not None else np.nan for c in conds])
    err = [[100 * (by[c]["rate"] - by[c]["ci_low"]) if by[c]["ci_low"] is not None else 0.0 for c in conds],
           [100 * (by[c]["ci_high"] - by[c]["rate"]) if by[c]["ci_high"] is not None else 0.0 for c in conds]]
    ax.bar(range(len(conds)), vals, 0.6, yerr=err, capsize=3, color=COLORS["sft"], ecolor="black")
    for x, v, h in zip(range(len(conds)), vals, err[1]):
        if not np.isnan(v):
            ax.text(x, v + h + 1, f"{v:.0f}", ha="center", va="bottom", fontsize=7)
    ax.set_xticks(range(len(conds)), conds, rotation=20 if len(conds) > 3 else 0,
                  ha="right" if len(conds) > 3 else "center", fontsize=8)
    ax.set_ylim(0, 105)
    ax.set_ylabel("EM rate (%)")
    ax.set_xlabel("Pretraining data condition")
    ax.set_title("Emergent misalignment after the narrow harmful fine-tune (95% CI)", fontsize=9)
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, path)
