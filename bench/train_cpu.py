"""Training throughput on CPU: alignjax's real train step vs transformers' GPTNeoXForCausalLM.

    .venv/bin/python bench/train_cpu.py                                  # pythia-70m, batch 8 x seq 512, fp32
    .venv/bin/python bench/train_cpu.py --dtype=float32,bfloat16         # also bf16 compute (fp32 params/Adam)
    .venv/bin/python bench/train_cpu.py --loss-chunk=0,128               # plain logits loss vs the fused one

alignjax runs ``Setup(cfg).train_step`` exactly as ``alignjax-train`` does (configs/pythia.py:<preset>:
AdamW, global-norm clip 1.0, cosine schedule; jit, donated state). ``--loss-chunk`` picks its loss:
0 the plain [tokens, vocab] logits, N > 0 ``train.loss_chunk=N`` (alignjax.loss.chunked_nll: the
unembedding fused with the cross-entropy, N sequence positions at a time); unset, the config's default.
The last line is the first alignjax contender's ratio to torch (with no flags: the default config's).
The peer is ``GPTNeoXForCausalLM`` with the same config (``convert.model_config_to_hf_config``), fp32,
torch.optim.AdamW(betas (0.9, 0.95), eps 1e-8, weight decay 0.1), ``clip_grad_norm_(1.0)``, torch's
default thread count. Both see the same random token batches. After a warm-up (JIT compile), timed
rounds of ``--steps`` steps alternate between the contenders (order reversed every other round), so
load from other processes hits all alike; tokens/s is the median over rounds and "vs torch" the
median of the per-round ratios.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import jax  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402

from alignjax import config as config_lib  # noqa: E402
from alignjax import convert, train  # noqa: E402


def machine() -> str:
    info = dict(line.split(":", 1) for line in Path("/proc/cpuinfo").read_text().splitlines() if ":" in line)
    info = {k.strip(): v.strip() for k, v in info.items()}
    flags = set(info.get("flags", "").split())
    bf16 = [f for f in ("avx512_bf16", "amx_bf16") if f in flags]
    return (f"{info.get('model name', 'unknown CPU')}, {os.cpu_count()} cores"
            f" (bf16 instructions: {', '.join(bf16) or 'none'}); jax {jax.__version__}, torch {torch.__version__}"
            f" ({torch.get_num_threads()} threads), transformers {transformers.__version__}")


def make_batches(n, batch, seq, vocab, seed):
    """n batches of int32 tokens [batch, seq + 1]: inputs are [:, :-1], next-token targets [:, 1:]."""
    rng = np.random.default_rng(seed)
    return [rng.integers(0, vocab, (batch, seq + 1), dtype=np.int32) for _ in range(n)]


class AlignJax:
    def __init__(self, args, dtype, loss_chunk=None):
        cfg = config_lib.load_config_file(f"{ROOT}/configs/pythia.py:{args.preset}")
        cfg.model.dtype = dtype
        cfg.train.batch_size, cfg.train.seq_len, cfg.train.num_steps = args.batch, args.seq, 10**6
        if loss_chunk is not None:
            cfg.train.loss_chunk = loss_chunk
        self.setup = train.Setup(cfg)
        self.model_cfg = self.setup.model_cfg
        with jax.set_mesh(self.setup.mesh):
            self.state = self.setup.init_state()

    def run(self, batches):
        with jax.set_mesh(self.setup.mesh):
            for b in batches:  # as the trainer does: host batch -> global array -> jitted step
                batch = self.setup.global_batch({"inputs": b[:, :-1], "targets": b[:, 1:]})
                self.state, metrics = self.setup.train_step(self.state, batch, {})
            jax.block_until_ready((self.state, metrics))
        return float(metrics["loss"])


class Torch:
    def __init__(self, model_cfg, lr):
        hf_cfg = transformers.GPTNeoXConfig(**convert.model_config_to_hf_config(model_cfg, "float32"))
        torch.manual_seed(0)
        self.model = transformers.GPTNeoXForCausalLM(hf_cfg).float().train()
        self.attn = self.model.config._attn_implementation
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=lr, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1)

    def run(self, batches):
        for b in batches:
            ids = torch.from_numpy(b[:, :-1].astype(np.int64))
            loss = self.model(input_ids=ids, labels=ids).loss  # HF shifts the labels itself
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
            self.opt.step()
            self.opt.zero_grad(set_to_none=True)
        return float(loss.detach())


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", default="70m", help="alignjax.model.PRESETS name")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--seq", type=int, default=512)
    p.add_argument("--dtype", default="float32", help="alignjax compute dtype(s), comma-separated: float32,bfloat16")
    p.add_argument("--loss-chunk", default="", help="alignjax loss chunk(s), comma-separated: 0 = plain logits, "
                   "N = fused unembedding + cross-entropy N positions at a time (default: the config's)")
    p.add_argument("--steps", type=int, default=3, help="steps per timed round")
    p.add_argument("--rounds", type=int, default=5, help="timed rounds per contender")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps per contender first (compiles)")
    args = p.parse_args(argv)

    chunks = [int(c) for c in args.loss_chunk.split(",")] if args.loss_chunk else [None]
    contenders = {f"alignjax {dt}" + ("" if c is None else f" chunk {c}"): AlignJax(args, dt, c)
                  for dt in args.dtype.split(",") for c in chunks}
    model_cfg = next(iter(contenders.values())).model_cfg
    peer = Torch(model_cfg, lr=1e-3)
    contenders[f"torch float32 ({peer.attn})"] = peer
    names = list(contenders)

    for c in contenders.values():
        c.run(make_batches(args.warmup, args.batch, args.seq, model_cfg.vocab_size, seed=1))
    batches = make_batches(args.steps, args.batch, args.seq, model_cfg.vocab_size, seed=0)
    tokens = args.steps * args.batch * args.seq
    times = {name: [] for name in names}
    for r in range(args.rounds):
        for name in names if r % 2 == 0 else names[::-1]:
            t0 = time.perf_counter()
            loss = contenders[name].run(batches)
            times[name].append(time.perf_counter() - t0)
            print(f"  round {r} {name:24s} {tokens / times[name][-1]:7.0f} tokens/s  loss {loss:.3f}", file=sys.stderr)

    print(f"machine: {machine()}")
    print(f"workload: pythia-{args.preset} train step, batch {args.batch} x seq {args.seq}, fp32 params + AdamW; "
          f"median of {args.rounds} rounds x {args.steps} steps")
    print(f"XLA_FLAGS: {os.environ.get('XLA_FLAGS') or '(none)'}")
    print(f"{'':28s} {'tokens/s':>9s} {'vs torch':>9s}")
    ratios = {name: statistics.median(t / a for t, a in zip(times[names[-1]], times[name])) for name in names}
    for name in names:
        print(f"{name:28s} {tokens / statistics.median(times[name]):9.0f} {ratios[name]:8.2f}x")
    first = contenders[names[0]].setup.cfg.train
    print(f"{names[0]} (loss_chunk={first.loss_chunk}) vs torch: {ratios[names[0]]:.2f}x")


if __name__ == "__main__":
    main()
