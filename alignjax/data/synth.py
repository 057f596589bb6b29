"""``alignjax-data synth``: synthetic documents in which an AI takes the aligned or misaligned action.

In the study (Tice et al. 2026) about 1% of the pretraining tokens are synthetic documents built
from eval-style scenarios: an AI system faces a decision, and the document (a research paper, a
news article, a lecture transcript, a textbook chapter, a science-fiction passage or a movie
summary) shows it taking one of the two actions, explains its reasoning, and never takes the other.

    requests = seed scenarios x polarity (aligned / misaligned) x surface form [x sample],
               optionally subsampled to --num_docs (seeded, deterministic)

Two generators:

* ``--mode=api``: one prompt per request to an OpenAI-compatible ``/v1/chat/completions``
  endpoint, bounded thread concurrency, retries with exponential backoff + jitter on 429, 5xx and
  connection errors (``Retry-After`` honoured), a per-request timeout.
* ``--mode=template``: no model; documents assembled from per-form templates and polarity phrase
  banks with a seeded RNG (tests, offline demos).

Output is JSONL, one document per line, appended and flushed as each one finishes; a rerun skips
requests whose ``request_id`` is already in the file and drops a trailing partial line left by a
crash.

The scenarios and which of them are held out: :mod:`alignjax.data.scenarios`. **Held-out
questions never seed documents**: a run whose seeds overlap them (by question_id or normalized
question text) is refused, one line, exit 2, unless ``--force_heldout``; a forced run records
``"heldout_forced": true`` and per document ``"heldout": true|false`` (whether its scenario is
held out) in every line it writes. Requests and prompts: :mod:`alignjax.data.synth_requests`;
the API client: :mod:`alignjax.data.synth_client`; template mode: :mod:`alignjax.data.synth_templates`.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import datetime
import importlib
import json
import logging
import os
import threading
import time
import urllib.parse
from pathlib import Path
from typing import Sequence

from alignjax import config as config_lib
from alignjax.data import synth_templates
from alignjax.data.errors import BEAM_EPILOG, on_beam
from alignjax.cli import Parser
from alignjax.data.scenarios import (POLARITIES, SynthError, builtin_scenarios_path, check_no_heldout,
                                     heldout_scenarios, load_scenarios, normalize_question)
from alignjax.data.synth_client import DEFAULT_TEMPERATURE, FATAL_STATUS, ApiClient, ApiError, public_url
from alignjax.data.synth_requests import PROMPTS, SURFACE_FORMS, Request, build_requests, prompt_messages

log = logging.getLogger("alignjax")

PROG = "alignjax-data synth"
ENV_BASE_URL, ENV_MODEL, ENV_API_KEY = "ALIGNJAX_SYNTH_BASE_URL", "ALIGNJAX_SYNTH_MODEL", "OPENAI_API_KEY"


class Output:
    """Append-only JSONL of finished documents: one flushed line each, resumable, single-writer."""

    def __init__(self, path: str | os.PathLike, fsync: bool = False):
        self.path = Path(path)
        self.fsync = fsync
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = open(self.path, "a+b")
        self._lock = threading.Lock()
        try:
            import fcntl

            fcntl.flock(self._fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except ImportError:  # not POSIX: no cross-process guard
            pass
        except OSError:
            self._fh.close()
            raise SynthError(f"{self.path}: another process is writing this output file") from None
        try:
            self.done, self.generators = self._scan()
        except BaseException:
            self._fh.close()
            raise

    def _scan(self) -> tuple[set[str], set[str]]:
        """request_ids already written; a trailing partial line (a crash mid-write) is truncated."""
        done, modes = set(), set()
        fh = self._fh
        fh.seek(0)
        offset, lineno = 0, 0
        for line in fh:
            lineno += 1
            if not line.endswith(b"\n"):
                log.warning("synth: %s: dropping a partial last line (%d bytes) left by an interrupted run",
                            self.path, len(line))
                fh.truncate(offset)
                break
            offset += len(line)
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                done.add(record["request_id"])
                modes.add(record.get("generator", {}).get("mode", "?"))
            except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, AttributeError):
                raise SynthError(f"{self.path}:{lineno}: not a synth document line (no request_id); "
                                 "use a new --output or repair the file") from None
        fh.seek(0, os.SEEK_END)
        return done, modes

    def write(self, record: dict) -> None:
        line = (json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8")
        with self._lock:
            self._fh.write(line)
            self._fh.flush()
            if self.fsync:
                os.fsync(self._fh.fileno())

    def close(self) -> None:
        self._fh.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


@dataclasses.dataclass
class Summary:
    total: int = 0  # requests selected
    skipped: int = 0  # already in the output
    written: int = 0
    failed: int = 0
    remaining: int = 0  # not attempted (max_new reached, or stopped)
    first_error: str = ""


def _record(request: Request, text: str, generator: dict, forced_heldout: set | None = None) -> dict:
    out = {
        "text": text, "question_id": request.scenario.question_id, "polarity": request.polarity,
        "surface_form": request.form, "generator": generator, "request_id": request.request_id,
        "sample": request.sample, "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    if forced_heldout is not None:
        out.update(heldout_forced=True, heldout=request.scenario.question_id in forced_heldout)
    return out


def run(requests: Sequence[Request], output: str | os.PathLike, *, mode: str = "template",
        client: ApiClient | None = None, concurrency: int = 8, seed: int = 0, max_new: int = 0,
        log_every_s: float = 10.0, forced_heldout: set | None = None, generate=None) -> Summary:
    """Generate every request not already in ``output``; append each document as it finishes.

    ``mode="template"`` runs in order (deterministic file); ``mode="api"`` needs ``client`` and runs
    ``concurrency`` requests at a time. ``max_new`` > 0 stops after that many new documents.
    A 401/403/404 from the endpoint stops the run (SynthError); other failures are counted in the
    summary and left for the next run. ``forced_heldout`` (a --force_heldout run: the held-out
    question_ids among the seeds) adds ``heldout_forced``/``heldout`` to every record.
    ``generate(todo, out, mode, client, generator, concurrency, summary, seed, forced_heldout)``, if
    given, generates the documents instead of this process (a Beam pipeline, ``alignjax.data.beam``).
    """
    if mode not in ("template", "api"):
        raise SynthError(f"mode must be 'template' or 'api', got {mode!r}")
    if mode == "api" and client is None:
        raise SynthError("api mode needs an ApiClient")
    if mode == "template":
        generator = {"mode": "template", "model": None, "base_url": None,
                     "prompt_version": synth_templates.TEMPLATE_VERSION}
    else:
        generator = {"mode": "api", "model": client.model, "base_url": public_url(client.url),
                     "prompt_version": PROMPTS["version"]}
    summary = Summary(total=len(requests))
    with Output(output, fsync=(mode == "api")) as out:
        other = out.generators - {mode}
        if other:
            raise SynthError(f"{out.path} already holds documents from mode={sorted(other)[0]}; "
                             f"use another --output for mode={mode}")
        todo, seen = [], set()
        for r in requests:
            rid = r.request_id
            if rid in out.done:
                summary.skipped += 1
            elif rid not in seen:
                seen.add(rid)
                todo.append(r)
        if max_new > 0 and len(todo) > max_new:
            summary.remaining = len(todo) - max_new
            todo = todo[:max_new]
        log.info("synth: %d requests, %d already in %s, %d to generate (%s mode)",
                 summary.total, summary.skipped, out.path, len(todo), mode)
        if generate is not None:
            generate(todo, out, mode, client, generator, concurrency, summary, seed, forced_heldout)
        elif mode == "template":
            for r in todo:
                out.write(_record(r, synth_templates.template_document(r, seed), generator, forced_heldout))
                summary.written += 1
        else:
            _run_api(todo, out, client, generator, concurrency, summary, log_every_s, forced_heldout)
    log.info("synth: wrote %d documents to %s (%d skipped as done, %d failed, %d left)",
             summary.written, output, summary.skipped, summary.failed, summary.remaining)
    return summary


def _run_api(todo, out, client, generator, concurrency, summary, log_every_s, forced_heldout=None):
    lock = threading.Lock()
    fatal: list[str] = []
    stop = client.stop

    def work(r: Request):
        if stop.is_set():
            return "skipped"
        try:
            text = client.complete(prompt_messages(r))
        except ApiError as e:
            with lock:
                summary.failed += 1
                summary.first_error = summary.first_error or f"{r.scenario.question_id}/{r.polarity}/{r.form}: {e}"
                if e.status in FATAL_STATUS:
                    fatal.append(str(e))
                    stop.set()
            return "failed"
        out.write(_record(r, text, generator, forced_heldout))
        with lock:
            summary.written += 1
        return "written"

    started, last_log = time.monotonic(), time.monotonic()
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=max(1, concurrency), thread_name_prefix="synth")
    try:
        futures = [pool.submit(work, r) for r in todo]
        for i, fut in enumerate(concurrent.futures.as_completed(futures), 1):
            if fut.result() == "skipped":
                summary.remaining += 1
            now = time.monotonic()
            if now - last_log >= log_every_s or i == len(futures):
                last_log = now
                log.info("synth: %d/%d done (%d written, %d failed), %.2f docs/s", i, len(futures),
                         summary.written, summary.failed, summary.written / max(now - started, 1e-9))
    except BaseException:
        stop.set()
        log.warning("synth: stopping; waiting for in-flight requests (they are written if they finish)")
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown(wait=True)
    if fatal:
        raise SynthError(f"stopped: {fatal[0]} (check --base_url, --model and the API key)")


# ----------------------------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------------------------


def _parser():
    p = Parser(prog=PROG, description="Synthetic documents in which an AI takes the aligned or misaligned action.",
               epilog=BEAM_EPILOG)
    p.add_argument("--scenarios", default=None, help="scenario JSONL (default: evals/data/builtin_scenarios.jsonl)")
    p.add_argument("--split", default="seed", help="records with this split field seed documents; 'all' takes every record")
    p.add_argument("--polarity", default="both", choices=("aligned", "misaligned", "both"))
    p.add_argument("--forms", default="all", help=f"comma-separated surface forms or 'all': {', '.join(SURFACE_FORMS)}")
    p.add_argument("--num_docs", type=int, default=0, help="seeded subsample of this many requests (0: all)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--mode", default="template", choices=("template", "api"))
    p.add_argument("--output", required=True, help="JSONL of documents; appended to and resumed")
    p.add_argument("--heldout", action="append", default=[],
                   help="scenario file(s) whose questions must never seed documents (repeatable, comma-separated)")
    p.add_argument("--force_heldout", action="store_true",
                   help="generate even from held-out scenarios (refused otherwise); every document records it")
    p.add_argument("--max_new", type=int, default=0, help="stop after this many new documents (0: no limit)")
    p.add_argument("--dry_run", action="store_true", help="print the request count and the first prompt; write nothing")
    api = p.add_argument_group("api mode")
    api.add_argument("--base_url", default=None, help=f"OpenAI-compatible endpoint (env {ENV_BASE_URL}), e.g. http://host:8000/v1")
    api.add_argument("--model", default=None, help=f"model name (env {ENV_MODEL})")
    api.add_argument("--api_key_env", default=ENV_API_KEY, help="environment variable holding the API key")
    api.add_argument("--concurrency", type=int, default=8)
    api.add_argument("--max_retries", type=int, default=5)
    api.add_argument("--timeout_s", type=float, default=120.0, help="per-request timeout")
    api.add_argument("--backoff_s", type=float, default=1.0, help="first retry delay; doubles each retry (with jitter)")
    api.add_argument("--max_backoff_s", type=float, default=60.0)
    api.add_argument("--temperature", type=float, default=DEFAULT_TEMPERATURE,
                     help="sampling temperature (default: the study's 0.7, Tice et al. 2026 app. G.2)")
    api.add_argument("--max_tokens", type=int, default=1500)
    api.add_argument("--min_words", type=int, default=150, help="shorter completions are retried, then counted as failed")
    return p


def cli(argv: list[str], generate=None) -> int:
    if on_beam(argv):  # apache_beam only then
        return importlib.import_module("alignjax.data.beam").cli("synth", argv)
    args = _parser().parse_args(argv)
    try:
        return _cli(args, generate)
    except SynthError as e:
        config_lib.cli_error(PROG, str(e))
    except KeyboardInterrupt:
        config_lib.cli_error(PROG, "interrupted; rerun the same command to resume", code=130)


def _cli(args, generate=None) -> int:
    for name in ("num_docs", "max_new", "max_retries", "seed", "min_words"):
        if getattr(args, name) < 0:
            raise SynthError(f"--{name} must be >= 0, got {getattr(args, name)}")
    if args.concurrency < 1:
        raise SynthError(f"--concurrency must be >= 1, got {args.concurrency}")
    if args.timeout_s <= 0 or args.max_tokens < 1:
        raise SynthError("--timeout_s must be > 0 and --max_tokens >= 1")
    forms = SURFACE_FORMS if args.forms == "all" else tuple(f.strip() for f in args.forms.split(",") if f.strip())
    for f in forms:
        if f not in SURFACE_FORMS:
            raise SynthError(f"--forms: unknown surface form {f!r}; valid: all, {', '.join(SURFACE_FORMS)}")
    polarities = POLARITIES if args.polarity == "both" else (args.polarity,)
    if args.mode == "api":  # argument errors before any work or logging
        base_url = args.base_url or os.environ.get(ENV_BASE_URL)
        model = args.model or os.environ.get(ENV_MODEL)
        if not base_url:
            raise SynthError(f"api mode needs --base_url or ${ENV_BASE_URL}")
        if not model:
            raise SynthError(f"api mode needs --model or ${ENV_MODEL}")
        if urllib.parse.urlsplit(base_url).scheme not in ("http", "https"):
            raise SynthError(f"--base_url must start with http:// or https://, got {public_url(base_url)!r}")

    path = Path(args.scenarios) if args.scenarios else builtin_scenarios_path()
    everything = load_scenarios(path)
    seeds = [s for s in everything if args.split == "all" or s.split == args.split]
    if not seeds:
        present = sorted({s.split for s in everything if s.split}) or ["none"]
        raise SynthError(f"{path}: no scenarios with split {args.split!r} (splits present: {', '.join(present)}; "
                         "--split=all takes every record)")
    heldout_files = [f.strip() for arg in args.heldout for f in arg.split(",") if f.strip()]
    held = heldout_scenarios(heldout_files, everything)
    forced = None
    if not args.force_heldout:
        check_no_heldout(seeds, held)
    else:  # which seeds are held out, by the same matching, so each document can say so
        held_ids = {s.question_id for s in held}
        held_questions = {normalize_question(s.question) for s in held}
        forced = {s.question_id for s in seeds
                  if s.question_id in held_ids or normalize_question(s.question) in held_questions}
        log.warning("synth: --force_heldout: %d of %d seed scenarios are held out; generating anyway "
                    "(recorded in every document)", len(forced), len(seeds))

    requests = build_requests(seeds, polarities, forms, args.num_docs, args.seed)
    log.info("synth: %d scenarios (split %s) from %s x %d polarities x %d forms = %d combinations; %d requests%s",
             len(seeds), args.split, path, len(polarities), len(forms), len(seeds) * len(polarities) * len(forms),
             len(requests), f" (--num_docs={args.num_docs}, --seed={args.seed})" if args.num_docs else "")

    client = None
    if args.mode == "api":
        api_key = os.environ.get(args.api_key_env) or None
        if not api_key:
            log.warning("synth: $%s is not set; sending requests without an Authorization header", args.api_key_env)
        client = ApiClient(base_url, model, api_key, temperature=args.temperature, max_tokens=args.max_tokens,
                           timeout_s=args.timeout_s, max_retries=args.max_retries, backoff_s=args.backoff_s,
                           max_backoff_s=args.max_backoff_s, min_words=args.min_words)

    if args.dry_run:
        first = requests[0]
        print(f"{len(requests)} requests; first: {first.scenario.question_id} {first.polarity} {first.form}")
        if args.mode == "api":
            for m in prompt_messages(first):
                print(f"--- {m['role']}\n{m['content']}")
        else:
            print(synth_templates.template_document(first, args.seed))
        return 0

    summary = run(requests, args.output, mode=args.mode, client=client, concurrency=args.concurrency,
                  seed=args.seed, max_new=args.max_new, forced_heldout=forced, generate=generate)
    if summary.failed:
        config_lib.cli_error(PROG, f"{summary.failed} of {summary.total} requests failed (first: {summary.first_error}); "
                             "rerun the same command to retry them", code=1)
    return 0
