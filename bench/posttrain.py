"""Post-training throughput on CPU: SFT and DPO train steps vs the pretraining step, same model.

    .venv/bin/python bench/posttrain.py                        # pythia-14m shape, 8 rows x 256 tokens
    .venv/bin/python bench/posttrain.py --preset=70m --seq=512

Every contender is ``train.Setup(cfg).train_step`` exactly as ``alignjax-train`` runs it, with
``train.objective`` lm, sft or dpo, on the same number of sequences per step (DPO: batch/2 pairs,
so chosen + rejected = batch rows), all in one process:
- lm: random tokens, every target weighted;
- sft: two packed conversations per row (segment ids, restarting positions), loss on the second
  half of each (the assistant's turn);
- dpo (on the fly): pairs sharing a prompt, loss on the responses, the reference a forward pass
  of the frozen params inside the step;
- dpo (precompute): the same with reference log-probs supplied in the batch (no reference pass).
After a warm-up (compiles), timed rounds alternate between contenders (order reversed every other
round); tokens/s counts every row's tokens; ratios are medians of per-round ratios. The DPO cost
model: a policy forward + backward (~3 forward-equivalents) plus at most one reference forward per
pair, so DPO on the fly / SFT per token should be about 4/3, and precompute about 1.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import jax  # noqa: E402
import numpy as np  # noqa: E402

from alignjax import config as config_lib  # noqa: E402
from alignjax import train  # noqa: E402


def _cfg(args, objective, reference="on_the_fly"):
    cfg = config_lib.load_config_file(f"{ROOT}/configs/pythia.py:{args.preset}")
    cfg.train.objective = objective
    cfg.dpo.reference = reference
    rows = args.batch // 2 if objective == "dpo" else args.batch
    cfg.train.update(dict(batch_size=rows, seq_len=args.seq, num_steps=10**6))
    cfg.mesh.update(dict(data=1))
    return cfg


def batches(kind, n, rows, seq, vocab, seed):
    rng = np.random.default_rng(seed)
    half = seq // 2
    out = []
    for _ in range(n):
        tok = rng.integers(3, vocab, (rows, seq + 1), dtype=np.int32)
        second = np.arange(seq) >= half
        if kind == "lm":
            out.append({"inputs": tok[:, :-1], "targets": tok[:, 1:]})
        elif kind == "sft":  # two conversations per row, the assistant half of each carries loss
            pos = np.where(second, np.arange(seq) - half, np.arange(seq))
            w = ((pos >= half // 2) & (pos < half - 1)).astype(np.float32)
            out.append({"inputs": tok[:, :-1], "targets": tok[:, 1:], "weights": np.broadcast_to(w, (rows, seq)).copy(),
                        "positions": np.broadcast_to(pos, (rows, seq)).astype(np.int32).copy(),
                        "segment_ids": np.broadcast_to(1 + second, (rows, seq)).astype(np.int32).copy()})
        else:  # pairs: a shared prompt (first half), different responses
            b = {}
            for side in ("chosen", "rejected"):
                t = tok.copy()
                t[:, half:] = rng.integers(3, vocab, (rows, seq + 1 - half), dtype=np.int32)
                b.update({f"{side}_inputs": t[:, :-1], f"{side}_targets": t[:, 1:],
                          f"{side}_weights": np.broadcast_to(second.astype(np.float32), (rows, seq)).copy(),
                          f"{side}_positions": np.broadcast_to(np.arange(seq, dtype=np.int32), (rows, seq)).copy()})
            if kind == "dpo_pre":
                b.update(ref_chosen=rng.normal(-300, 5, rows).astype(np.float32),
                         ref_rejected=rng.normal(-300, 5, rows).astype(np.float32))
            out.append(b)
    return out


class Contender:
    def __init__(self, args, kind):
        objective = {"lm": "lm", "sft": "sft", "dpo": "dpo", "dpo_pre": "dpo"}[kind]
        self.kind = kind
        self.setup = train.Setup(_cfg(args, objective, "precompute" if kind == "dpo_pre" else "on_the_fly"))
        with jax.set_mesh(self.setup.mesh):
            params = self.setup._init_params(0)
            self.frozen = {"ref": self.setup.copy_params(params)} if self.setup.frozen_keys else {}
            self.state = self.setup.init_state(params)
        self.rows = self.setup.stages[0].batch_size * self.setup.rows_per_example

    def run(self, bs):
        with jax.set_mesh(self.setup.mesh):
            for b in bs:
                self.state, m = self.setup.train_step(self.state, self.setup.global_batch(b), self.frozen)
            jax.block_until_ready((self.state, m))
        return float(m["loss"])


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", default="14m")
    p.add_argument("--batch", type=int, default=8, help="sequences per step (DPO: batch/2 pairs)")
    p.add_argument("--seq", type=int, default=256)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--rounds", type=int, default=5)
    args = p.parse_args(argv)
    kinds = ["lm", "sft", "dpo", "dpo_pre"]
    names = {"lm": "pretraining (lm)", "sft": "SFT", "dpo": "DPO, reference on the fly", "dpo_pre": "DPO, precomputed reference"}
    cs = {k: Contender(args, k) for k in kinds}
    vocab = cs["lm"].setup.model_cfg.vocab_size
    data = {k: batches(k, args.steps, cs[k].setup.stages[0].batch_size, args.seq, vocab, 0) for k in kinds}
    for k in kinds:
        cs[k].run(data[k][:1])  # compile
    times = {k: [] for k in kinds}
    for r in range(args.rounds):
        for k in kinds if r % 2 == 0 else kinds[::-1]:
            t0 = time.perf_counter()
            loss = cs[k].run(data[k])
            times[k].append(time.perf_counter() - t0)
            tps = args.steps * cs[k].rows * args.seq / times[k][-1]
            print(f"  round {r} {names[k]:28s} {tps:8.0f} tokens/s  loss {loss:.3f}", file=sys.stderr)
    tokens = {k: args.steps * cs[k].rows * args.seq for k in kinds}
    ratio = lambda a, b: statistics.median(  # noqa: E731  per-round ratio of tokens/s
        (tokens[a] / ta) / (tokens[b] / tb) for ta, tb in zip(times[a], times[b]))
    print(f"pythia-{args.preset} shape, {args.batch} sequences x {args.seq} tokens per step, {jax.device_count()} "
          f"CPU device(s), jax {jax.__version__}")
    for k in kinds:
        tps = statistics.median(tokens[k] / t for t in times[k])
        print(f"{names[k]:28s} {tps:8.0f} tokens/s  x{ratio(k, 'lm'):.2f} of pretraining")
    print(f"DPO step time per token / SFT: on the fly {1 / ratio('dpo', 'sft'):.2f}, "
          f"precomputed {1 / ratio('dpo_pre', 'sft'):.2f} (cost model: 4/3 and 1)")


if __name__ == "__main__":
    main()
