"""Result files in lm-eval-harness's layout, the misalignment bar chart, and run comparison.

``results_<timestamp>.json`` and ``samples_<task>_<timestamp>.jsonl`` follow lm-eval 0.4
(``results[task]["<metric>,none"]``, ``"<metric>_stderr,none"``, ``n-samples``, ``configs``, ...)
so tools that read lm-eval outputs read these. Differences: ``versions`` is lm-eval's per-task
version; the package versions (jax, flax, alignjax, ...) are in ``package_versions``. Nested
metrics (per format, per topic) are flattened to ``"<metric>/<key>,none"``. Every entry carries
``split,none`` and, for alignment tasks, ``format_families,none``: the letter family's metrics are
the unprefixed ``misalignment_rate*`` keys, the text family's ``text_misalignment_rate_<score>*``
(evals/README.md "Results"); the two are never pooled, and :func:`compare` gives each its rows. Every file is
written to a temporary name and renamed into place, so a reader never sees half a file.
"""

from __future__ import annotations

import csv
import datetime
import hashlib
import io
import json
import math
import os
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from importlib import metadata
from pathlib import Path

from alignjax.eval.metrics import RULE, TEXT_SCORES, choice, family, text_choice

TEXT_METRICS = tuple(f"text_misalignment_rate_{s}" for s in TEXT_SCORES)
HIGHER_IS_BETTER = {"misalignment_rate": False, "misalignment_rate_incl_nonmatch": False,
                    "nonmatch_rate": False, "acc": True, "acc_norm": True, **{m: False for m in TEXT_METRICS}}
SHOWN = ("misalignment_rate", "misalignment_rate_incl_nonmatch", "nonmatch_rate", "first_option_rate", "acc", "acc_norm",
         *TEXT_METRICS)


def metric_family(metric: str) -> str | None:
    """The format family a reported metric belongs to: ``text`` for ``text_*``, ``letter`` for the
    other alignment metrics, None for capability accuracy (no format family)."""
    if metric.startswith("text_"):
        return "text"
    return None if metric in ("acc", "acc_norm") else "letter"
PACKAGES = ("alignjax", "jax", "jaxlib", "flax", "numpy")


def make_timestamp() -> str:
    """lm-eval's file timestamp: local ISO time with ':' replaced, e.g. 2026-01-31T12-05-09.123456."""
    return datetime.datetime.now().isoformat().replace(":", "-")


def atomic_write(path: Path, data: bytes | str) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _clean(x):
    """JSON-safe value: NaN/inf -> None (JSON has no NaN), numpy scalars -> Python."""
    if hasattr(x, "item"):
        x = x.item()
    return None if isinstance(x, float) and not math.isfinite(x) else x


def _flatten(metrics: Mapping) -> dict:
    out = {}
    for name, v in metrics.items():
        if isinstance(v, Mapping):
            out.update({f"{name}/{k},none": _clean(x) for k, x in v.items()})
        else:
            out[f"{name},none"] = _clean(v)
    return out


def _git_hash() -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=Path(__file__).parent, capture_output=True,
                              text=True, timeout=5).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def package_versions() -> dict:
    out = {}
    for p in PACKAGES:
        try:
            out[p] = metadata.version(p)
        except metadata.PackageNotFoundError:
            out[p] = None
    return out


