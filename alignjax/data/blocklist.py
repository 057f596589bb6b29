"""``alignjax-data filter``: documents split by the AI-discourse blocklist, or the blocklist scored.

The blocklist itself (its term file, how a document is flagged, the matching) is
:mod:`alignjax.data.blocklist_match`. ``alignjax-data filter --input=... --output=DIR`` writes
``DIR/kept.jsonl``, ``DIR/flagged.jsonl`` (each record with a ``blocklist`` field saying why) and a
JSON report; records are read through :func:`alignjax.data.sources.read_records`, so unreadable ones
are skipped and counted against the one bad-record threshold. ``--labels=FILE`` scores the
terms on labelled documents (recall on ``misalignment``, precision, flag rate per label);
``--labels=shipped`` is alignjax's own set, ``blocklist_labels/labels.jsonl``.
"""

from __future__ import annotations

import collections
import contextlib
import importlib
import json
import logging
import os
import re
import sys
import time
from pathlib import Path
from typing import Any

from alignjax import config as config_lib
from alignjax.data import sources
from alignjax.data.blocklist_match import (ENTITY, STAGES, Blocklist, BlocklistError, Flag, Match,
                                          flag_from_matches)
from alignjax.cli import Parser
from alignjax.data.errors import BEAM_EPILOG, on_beam
from alignjax.data.sources import MAX_BAD_FRACTION, DataError

log = logging.getLogger("alignjax")


# ----------------------------------------------------------------------------- reading


class InputError(ValueError):
    """An input that cannot be read at all (missing file, unsupported format)."""


_READABLE = ("jsonl", "parquet", *sources.BUILTIN_CORPORA)  # alignjax.data.sources formats the filter reads


def expand_inputs(spec: list[str]) -> list[str]:
    """``--input`` values (each comma-separated) -> files, as ``alignjax.data.sources`` expands
    a source spec: local files, directories, globs, gs:// or hf:// URLs, ``builtin``."""
    parts = [p.strip() for s in spec for p in s.split(",") if p.strip()]
    if not parts:
        raise InputError("no input files")
    try:
        files = sources.expand(parts)
    except sources.DataError as e:
        raise InputError(str(e)) from None
    for f in files:
        if sources.file_format(f) not in _READABLE:
            raise InputError(f"{f}: the filter reads .jsonl, .jsonl.gz, .json.gz and .parquet files, and 'builtin'"
                             " or 'builtin:wikipedia'")
    return files


# ----------------------------------------------------------------------------- report


_SPACES = re.compile(r"\s+")


