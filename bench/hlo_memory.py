"""Peak HBM of a compiled XLA program and what is live there, from its dump.

    XLA_FLAGS=--xla_dump_to=DIR JAX_PLATFORMS=cpu .venv/bin/alignjax-plan ...   # any AOT compile
    .venv/bin/python bench/hlo_memory.py DIR [--module=jit_train_step] [--top=30]

Replays the buffer assignment's values (``*after_optimizations-buffer-assignment.txt``) over
their live ranges in the final schedule (``*after_optimizations-live-range.txt``) and prints the
peak, the bytes live there grouped by shape, and the largest values live there with their live
ranges. The memory-usage report XLA writes lists buffers by offset; this says which values share
the peak, and for how long each lives (a buffer alive from the forward pass to the end of the step
is the kind of thing to look for). Aliased values are counted once each, so the peak is an upper
bound on the heap's own figure; the ranking is what it is for.
"""

from __future__ import annotations

import argparse
import collections
import glob
import re
import sys


def load(dump: str, module: str):
    def one(suffix):
        found = sorted(glob.glob(f"{dump}/*{module}*after_optimizations-{suffix}.txt"))
        if not found:
            sys.exit(f"hlo_memory: no *{module}*after_optimizations-{suffix}.txt in {dump}")
        return found[-1]

    size, shape = {}, {}
    for line in open(one("buffer-assignment")):
        m = re.match(r"\s*value: <\d+ (\S+) @\d+> \(size=(\d+),offset=\d+\): (.*)", line)
        if m:
            size[m.group(1)], shape[m.group(1)] = int(m.group(2)), m.group(3).split("{")[0]
    ranges, in_ranges = {}, False
    for line in open(one("live-range")):
        if "BufferLiveRange" in line:
            in_ranges = True
        elif in_ranges and (m := re.match(r"\s*(\S+):(\d+)-(\d+)", line)):
            ranges[m.group(1).replace("{}", "")] = (int(m.group(2)), int(m.group(3)))
    return size, shape, ranges


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dump")
    ap.add_argument("--module", default="jit_train_step")
    ap.add_argument("--top", type=int, default=30)
    args = ap.parse_args()
    size, shape, ranges = load(args.dump, args.module)
    end = max(e for _, e in ranges.values()) + 2
    delta = [0] * (end + 1)
    for v, (s, e) in ranges.items():
        delta[s] += size.get(v, 0)
        delta[e + 1] -= size.get(v, 0)
    live, peak, at = 0, 0, 0
    for t in range(end):
        live += delta[t]
        if live > peak:
            peak, at = live, t
    alive = sorted(((size.get(v, 0), v) for v, (s, e) in ranges.items() if s <= at <= e), reverse=True)
    print(f"peak {peak / 2**30:.2f} GiB at schedule step {at} of {end - 2}")
    by_shape = collections.Counter()
    for n, v in alive:
        by_shape[shape.get(v, "?")] += n
    print("live at the peak, by shape:")
    for s, n in by_shape.most_common(args.top):
        print(f"  {n / 2**20:9.1f} MiB  {s}")
    print("largest values live at the peak (live range in schedule steps):")
    for n, v in alive[:args.top]:
        print(f"  {n / 2**20:9.1f} MiB  {v}  {ranges[v][0]}-{ranges[v][1]}  {shape.get(v, '?')}")


if __name__ == "__main__":
    main()