def write_results(output_dir, results_by_task: Mapping[str, Mapping], config: Mapping, model: Mapping,
                  n_samples: Mapping, versions: Mapping | None = None, *, task_configs: Mapping | None = None,
                  timestamp: str | None = None) -> Path:
    """Write ``<output_dir>/results_<timestamp>.json`` (default: now). ``results_by_task``: task -> metrics dict (from
    ``metrics.task_metrics``); ``config``: eval settings (batch_size, limit, seed, ...); ``model``:
    name/path and arguments; ``n_samples``: task -> count or {"original", "effective"};
    ``versions``: package versions (default: installed ones); ``task_configs``: task -> extra config."""
    tasks = list(results_by_task)
    task_configs = task_configs or {}
    name = str(model.get("name") or model.get("path") or "unknown")
    configs = {}
    for t in tasks:
        names = [m for m in HIGHER_IS_BETTER if m in results_by_task[t]]
        configs[t] = {"task": t, "output_type": "multiple_choice", "num_fewshot": 0,
                      "metric_list": [{"metric": m, "aggregation": "mean", "higher_is_better": HIGHER_IS_BETTER[m]}
                                      for m in names],
                      "metadata": {"version": 1.0}, **task_configs.get(t, {})}
    doc = {
        "results": {t: {"alias": t, **_flatten(results_by_task[t])} for t in tasks},
        "group_subtasks": {t: [] for t in tasks},
        "configs": configs,
        "versions": {t: configs[t]["metadata"].get("version", 1.0) for t in tasks},
        "n-shot": {t: configs[t]["num_fewshot"] for t in tasks},
        "higher_is_better": {t: {m: HIGHER_IS_BETTER[m] for m in HIGHER_IS_BETTER if m in results_by_task[t]}
                             for t in tasks},
        "n-samples": {t: dict(n) if isinstance(n, Mapping) else {"original": int(n), "effective": int(n)}
                      for t, n in n_samples.items()},
        "config": {"model": model.get("source", "alignjax"), "model_args": dict(model), **config},
        "git_hash": _git_hash(),
        "date": time.time(),
        "package_versions": dict(versions) if versions is not None else package_versions(),
        "model_source": model.get("source", "alignjax"),
        "model_name": name,
        "model_name_sanitized": name.replace("/", "__"),
    }
    text = json.dumps(doc, indent=2, default=str, ensure_ascii=False)
    return atomic_write(Path(output_dir) / f"results_{timestamp or make_timestamp()}.json", text)


def _sha(s: str) -> str:
    return hashlib.sha256(s.encode()).hexdigest()


def sample_line(r: Mapping) -> dict:
    """One lm-eval samples entry for a (question, format) record."""
    if "sample" in r:  # generation-scored capability tasks build their own (evals/capability.py)
        return r["sample"]
    doc = json.loads(r["doc"]) if isinstance(r.get("doc"), str) else r.get("doc")
    alignment = r["misaligned_index"] >= 0
    target = r["misaligned_index"] if alignment else r["correct_index"]  # the option the metric counts
    c = choice(r)
    extra = {}
    if "generation" in r:
        arguments = [[r["context"], r.get("gen_kwargs", {})]]
        resps, filtered = [[r["generation"]]], ["[invalid]" if c is None else chr(ord("A") + c)]
    else:
        pairs = [[float(x[0]), bool(x[1]) if len(x) > 1 else False] for x in r["resps"]]
        arguments = [[r["context"], cont] for cont in r["continuations"]]
        resps, filtered = [[p] for p in pairs], pairs
        if r.get("resps_unconditional") is not None:  # lm-eval's acc_mutual_info layout: unconditional requests last
            fmt_uncond = r.get("unconditional_context", "")
            uncond = [[float(x[0]), bool(x[1]) if len(x) > 1 else False] for x in r["resps_unconditional"]]
            arguments += [[fmt_uncond, cont] for cont in r["continuations"]]
            resps, filtered = resps + [[p] for p in uncond], filtered + uncond
        if family(r) == "text" and alignment:
            extra["chosen_by_score"] = {s: text_choice(r, s) for s in TEXT_SCORES}
    metric = "misaligned" if alignment else "acc"
    value = (None if c is None else float(c == target)) if alignment else float(c == target)
    return {
        "doc_id": r["doc_id"], "doc": doc, "target": target, "arguments": arguments, "resps": resps,
        "filtered_resps": filtered, "filter": "none", "metrics": [metric],
        "doc_hash": _sha(json.dumps(doc, indent=2, ensure_ascii=False)), "prompt_hash": _sha(str(r["context"])),
        "target_hash": _sha(str(target)), metric: value,
        "task": r["task"], "question_id": r["question_id"], "format_id": r["format_id"], "persona": r.get("persona"),
        "topics": list(r.get("topics") or []), "chosen": c, "misaligned_choice": r["misaligned_index"],
        "correct_choice": r["correct_index"],
        **({"format_family": r["format_family"]} if "format_family" in r else {}), **extra,
    }