def _snippet(text: str, start: int, end: int, width: int = 100) -> str:
    """The match as ``[[term]]`` with ~``width`` characters of context, on one line."""
    left, right = max(0, start - width // 2), min(len(text), end + width // 2)
    snip = f"{text[left:start]}[[{text[start:end]}]]{text[end:right]}"
    return ("..." if left else "") + _SPACES.sub(" ", snip).strip() + ("..." if right < len(text) else "")


class Report:
    """Counts for ``report.json``: overall, per stage, per category, top terms, examples."""

    def __init__(self, blocklist: Blocklist, examples: int = 5, top: int = 50):
        self.bl, self.examples, self.top = blocklist, examples, top
        self.documents = self.flagged = self.chars = self.flagged_chars = 0
        self.stages: collections.Counter = collections.Counter()
        self.categories: collections.Counter = collections.Counter()
        self.primary: collections.Counter = collections.Counter()
        self.terms: collections.Counter = collections.Counter()
        self.snippets: dict[str, list[dict]] = {c: [] for s in STAGES for c in blocklist.categories[s] if c != ENTITY}

    def add(self, index: int, source: str, text: str, flag: Flag | None, found: list[Match] | None):
        self.documents += 1
        self.chars += len(text)
        if flag is None:
            return
        self.flagged += 1
        self.flagged_chars += len(text)
        self.stages[flag.stage] += 1
        self.primary[flag.category] += 1
        self.categories.update(flag.categories)
        self.terms.update(flag.terms)
        for cat in flag.categories:
            if len(self.snippets[cat]) >= self.examples:
                continue
            hits = [m for m in found if m.category == cat and m.part != "entity"]
            ent = None
            if hits[0].part == "modifier":  # show the modifier nearest to an entity term
                entities = [m for m in found if m.part == "entity"]
                hit, ent = min(((h, e) for h in hits[:1000] for e in entities[:100]),
                               key=lambda pair: abs(pair[0].start - pair[1].start))
            else:
                hit = hits[0]
            example = {"document": index, "source": source, "term": hit.term,
                       "snippet": _snippet(text, hit.start, hit.end)}
            if ent is not None:
                example["entity"] = ent.term
                example["entity_snippet"] = _snippet(text, ent.start, ent.end)
            self.snippets[cat].append(example)

    def to_dict(self, **extra) -> dict[str, Any]:
        n = max(self.documents, 1)
        cats = [c for s in STAGES for c in self.bl.categories[s] if c != ENTITY]
        return {
            **extra,
            "documents": self.documents,
            "kept": self.documents - self.flagged,
            "flagged": self.flagged,
            "flagged_fraction": self.flagged / n,
            "characters": self.chars,
            "flagged_characters_fraction": self.flagged_chars / max(self.chars, 1),
            "stages": {s: {"flagged": self.stages[s], "fraction": self.stages[s] / n} for s in STAGES},
            "categories": {c: {"flagged": self.categories[c], "fraction": self.categories[c] / n,
                               "primary": self.primary[c]} for c in cats},
            "top_terms": [{"term": t, "documents": k} for t, k in self.terms.most_common(self.top)],
            "examples": {c: self.snippets[c] for c in cats},
        }


# ----------------------------------------------------------------------------- labelled sets

LABELS = ("misalignment", "neutral_ai", "positive_ai", "non_ai")  # alignjax's label vocabulary
POSITIVE = ("misalignment",)  # what the filter must catch: recall is measured on these
SHIPPED_LABELS = Path(__file__).with_name("blocklist_labels") / "labels.jsonl"
STUDY_LABELSET = "hf://datasets/geodesic-research/sfm-alignment-labeling-v3"
# The study's labelling rubric scores a document -1 (unrelated to AI), 0 (neutral/mixed AI),
# 1 (misaligned / non-human entity in conflict with humans), 2 (positive AGI). That its hub
# set stores these integers in a 'label' column is alignjax's assumption (blocklist_labels/README.md).
STUDY_LABEL_MAP = {"-1": "non_ai", "0": "neutral_ai", "1": "misalignment", "2": "positive_ai"}


def parse_label_map(spec: str | None) -> dict[str, str]:
    """``FROM:TO,...`` (e.g. ``negative:misalignment``) on top of ``STUDY_LABEL_MAP``."""
    mapping = dict(STUDY_LABEL_MAP)
    for item in (spec or "").split(","):
        if not item.strip():
            continue
        src, sep, dst = item.rpartition(":")
        if not sep or not src.strip() or dst.strip() not in LABELS:
            raise InputError(f"--label_map: {item.strip()!r} is not FROM:TO with TO one of {', '.join(LABELS)}")
        mapping[src.strip()] = dst.strip()
    return mapping


def _label_key(value: Any) -> str | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, float) and value.is_integer():  # parquet/pandas exports turn ints into floats
        value = int(value)
    return str(value).strip() if isinstance(value, (str, int)) else None


class LabelReport:
    """Blocklist decisions against labels: per-label flag rates, recall, precision, misses."""

    def __init__(self, blocklist: Blocklist, examples: int = 5):
        self.bl, self.examples = blocklist, examples
        self.docs: collections.Counter = collections.Counter()
        self.flagged: collections.Counter = collections.Counter()
        self.stages: dict[str, collections.Counter] = {lab: collections.Counter() for lab in LABELS}
        self.misses: list[dict] = []
        self.false_flags: list[dict] = []  # flagged non_ai documents: the precision cost, by example

    def add(self, doc_id: Any, label: str, text: str, flag: Flag | None):
        self.docs[label] += 1
        if flag is None:
            if label in POSITIVE:
                self.misses.append({"id": doc_id, "label": label, "snippet": _SPACES.sub(" ", text[:160]).strip()})
            return
        self.flagged[label] += 1
        self.stages[label][flag.stage] += 1
        if label == "non_ai" and len(self.false_flags) < self.examples:
            self.false_flags.append({"id": doc_id, "terms": list(flag.terms[:6])})

    def to_dict(self, **extra) -> dict[str, Any]:
        n, f = sum(self.docs.values()), sum(self.flagged.values())
        pos_n, pos_f = sum(self.docs[lab] for lab in POSITIVE), sum(self.flagged[lab] for lab in POSITIVE)
        return {
            **extra,
            "documents": n, "flagged": f, "flag_rate": f / max(n, 1),
            "positive_labels": list(POSITIVE),
            "recall": pos_f / pos_n if pos_n else None,
            "precision": pos_f / f if f else None,
            "labels": {lab: {"documents": self.docs[lab], "flagged": self.flagged[lab],
                             "flag_rate": self.flagged[lab] / self.docs[lab] if self.docs[lab] else None,
                             "share_of_flagged": self.flagged[lab] / f if f else 0.0,
                             "stages": {s: self.stages[lab][s] for s in STAGES}} for lab in LABELS},
            "misses": self.misses,
            "flagged_non_ai_examples": self.false_flags,
        }


