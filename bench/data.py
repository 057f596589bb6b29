"""Data pipeline throughput on one host vs the feed rate one TPU v5p host needs for 6.9B.

    .venv/bin/python bench/data.py [--tokenizer=<tokenizer.json or hub id>] [--mb=40]

Paths measured, each pulling packed training batches (seq 2048, 8 rows) through the real
``alignjax.data.pipeline`` iterator:
  (a) pre-tokenized ArrayRecord shards (``alignjax-data tokenize``) -> packed batches
  (b) raw JSONL -> tokenize -> packed batches
  (c) the AI-discourse blocklist, in MB/s of text (and as a ``filtered`` condition pipeline)
  (d) ``alignjax-data tokenize`` and ``filter`` as CLI runs: in process, and as Beam pipelines
      on DirectRunner with 1 and 2 worker processes (start-up included), over ``--files`` input
      files, with the hours they project for 2 TB of text on 100 workers
The peer: tokens/s per host that keep 4 v5p chips at 50% MFU on Pythia-6.9B at seq 2048,
from the model's FLOPs per token and the chip's peak (alignjax.metrics).
Corpus: the built-in KJV chapters repeated to ``--mb`` MB, so it runs offline.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("JAX_PLATFORMS", "cpu")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from alignjax import config as config_lib  # noqa: E402
from alignjax import metrics, model  # noqa: E402
from alignjax.data import blocklist, builtin, mixture, pipeline, shards, sources  # noqa: E402
from alignjax.data import cli as data_cli  # noqa: E402
from alignjax.data.tokenizer import Tokenizer  # noqa: E402

NEOX = Path(__file__).resolve().parents[2] / "shared/data/tokenizers/gpt-neox-20b-tokenizer.json"


def feed_rate(chips_per_host: int = 4, mfu: float = 0.5) -> float:
    fpt = model.flops_per_token(model.ModelConfig(**model.PRESETS["6.9b"]), 2048)
    return chips_per_host * mfu * metrics.PEAK_FLOPS["TPU v5p"] / fpt


def pipeline_rate(corpus: str, tokenizer: str, seconds: float, condition: str = "unfiltered") -> float:
    cfg = config_lib.default_config()
    cfg.model.vocab_size = 50432
    cfg.train.update(seq_len=2048, batch_size=8)
    cfg.data.update(corpus=corpus, tokenizer=tokenizer, condition=condition)
    data = pipeline.make_train_iterator(cfg)
    next(data.iterator)  # start-up (file opening, prefetch thread)
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        n += next(data.iterator)["inputs"].size
    return n / (time.perf_counter() - t0)


BEAM = ["--runner=DirectRunner", "--direct_running_mode=multi_processing"]


def cli_seconds(command: str, inputs: Path, output: Path, extra: list[str]) -> float:
    """Wall seconds of one ``alignjax-data <command>`` run (the CLI as a user runs it)."""
    argv = [command, f"--input={inputs}", f"--output={output}", *extra]
    t0 = time.perf_counter()
    if data_cli.main(argv) != 0:
        raise SystemExit(f"alignjax-data {' '.join(argv)} failed")
    return time.perf_counter() - t0


def beam_rates(raw_files: Path, size: int, tokenizer: str, tmp: Path) -> list[tuple[str, str, float, float]]:
    """(command, how, MB/s of text wall-clock, MB/s past start-up) for tokenize and filter: in
    process, Beam 1 and 2 workers. Start-up (imports, tokenizer load, worker processes) is the
    same command's time on a one-document input, so the second rate is what a long run keeps."""
    tiny = tmp / "tiny"
    tiny.mkdir()
    first = next(raw_files.iterdir())
    (tiny / "one.jsonl").write_text(first.open().readline())
    rows = []
    for command, extra in (("tokenize", [f"--tokenizer={tokenizer}"]), ("filter", [])):
        for how, flags in (("in process", []), ("Beam DirectRunner, 1 worker", BEAM + ["--direct_num_workers=1"]),
                           ("Beam DirectRunner, 2 workers", BEAM + ["--direct_num_workers=2"])):
            n = len(rows)
            start_up = cli_seconds(command, tiny, tmp / f"{command}-{n}-tiny", extra + flags)
            wall = cli_seconds(command, raw_files, tmp / f"{command}-{n}", extra + flags)
            rows.append((command, how, size / 1e6 / wall, size / 1e6 / max(wall - start_up, 1e-9)))
    return rows


