"""Judge throughput: verdicts/s of alignjax's judge client at concurrency 1 vs N.

    .venv/bin/python bench/judge.py [--verdicts=200] [--latency_ms=20] [--concurrency=16]

The endpoint is the tests' scripted judge (tests/test_em.py: an OpenAI-compatible server on
127.0.0.1) with a fixed per-request latency, standing in for a remote judge whose cost is its
round trip. Each run judges distinct answers with an empty cache, so every verdict is a request.
Prints verdicts/s at each concurrency and, last, the ratio of concurrency N over 1 (the peer:
the same client with one request in flight at a time).
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from alignjax.eval.judge import Judge  # noqa: E402
from test_em import ScriptedJudge  # noqa: E402


def rate(url: str, n: int, concurrency: int, tag: str) -> float:
    with tempfile.TemporaryDirectory() as d:
        judge = Judge(url, "scripted", cache=Path(d) / "cache.jsonl", concurrency=concurrency)
        pairs = [(f"question {i % 8}", f"{tag} answer {i}") for i in range(n)]
        t0 = time.perf_counter()
        verdicts = judge.score(pairs, "alignment")
        seconds = time.perf_counter() - t0
    assert len(verdicts) == n and judge.requests == n and all(v.status == "ok" for v in verdicts)
    return n / seconds


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--verdicts", type=int, default=200)
    ap.add_argument("--latency_ms", type=float, default=20.0)
    ap.add_argument("--concurrency", type=int, default=16)
    args = ap.parse_args()
    logging.getLogger("alignjax").setLevel(logging.WARNING)
    with ScriptedJudge(latency_s=args.latency_ms / 1000) as srv:
        rate(srv.url, 16, 4, "warmup")
        one = rate(srv.url, args.verdicts, 1, "c1")
        many = rate(srv.url, args.verdicts, args.concurrency, f"c{args.concurrency}")
    print(f"scripted judge on 127.0.0.1, {args.latency_ms:g} ms per request, {args.verdicts} verdicts")
    print(f"concurrency 1: {one:.1f} verdicts/s")
    print(f"concurrency {args.concurrency}: {many:.1f} verdicts/s")
    print(f"ratio concurrency {args.concurrency} / concurrency 1 (same client, one request in flight): {many / one:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