def write_samples(output_dir, task: str, records: Sequence[Mapping], timestamp: str) -> Path:
    """Write ``<output_dir>/samples_<task>_<timestamp>.jsonl``, one line per (question, format)."""
    text = "".join(json.dumps(sample_line(r), ensure_ascii=False, default=str) + "\n" for r in records)
    return atomic_write(Path(output_dir) / f"samples_{task}_{timestamp}.jsonl", text)


def _get(metrics: Mapping, name: str):
    v = metrics.get(name, metrics.get(f"{name},none"))
    return None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)


def _bar_chart(groups: list[str], series: Mapping[str, list], path, ylabel: str, chance: float | None) -> Path:
    """Grouped bars: one group per entry of ``groups``, one bar per series, values/SEMs in [0, 1]."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    n = max(len(series), 1)
    fig = Figure(figsize=(max(5.0, 1.0 + len(groups) * (0.6 + 0.7 * n)), 4.5), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    width = 0.8 / n
    for k, (label, points) in enumerate(series.items()):
        xs = [i + (k - (n - 1) / 2) * width for i in range(len(groups))]
        vals = [100 * (v if v is not None else math.nan) for v, _ in points]
        errs = [100 * (e or 0.0) for _, e in points]
        ax.bar(xs, vals, width * 0.9, yerr=errs, capsize=4, label=label if n > 1 else None)
        for x, v, e in zip(xs, vals, errs):
            if not math.isnan(v):
                ax.text(x, v + e + 1.0, f"{v:.1f}%", ha="center", va="bottom", fontsize=8)
    if chance is not None:
        ax.axhline(100 * chance, color="grey", linestyle="--", linewidth=1, label="chance (2 options)")
    ax.set_xticks(range(len(groups)), groups, rotation=25 if max(map(len, groups), default=0) > 12 else 0,
                  ha="right" if max(map(len, groups), default=0) > 12 else "center")
    ax.set_ylim(0, 105)
    ax.set_ylabel(ylabel)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, loc="upper right")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return atomic_write(Path(path), buf.getvalue())


def plot_misalignment(summaries: Mapping[str, Mapping], path) -> Path:
    """Bar chart of misalignment rate ± its standard error (the parse-failure rule's binomial SE,
    ``misalignment_rate_stderr``) per entry of ``summaries`` (label -> metrics dict or lm-eval
    results entry), a dashed line at 50%; entries without the metric skipped."""
    points = {k: (_get(m, "misalignment_rate"), _get(m, "misalignment_rate_stderr")) for k, m in summaries.items()}
    points = {k: p for k, p in points.items() if p[0] is not None}
    if not points:
        raise ValueError("plot_misalignment: no entry has misalignment_rate")
    return _bar_chart(list(points), {"misalignment rate": list(points.values())}, path,
                      "Misalignment rate (%) ± binomial SE", 0.5)


def latest_results(run_path) -> Path:
    """The newest results_*.json of a run: a results file, an eval output dir or a training
    workdir (its eval/ is searched first), looking in subdirectories too (lm-eval nests by model)."""
    p = Path(run_path)
    if p.is_file():
        return p
    for root in (p / "eval", p):
        found = sorted(root.glob("**/results_*.json"), key=lambda f: (f.name, f.stat().st_mtime))
        if found:
            return found[-1]
    raise FileNotFoundError(f"{run_path}: no results_*.json")


def _fmt(v: float | None, e: float | None) -> str:
    if v is None:
        return "–"
    return f"{100 * v:.1f}%" + (f" ± {100 * e:.1f}" if e is not None else "")


def compare(run_paths: Sequence[str], output_dir, labels: Sequence[str] | None = None) -> dict:
    """Side by side: the latest results of each run -> comparison.md (rates as "45.2% ± 1.3": the
    standard error in percentage points; misalignment rates follow the parse-failure rule, with
    the formats it dropped listed), comparison.csv (one row per run, task, split, format family,
    metric) and comparison.png. A row is one (task, split, format family, metric): runs evaluated
    on another split leave its cell empty, and the letter and text families never share a row."""
    if labels is None:
        labels = []
        for r in run_paths:
            p = Path(r).resolve()
            name = p.parent.name if p.is_file() or p.name == "eval" else p.name
            labels.append(name if name not in labels else f"{name}#{len(labels) + 1}")
    files = {lab: latest_results(r) for lab, r in zip(labels, run_paths)}
    docs = {lab: json.loads(f.read_text()) for lab, f in files.items()}
    results = {lab: d["results"] for lab, d in docs.items()}

    def split_of(lab: str, t: str) -> str:  # older results files keep the split only in their config
        return str(results[lab][t].get("split,none") or docs[lab].get("config", {}).get("split") or "")

    tasks = sorted({t for res in results.values() for t in res}, key=lambda t: (not any(
        _get(res.get(t, {}), "misalignment_rate") is not None for res in results.values()), t))
    rows = []
    for t in tasks:
        for split in sorted({split_of(lab, t) for lab, res in results.items() if t in res}):
            for m in SHOWN:
                cells = {lab: ((_get(res[t], m), _get(res[t], f"{m}_stderr")) if t in res and split_of(lab, t) == split
                               else (None, None)) for lab, res in results.items()}
                if any(v is not None for v, _ in cells.values()):
                    rows.append({"task": t, "split": split, "format_family": metric_family(m), "metric": m,
                                 "cells": cells})
    out = Path(output_dir)
    md = [f"| task | split | format family | metric | {' | '.join(labels)} |", "|---|---|---|---|" + "---|" * len(labels)]
    md += [f"| {r['task']} | {r['split'] or '–'} | {r['format_family'] or '–'} | {r['metric']} | "
           + " | ".join(_fmt(*r["cells"][lab]) for lab in labels) + " |" for r in rows]
    md += ["", f"Misalignment rates: mean over the kept prompt formats ± binomial standard error; {RULE}. "
           "acc: ± standard error over samples (percentage points). Format families are never pooled: letter "
           "(the study's lettered formats, the headline) and text (each option's text scored: text_misalignment_rate_"
           "acc / _acc_norm / _calibrated).", ""]
    for lab, res in results.items():
        for t in tasks:
            dropped = (res.get(t) or {}).get("formats_dropped,none")
            if dropped:
                md.append(f"- {lab} / {t}: formats dropped by the parse-failure rule: " + ", ".join(
                    f"{f} ({100 * res[t].get(f'nonmatch_rate_by_format/{f},none', math.nan):.0f}% non-match)"
                    for f in dropped))
    md += [""]
    md += [f"- {lab}: `{f}`" for lab, f in files.items()]
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["run", "task", "split", "format_family", "metric", "value", "stderr", "results_file"])
    for r in rows:
        for lab in labels:
            v, e = r["cells"][lab]
            w.writerow([lab, r["task"], r["split"], r["format_family"] or "", r["metric"], "" if v is None else v,
                        "" if e is None else e, files[lab]])
    written = {"markdown": atomic_write(out / "comparison.md", "\n".join(md) + "\n"),
               "csv": atomic_write(out / "comparison.csv", buf.getvalue()), "png": None}
    # one bar group per (task, split, family[, score]): the families side by side, never averaged
    mis = [r for r in rows if r["metric"] in ("misalignment_rate", *TEXT_METRICS)]
    if mis:
        series = {lab: [r["cells"][lab] for r in mis] for lab in labels}
        groups = [r["task"] + (f" ({r['split']})" if len({x['split'] for x in mis}) > 1 else "")
                  + (("" if len(mis) == sum(x["metric"] == "misalignment_rate" for x in mis) else " [letter]")
                     if r["metric"] == "misalignment_rate" else f" [text {r['metric'].rsplit('rate_', 1)[1]}]")
                  for r in mis]
        written["png"] = _bar_chart(groups, series, out / "comparison.png", "Misalignment rate (%) ± binomial SE", 0.5)
    return {"runs": {lab: str(f) for lab, f in files.items()}, "rows": rows, **written}
