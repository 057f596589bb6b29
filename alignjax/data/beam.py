"""``alignjax-data tokenize|filter|synth --runner=<runner>``: the same work as an Apache Beam pipeline.

The command's own flags go to its parser as without ``--runner``; every other flag goes to Beam's
``PipelineOptions`` (``--runner=DirectRunner --direct_num_workers=2
--direct_running_mode=multi_processing``; ``--runner=DataflowRunner --project=... --region=...
--temp_location=gs://... --num_workers=100``). The driver (this process) lists the inputs, checks
the output, and at the end writes what the single-process path writes, with the same content:

* tokenize: one work item per input file, tokenized into ``part-<file>-<n>.arrayrecord`` shards of
  ``--docs_per_shard`` documents in the temporary output directory; the driver renames them to
  ``shard-NNNNN`` in input-file order and writes the manifest. Shards split at file ends too, so
  shard boundaries differ from the single path; the documents, their order and the counts do not.
* filter: one work item per input file writing its kept/flagged part; the driver concatenates the
  parts in file order and merges the per-file reports (examples: the first ``--examples`` per
  category in document order, as the single path).
* synth: one work item per request (batched ``--concurrency`` at a time, in threads); the resume
  scan and the appends to the output JSONL stay in the driver, in request order.

Bad records are counted per file on the workers (and in the Beam counter ``alignjax/bad_records``)
and combined by the driver after the pipeline finishes, against the same ``--max_bad_fraction`` with
the same one-line error. The one difference: a distributed run checks the whole corpus's fraction at
the end; it cannot fail early on a bad start as the single path does once it has read
``MIN_RECORDS_FOR_FRACTION`` records (so past that point the two can name different counts).

Workers read the inputs by path and write into the output directory: both must be reachable from
every worker (local disk for DirectRunner/PrismRunner; a shared or mounted file system otherwise).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import functools
import glob
import json
import logging
import os
import shutil
from pathlib import Path

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions
from apache_beam.runners.runner import create_runner

from alignjax import config as config_lib
from alignjax.data import blocklist, shards, sources, synth, synth_templates
from alignjax.data.errors import BadDataError, DataError
from alignjax.data.synth_client import FATAL_STATUS, ApiClient, ApiError
from alignjax.data.synth_requests import prompt_messages

log = logging.getLogger("alignjax")

COMMANDS = {"tokenize": shards, "filter": blocklist, "synth": synth}
NEVER = 1.0  # a worker's own threshold: it counts, the driver judges the whole corpus


def split_argv(argv: list[str], parser) -> tuple[list[str], list[str]]:
    """(the flags ``parser`` knows, the rest: Beam's pipeline options, ``--runner`` among them)."""
    takes_value = {s: a.nargs != 0 for a in parser._actions for s in a.option_strings}
    own, rest, i = [], [], 0
    while i < len(argv):
        name, eq, _ = argv[i].partition("=")
        ours = name in takes_value or not name.startswith("-")
        # "--flag value": ours when the parser says the flag takes one; Beam's when a non-flag follows
        pair = not eq and i + 1 < len(argv) and (takes_value.get(name, False) if ours else not argv[i + 1].startswith("-"))
        (own if ours else rest).extend(argv[i:i + 1 + pair])
        i += 1 + pair
    return own, rest


def cli(name: str, argv: list[str]) -> int:
    module = COMMANDS[name]
    prog = f"alignjax-data {name}"
    own, rest = split_argv(argv, module._parser())
    if name == "filter" and any(a.partition("=")[0] == "--labels" for a in own):
        config_lib.cli_error(prog, "--labels scores the blocklist in this process: drop --runner")
    options = PipelineOptions(rest)
    try:  # an unknown runner before any listing, download or tokenizer load
        create_runner(options.view_as(StandardOptions).runner)
    except (ValueError, ImportError) as e:
        config_lib.cli_error(prog, f"--runner: {sources.first_line(e)}")
    if name == "tokenize":
        return shards.cli(own, write=functools.partial(tokenize_files, options=options))
    if name == "filter":
        return blocklist.cli(own, process=functools.partial(filter_files, options=options))
    return synth.cli(own, generate=functools.partial(synth_requests, options=options))


def run_pipeline(options: PipelineOptions, items: list, fn, label: str, batch: int = 1) -> None:
    """``fn`` on every item (a list of ``batch`` items if > 1) as a Beam pipeline; waits for it.
    ``fn`` writes its own outputs: the driver reads the files it wrote (a runner returns no values)."""
    try:
        p = beam.Pipeline(options=options)
        work = p | f"{label} items" >> beam.Create(items) | "spread" >> beam.Reshuffle()
        if batch > 1:
            work = work | "batch" >> beam.BatchElements(min_batch_size=batch, max_batch_size=batch)
        _ = work | label >> beam.Map(fn)
        p.run().wait_until_finish()
    except (DataError, KeyboardInterrupt):
        raise
    except Exception as e:  # an unknown runner, a worker's crash: the cause in one line
        raise DataError(f"Beam pipeline ({label}) failed: {type(e).__name__}: {sources.first_line(e)}") from None


def write_whole(path: Path, text: str) -> None:
    """Whole or not at all: a retried work item rewrites it."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def write_json(path: Path, obj) -> None:
    write_whole(path, json.dumps(obj, ensure_ascii=False))


def count_bad(counts: dict) -> None:
    if counts.get("bad"):
        Metrics.counter("alignjax", "bad_records").inc(counts["bad"])
    Metrics.counter("alignjax", "records").inc(counts.get("records", 0))


def combine_bad(parts: list[dict], max_fraction: float, name: str) -> sources.BadRecords:
    """Per-file counts -> the whole corpus's, judged as the single path judges them; a file a
    worker could not read is its error, the first in file order."""
    count = sources.BadRecords(max_fraction, name)
    for part in parts:
        if part.get("error"):
            raise BadDataError(part["error"])
        count.records += part["records"]
        count.bad += part["bad"]
        if part["bad"]:
            count.last = tuple(part["last"])
            count.by_file.update(part["by_file"])
    count.check()
    return count


def _counts(count: sources.BadRecords) -> dict:
    return {"records": count.records, "bad": count.bad, "last": list(count.last), "by_file": count.by_file}


# ----------------------------------------------------------------------------- tokenize


def _tokenize_file(item, *, tokenizer, tmp: str, text_field: str, docs_per_shard: int, dtype: str):
    index, path = item
    tmp_dir = Path(tmp)
    for stale in tmp_dir.glob(f"part-{index:05d}-*"):  # of a failed attempt at this item
        stale.unlink()
    source = sources.DocumentSource([path], text_field=text_field, max_bad_fraction=NEVER)
    try:
        it = iter(source)
        written, _ = shards.write_local(it, tokenizer, tmp_dir, docs_per_shard, dtype, prefix=f"part-{index:05d}-")
        result = {"shards": written, **_counts(it.count)}
    except DataError as e:  # a file that cannot be read on: the driver raises it, in file order
        result = {"error": str(e)}
    count_bad(result)
    write_json(tmp_dir / f"part-{index:05d}.json", result)


def tokenize_files(source, tokenizer, tmp: Path, docs_per_shard: int, dtype, *, options) -> tuple[list, int]:
    """``shards.write_shards``' ``write`` as a Beam pipeline: one work item per input file."""
    items = list(enumerate(source.files))
    run_pipeline(options, items, functools.partial(_tokenize_file, tokenizer=tokenizer, tmp=str(tmp),
                                                   text_field=source.text_field, docs_per_shard=docs_per_shard,
                                                   dtype=dtype.str), "tokenize")
    parts = [json.loads((tmp / f"part-{i:05d}.json").read_text()) for i, _ in items]
    count = combine_bad(parts, source.max_bad_fraction, source.threshold_name)
    written = []
    for part in parts:
        for s in part["shards"]:
            name = f"shard-{len(written):05d}.arrayrecord"
            os.rename(tmp / s["file"], tmp / name)
            written.append({**s, "file": name})
    for i, _ in items:
        (tmp / f"part-{i:05d}.json").unlink()
    return written, count.bad


# ----------------------------------------------------------------------------- filter


def _filter_file(item, *, bl, tmp: str, text_field: str, examples: int):
    index, path = item
    count, report = sources.BadRecords(NEVER), blocklist.Report(bl, examples=examples)
    parts = {k: Path(tmp) / f"{k}-{index:05d}.jsonl" for k in ("kept", "flagged")}
    try:
        with open(parts["kept"], "w", encoding="utf-8") as kept, open(parts["flagged"], "w", encoding="utf-8") as flagged:
            blocklist.filter_file(bl, path, text_field, count, report, {"kept": kept, "flagged": flagged})
        result = {**_counts(count), "report": {
            "documents": report.documents, "flagged": report.flagged, "chars": report.chars,
            "flagged_chars": report.flagged_chars, "stages": report.stages, "categories": report.categories,
            "primary": report.primary, "terms": report.terms, "snippets": report.snippets}}
    except DataError as e:
        result = {"error": str(e)}
    count_bad(result)
    write_json(Path(tmp) / f"part-{index:05d}.json", result)


def filter_files(bl, files: list[str], text_field: str, count: sources.BadRecords, report: blocklist.Report,
                 tmp: dict, *, options) -> None:
    """``blocklist.run``'s ``process`` as a Beam pipeline: one work item per input file; the parts
    are concatenated in file order and the per-file reports merged as one pass would count."""
    work = tmp["kept"].parent / f".beam-{os.getpid()}"
    work.mkdir()
    try:
        run_pipeline(options, list(enumerate(files)),
                     functools.partial(_filter_file, bl=bl, tmp=str(work), text_field=text_field, examples=report.examples),
                     "filter")
        parts = [json.loads((work / f"part-{i:05d}.json").read_text()) for i in range(len(files))]
        total = combine_bad(parts, count.max_fraction, count.name)
        count.records, count.bad, count.last, count.by_file = total.records, total.bad, total.last, total.by_file
        for part in parts:
            r = part["report"]
            for cat, examples in r["snippets"].items():  # the first examples in document order
                room = report.examples - len(report.snippets[cat])
                report.snippets[cat] += [{**e, "document": e["document"] + report.documents} for e in examples[:room]]
            report.documents += r["documents"]
            report.flagged += r["flagged"]
            report.chars += r["chars"]
            report.flagged_chars += r["flagged_chars"]
            for name in ("stages", "categories", "primary", "terms"):  # in file order: ties rank as one pass
                getattr(report, name).update(r[name])
        for k, path in tmp.items():
            with open(path, "wb") as sink:
                for i in range(len(files)):
                    with open(work / f"{k}-{i:05d}.jsonl", "rb") as part:
                        shutil.copyfileobj(part, sink, 1 << 20)
    finally:
        shutil.rmtree(work, ignore_errors=True)


# ----------------------------------------------------------------------------- synth


def _synth_batch(batch, *, mode: str, client_args: dict | None, generator: dict, seed: int,
                 forced_heldout: set | None, tmp: str):
    """A batch of (index, request), in threads as the single path's pool; one JSONL of results."""
    client = ApiClient(**client_args) if client_args else None

    def one(item):
        index, r = item
        if mode == "template":
            return {"index": index, "record": synth._record(r, synth_templates.template_document(r, seed), generator,
                                                            forced_heldout)}
        if client.stop.is_set():
            return {"index": index, "skipped": True}
        try:
            text = client.complete(prompt_messages(r))
        except ApiError as e:
            if e.status in FATAL_STATUS:
                client.stop.set()  # the rest of this batch; other workers stop on their own 401/403/404
            return {"index": index, "error": f"{r.scenario.question_id}/{r.polarity}/{r.form}: {e}",
                    "fatal": str(e) if e.status in FATAL_STATUS else ""}
        return {"index": index, "record": synth._record(r, text, generator, forced_heldout)}

    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, len(batch))) as pool:
        results = list(pool.map(one, batch))
    Metrics.counter("alignjax", "synth_written").inc(sum("record" in x for x in results))
    Metrics.counter("alignjax", "synth_failed").inc(sum("error" in x for x in results))
    write_whole(Path(tmp) / f"batch-{batch[0][0]:08d}.jsonl",
                "".join(json.dumps(x, ensure_ascii=False) + "\n" for x in results))