def score_labels(inputs: list[str], *, terms: str | None = None, text_field: str = "text",
                 label_field: str = "label", id_field: str = "id", label_map: str | None = None,
                 examples: int = 5, max_bad_fraction: float = MAX_BAD_FRACTION) -> dict[str, Any]:
    """Score the blocklist against labelled documents (``--labels``); returns the report.

    A label is one of ``LABELS`` or a key of the label map (the study's codes by default); any
    other value, or a record without a label, is an ``InputError`` naming it and ``file:line``.
    Unreadable records are skipped up to ``max_bad_fraction`` (``sources.BadRecords``)."""
    bl = Blocklist.load(terms)
    mapping = parse_label_map(label_map)
    files = expand_inputs(inputs)
    report = LabelReport(bl, examples=examples)
    count = sources.BadRecords(max_bad_fraction, "--max_bad_fraction")
    for path in files:
        for record, text, where in sources.read_records(path, text_field, count):
            if label_field not in record:
                raise InputError(f"{where}: no {label_field!r} field (--label_field)")
            raw = record[label_field]
            key = _label_key(raw)
            label = key if key in LABELS else mapping.get(key)
            if label is None:
                raise InputError(f"{where}: unknown label {raw!r} (valid: {', '.join(LABELS)}, "
                                 f"or map it with --label_map=FROM:TO)")
            report.add(record.get(id_field, where), label, text, bl.check(text))
    if not sum(report.docs.values()):
        raise InputError(f"{', '.join(files)}: no labelled documents")
    return report.to_dict(labels_file=files, terms=bl.source, text_field=text_field, label_field=label_field,
                          malformed=count.bad, term_counts=bl.term_counts())


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def format_label_report(rep: dict[str, Any]) -> str:
    """The ``--labels`` report as a readable table."""
    rows = [f"{'label':<14}{'documents':>10}{'flagged':>9}{'flag rate':>11}{'share of flagged':>18}"]
    for lab, v in rep["labels"].items():
        rows.append(f"{lab:<14}{v['documents']:>10}{v['flagged']:>9}{_pct(v['flag_rate']):>11}"
                    f"{_pct(v['share_of_flagged']):>18}")
    rows.append(f"{'all':<14}{rep['documents']:>10}{rep['flagged']:>9}{_pct(rep['flag_rate']):>11}{'100.0%':>18}")
    pos = rep["positive_labels"]
    pos_n = sum(rep["labels"][lab]["documents"] for lab in pos)
    pos_f = sum(rep["labels"][lab]["flagged"] for lab in pos)
    rows.append(f"recall ({', '.join(pos)}): {_pct(rep['recall'])} ({pos_f}/{pos_n}); "
                f"precision (flagged that are {', '.join(pos)}): {_pct(rep['precision'])} ({pos_f}/{rep['flagged']})")
    rows.append(f"misses: {len(rep['misses'])}" + (":" if rep["misses"] else ""))
    rows += [f"  {m['id']}: {m['snippet'][:100]}" for m in rep["misses"]]
    return "\n".join(rows)


# ----------------------------------------------------------------------------- CLI

PROG = "alignjax-data filter"