def projection(rows, workers: int = 100, tb: float = 2.0) -> list[str]:
    """hours = bytes / (one worker's bytes/s x workers x efficiency) / 3600, with one worker's rate
    past start-up and efficiency the measured 2-worker speed-up over 1 worker, halved (how much of
    a second worker a run keeps)."""
    lines = []
    for command in ("tokenize", "filter"):
        rate = {how: r for c, how, _, r in rows if c == command}
        one, two = rate["Beam DirectRunner, 1 worker"], rate["Beam DirectRunner, 2 workers"]
        eff = min(1.0, two / one / 2)
        hours = tb * 1e12 / (one * 1e6 * workers * eff) / 3600
        single = tb * 1e12 / (rate["in process"] * 1e6) / 3600
        lines.append(f"{command}: {tb:.0f} TB on {workers} workers = {tb:.0f}e12 B / ({one:.2f} MB/s x {workers} x "
                     f"{eff:.2f} efficiency) / 3600 = {hours:.1f} h (one process: {single:.0f} h)")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokenizer", default=str(NEOX) if NEOX.exists() else "EleutherAI/gpt-neox-20b")
    ap.add_argument("--mb", type=float, default=40.0, help="size of the generated raw corpus")
    ap.add_argument("--seconds", type=float, default=10.0, help="time per pipeline measurement")
    ap.add_argument("--files", type=int, default=8, help="input files for the CLI runs (d)")
    args = ap.parse_args()

    docs = builtin.documents()
    per_pass = sum(len(d.encode()) for d in docs)
    reps = max(1, int(args.mb * 1e6 / per_pass))
    peer = feed_rate()
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "corpus.jsonl"
        with raw.open("w") as f:
            for r in range(reps):
                for d in docs:
                    f.write(json.dumps({"text": f"[{r}] {d}"}) + "\n")
        tok = Tokenizer.load(args.tokenizer)
        t0 = time.perf_counter()
        shards.write_shards(sources.DocumentSource(str(raw)), tok, Path(tmp) / "tok")
        tokenize_s = time.perf_counter() - t0
        a = pipeline_rate(str(Path(tmp) / "tok"), args.tokenizer, args.seconds)
        b = pipeline_rate(str(raw), args.tokenizer, args.seconds)

        terms = blocklist.Blocklist.load()
        texts = [json.loads(line)["text"] for line in raw.open()]
        size = sum(len(t.encode()) for t in texts)
        t0 = time.perf_counter()
        flagged = sum(terms.is_flagged(t) for t in texts)
        filter_mb_s = size / 1e6 / (time.perf_counter() - t0)
        c = pipeline_rate(str(raw), args.tokenizer, args.seconds, condition="filtered")

        lines = raw.read_text().splitlines(keepends=True)
        raw_files = Path(tmp) / "parts"
        raw_files.mkdir()
        for k in range(args.files):
            (raw_files / f"part-{k}.jsonl").write_text("".join(lines[k::args.files]))
        d = beam_rates(raw_files, size, args.tokenizer, Path(tmp))

    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; corpus {size / 1e6:.1f} MB "
          f"({len(texts):,} docs); tokenizer {Path(args.tokenizer).name}; writing the shards took {tokenize_s:.1f} s")
    print(f"peer: 6.9B at 50% MFU on 4 v5p chips needs {peer:,.0f} tokens/s per host")
    print(f"{'path':52s} {'rate':>16s} {'x peer':>8s} {'target':>7s}")
    print(f"{'(a) pre-tokenized ArrayRecord -> packed batches':52s} {a:>10,.0f} tok/s {a / peer:>7.1f}x {'>= 20x':>7s}")
    print(f"{'(b) raw JSONL -> tokenize -> packed batches':52s} {b:>10,.0f} tok/s {b / peer:>7.1f}x {'>= 1x':>7s}")
    print(f"{'(c) blocklist filter':52s} {filter_mb_s:>11,.1f} MB/s {'':>8s} {'':>7s}")
    print(f"{'(c) raw JSONL, filtered condition -> packed batches':52s} {c:>10,.0f} tok/s {c / peer:>7.1f}x {'':>7s}")
    print(f"(flagged {flagged / len(texts):.1%} of documents)")
    print(f"(d) alignjax-data CLI runs over {args.files} files, MB/s of text: wall-clock / past start-up")
    for command, how, wall, steady in d:
        print(f"    {command:9s} {how:40s} {wall:>8,.1f} / {steady:>6,.1f} MB/s")
    print("\n".join(projection(d)))


if __name__ == "__main__":
    main()