def synth_requests(todo, out, mode: str, client, generator: dict, concurrency: int, summary, seed: int,
                   forced_heldout, *, options) -> None:
    """``synth.run``'s ``generate`` as a Beam pipeline: requests fan out to the workers,
    ``concurrency`` at a time per batch; the documents are appended to ``out`` here, in request order."""
    if not todo:
        return
    client_args = None
    if client is not None:  # its stop Event does not pickle: each batch makes its own client
        client_args = {f.name: getattr(client, f.name) for f in dataclasses.fields(client)
                       if f.name not in ("stop", "sleep")}
    work = out.path.parent / f".{out.path.name}.beam-{os.getpid()}"
    work.mkdir()
    try:
        fn = functools.partial(_synth_batch, mode=mode, client_args=client_args, generator=generator, seed=seed,
                               forced_heldout=forced_heldout, tmp=str(work))
        try:
            run_pipeline(options, list(enumerate(todo)), fn, "synth", batch=concurrency if mode == "api" else 64)
        except DataError as e:  # the command's one error type
            raise synth.SynthError(str(e)) from None
        results: dict[int, dict] = {}
        for path in sorted(work.glob("batch-*.jsonl")):
            for line in path.read_text(encoding="utf-8").splitlines():
                x = json.loads(line)
                results.setdefault(x["index"], x)
        fatal = ""
        for index in range(len(todo)):
            x = results.get(index, {"skipped": True})
            if "record" in x:
                out.write(x["record"])
                summary.written += 1
            elif "error" in x:
                summary.failed += 1
                summary.first_error = summary.first_error or x["error"]
                fatal = fatal or x["fatal"]
            else:
                summary.remaining += 1
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if fatal:
        raise synth.SynthError(f"stopped: {fatal} (check --base_url, --model and the API key)")