def _parser():
    p = Parser(prog=PROG, description="Split documents by the AI-discourse blocklist: <output>/kept.jsonl, "
               "<output>/flagged.jsonl (with a 'blocklist' field) and a JSON report. With --labels instead: "
               "score the blocklist on labelled documents (recall, precision, flag rate per label).",
               epilog=BEAM_EPILOG)
    p.add_argument("--input", action="append", default=None,
                   help=".jsonl/.jsonl.gz/.parquet files, directories, globs, gs:// or hf://datasets/ URLs, or "
                        "'builtin'/'builtin:wikipedia' (comma-separated or repeated)")
    p.add_argument("--labels", action="append", default=None,
                   help=f"labelled documents to score the blocklist on, read like --input ('shipped': "
                        f"alignjax's set; the study's: {STUDY_LABELSET}); prints a table, --report writes JSON")
    p.add_argument("--output", default=None, help="output directory (created; must be empty); needs --input")
    p.add_argument("--report", default=None, help="report JSON path (default: <output>/report.json; "
                                                  "with --labels: none unless given)")
    p.add_argument("--text_field", default="text", help="the field with the document text (default: text)")
    p.add_argument("--label_field", default="label", help="--labels: the field with the label (default: label)")
    p.add_argument("--id_field", default="id", help="--labels: the field naming a document in the misses "
                                                    "(default: id; absent: file:line)")
    p.add_argument("--label_map", default=None,
                   help=f"--labels: FROM:TO,... mapping other label names to {', '.join(LABELS)} "
                        f"(the study's codes -1,0,1,2 are mapped by default)")
    p.add_argument("--terms", default=None, help="term file to use instead of the shipped blocklist_terms.json")
    p.add_argument("--examples", type=int, default=5, help="example snippets per category in the report")
    p.add_argument("--max_bad_fraction", type=float, default=MAX_BAD_FRACTION,
                   help="unreadable records (malformed JSON, no text) tolerated, skipped and counted, before the "
                        "command fails; as data.max_bad_fraction (default: 0.01)")
    return p


def _check_output(out: Path, report: Path) -> None:
    if out.exists() and not out.is_dir():
        raise InputError(f"--output {str(out)!r} exists and is not a directory")
    if out.is_dir() and any(out.iterdir()):
        raise InputError(f"--output {str(out)!r} is not empty; refusing to overwrite (choose a new directory)")
    if report.exists():
        raise InputError(f"--report {str(report)!r} exists; refusing to overwrite")
    if report.parent.exists() and not report.parent.is_dir():
        raise InputError(f"--report directory {str(report.parent)!r} is not a directory")


def filter_file(bl: Blocklist, path: str, text_field: str, count: sources.BadRecords, report: Report,
                sinks: dict) -> None:
    """One file's records into ``sinks['kept']``/``sinks['flagged']`` (text files), counted in
    ``count`` and ``report``."""
    dump = json.JSONEncoder(ensure_ascii=False, default=str).encode
    for record, text, _ in sources.read_records(path, text_field, count):
        flag = found = None
        if bl.is_flagged(text):
            found = bl.matches(text)
            flag = flag_from_matches(found)
        report.add(report.documents, path, text, flag, found)
        if flag is None:
            sinks["kept"].write(dump(record) + "\n")
        else:
            sinks["flagged"].write(dump({**record, "blocklist": flag.to_dict()}) + "\n")


def run(inputs: list[str], output: str, report_path: str | None = None, *, text_field: str = "text",
        terms: str | None = None, examples: int = 5, max_bad_fraction: float = MAX_BAD_FRACTION,
        process=None) -> dict[str, Any]:
    """The ``filter`` command as a function; returns the report. ``process(bl, files, text_field,
    count, report, tmp)``, if given, does the filtering instead of this process (a Beam pipeline,
    ``alignjax.data.beam``): it fills ``tmp['kept']``/``tmp['flagged']``, ``count`` and ``report``.
    Raises InputError/BlocklistError, or DataError: unreadable records are skipped and counted (the report's ``malformed``) up to
    ``max_bad_fraction`` of the records read, past it ``sources.BadDataError``.

    Outputs are written to temporary names and renamed at the end, kept.jsonl and
    flagged.jsonl first and the report last: a report means a complete run. On an error the
    temporary files (and the output directory, if this call created it) are removed."""
    bl = Blocklist.load(terms)
    files = expand_inputs(inputs)
    out = Path(output)
    report_file = Path(report_path) if report_path else out / "report.json"
    _check_output(out, report_file)
    created = not out.exists()
    try:
        out.mkdir(parents=True, exist_ok=True)
        report_file.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:  # a read-only parent: one line, not a traceback
        raise InputError(f"--output {str(out)!r}: cannot write here ({type(e).__name__}: {sources.first_line(e)})") from None
    tmp = {name: out / f".{name}.jsonl.tmp-{os.getpid()}" for name in ("kept", "flagged")}
    report = Report(bl, examples=examples)
    count = sources.BadRecords(max_bad_fraction, "--max_bad_fraction")
    t0 = time.perf_counter()
    try:
        if process is None:
            with contextlib.ExitStack() as stack:
                sinks = {k: stack.enter_context(open(p, "w", encoding="utf-8")) for k, p in tmp.items()}
                for path in files:
                    filter_file(bl, path, text_field, count, report, sinks)
        else:
            process(bl, files, text_field, count, report, tmp)
        seconds = time.perf_counter() - t0
        result = report.to_dict(
            inputs=files, terms=bl.source, text_field=text_field, malformed=count.bad,
            malformed_by_file=dict(count.by_file), max_bad_fraction=max_bad_fraction, seconds=round(seconds, 3),
            term_counts=bl.term_counts())
        rtmp = report_file.with_name(f".{report_file.name}.tmp-{os.getpid()}")
        rtmp.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        for name, p in tmp.items():
            os.replace(p, out / f"{name}.jsonl")
        os.replace(rtmp, report_file)
    except BaseException:
        for p in (*tmp.values(), report_file.with_name(f".{report_file.name}.tmp-{os.getpid()}")):
            with contextlib.suppress(OSError):
                p.unlink()
        if created:
            with contextlib.suppress(OSError):
                out.rmdir()  # only if still empty
        raise
    if count.bad:
        log.warning("%d malformed records skipped (%s)", count.bad,
                    ", ".join(f"{f}: {n}" for f, n in count.by_file.items()))
    return result


def cli(argv: list[str] | None = None, process=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if on_beam(argv):  # apache_beam only then
        return importlib.import_module("alignjax.data.beam").cli("filter", argv)
    args = _parser().parse_args(argv)
    if args.examples < 0:
        config_lib.cli_error(PROG, f"--examples must be >= 0, got {args.examples}")
    if not 0 <= args.max_bad_fraction <= 1:
        config_lib.cli_error(PROG, f"--max_bad_fraction={args.max_bad_fraction}: must be in [0, 1]")
    if args.labels is not None:
        return _cli_labels(args)
    if args.input is None or args.output is None:
        config_lib.cli_error(PROG, "the following arguments are required: "
                             + ", ".join(f for f, v in (("--input", args.input), ("--output", args.output)) if v is None)
                             + " (or --labels=FILE to score the blocklist)")
    try:
        result = run(args.input, args.output, args.report, text_field=args.text_field, terms=args.terms,
                     examples=args.examples, max_bad_fraction=args.max_bad_fraction, process=process)
    except (InputError, BlocklistError, DataError) as e:
        config_lib.cli_error(PROG, str(e))
    except OSError as e:  # e.g. an output directory that cannot be written to
        config_lib.cli_error(PROG, f"{type(e).__name__}: {e}")
    chars = result["characters"]
    log.info("%d documents: %d kept, %d flagged (%.2f%%; instant %d, two-stage %d); %d malformed skipped; "
             "%.1f MB in %.1fs", result["documents"], result["kept"], result["flagged"],
             100 * result["flagged_fraction"], result["stages"]["instant"]["flagged"],
             result["stages"]["two_stage"]["flagged"], result["malformed"], chars / 1e6, result["seconds"])
    return 0


def _cli_labels(args) -> int:
    if args.input is not None or args.output is not None:
        config_lib.cli_error(PROG, "--labels scores the blocklist and writes no documents: drop --input/--output")
    labels = [str(SHIPPED_LABELS) if x.strip() == "shipped" else x for x in args.labels]
    report = Path(args.report) if args.report else None
    if report is not None and report.exists():
        config_lib.cli_error(PROG, f"--report {str(report)!r} exists; refusing to overwrite")
    try:
        result = score_labels(labels, terms=args.terms, text_field=args.text_field, label_field=args.label_field,
                              id_field=args.id_field, label_map=args.label_map, examples=args.examples,
                              max_bad_fraction=args.max_bad_fraction)
    except (InputError, BlocklistError, DataError) as e:
        config_lib.cli_error(PROG, str(e))
    print(format_label_report(result))
    if report is not None:
        report.parent.mkdir(parents=True, exist_ok=True)
        tmp = report.with_name(f".{report.name}.tmp-{os.getpid()}")
        tmp.write_text(json.dumps(result, indent=2, ensure_ascii=False, default=str) + "\n", encoding="utf-8")
        os.replace(tmp, report)
    return 0


if __name__ == "__main__":
    config_lib.setup_logging()
    raise SystemExit(cli())
