"""Multiple-choice scoring throughput on CPU: alignjax.eval.scoring vs an lm-eval-style torch loop.

    .venv/bin/python bench/scoring_cpu.py                    # pythia-14m shape, 1000 two-option prompts
    .venv/bin/python bench/scoring_cpu.py --size=70m --n=200

Both score the same (context, " A"/" B") requests on the same random GPT-NeoX weights with the
gpt-neox-20b tokenizer. The peer is a rough stand-in for lm-evaluation-harness's ``hf`` backend:
``_encode_pair``, requests sorted longest first, right-padded batches through
``GPTNeoXForCausalLM``, log_softmax over the full [B, T, V] logits, and its one-token-continuation
cache (options sharing a context run once), torch's default thread count. Not lm-eval itself
(not installed here): the figure to quote against it is measured with lm-eval.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import jax  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402

from alignjax import model as model_lib  # noqa: E402
from alignjax import sharding  # noqa: E402
from alignjax.data import builtin  # noqa: E402
from alignjax.data.tokenizer import Tokenizer  # noqa: E402
from alignjax.eval import scoring  # noqa: E402

TOKENIZER = ROOT.parent / "shared" / "data" / "tokenizers" / "gpt-neox-20b-tokenizer.json"


def prompts(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    docs = builtin.documents()
    out = []
    for _ in range(n):
        words = rng.choice(docs).split()
        k = rng.randint(30, 110)
        start = rng.randint(0, max(len(words) - k, 0))
        passage = " ".join(words[start:start + k])
        out.append(f"Passage: {passage}\nQuestion: Is this passage about a king?\nA. Yes\nB. No\nAnswer:")
    return out


def hf_model(size: str) -> transformers.GPTNeoXForCausalLM:
    p = model_lib.PRESETS[size]
    torch.manual_seed(0)
    cfg = transformers.GPTNeoXConfig(
        vocab_size=p["vocab_size"], hidden_size=p["d_model"], num_hidden_layers=p["num_layers"],
        num_attention_heads=p["num_heads"], intermediate_size=p["d_ff"], max_position_embeddings=2048,
        rotary_pct=0.25, rotary_emb_base=10000, use_parallel_residual=True, tie_word_embeddings=False)
    return transformers.GPTNeoXForCausalLM(cfg).eval()


def lm_eval_like(model, tok, requests, batch_size: int):
    def encode_pair(context, continuation):
        n = len(context) - len(context.rstrip())
        if n:
            context, continuation = context[:-n], context[-n:] + continuation
        whole = tok.encode(context + continuation, add_special_tokens=False)
        ctx = tok.encode(context, add_special_tokens=False)
        return ctx, whole[len(ctx):]

    pairs = [encode_pair(c, k) for c, k in requests]
    groups: dict[tuple, list[int]] = {}  # lm-eval's one-token-continuation logits cache
    for i, (ctx, cont) in enumerate(pairs):
        groups.setdefault(tuple((ctx + cont)[:-1]), []).append(i)
    keys = sorted(groups, key=lambda k: (-len(k), k))
    out = [None] * len(pairs)
    with torch.no_grad():
        for s in range(0, len(keys), batch_size):
            batch = keys[s:s + batch_size]
            t = max(len(k) for k in batch)
            inp = torch.zeros((len(batch), t), dtype=torch.long)
            for j, k in enumerate(batch):
                inp[j, :len(k)] = torch.tensor(k)
            logp = torch.log_softmax(model(inp).logits, dim=-1)
            for j, k in enumerate(batch):
                for i in groups[k]:
                    cont = pairs[i][1]
                    lp = logp[j, len(k) - len(cont):len(k)]
                    target = torch.tensor(cont)
                    out[i] = (float(lp.gather(-1, target[:, None]).sum()), bool((lp.argmax(-1) == target).all()))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", default="14m", choices=list(model_lib.PRESETS))
    ap.add_argument("--n", type=int, default=1000, help="two-option prompts")
    ap.add_argument("--batch_size", type=int, default=32)
    ap.add_argument("--skip_peer", action="store_true")
    args = ap.parse_args()
    tok = Tokenizer.load(str(TOKENIZER))
    contexts = prompts(args.n)
    choices = [[" A", " B"]] * len(contexts)
    hf = hf_model(args.size)
    with tempfile.TemporaryDirectory() as d:
        hf.save_pretrained(d, safe_serialization=True)
        mesh = sharding.make_mesh()
        cfg, params, graphdef = scoring.load_model(d, mesh)
    scorer = scoring.Scorer(cfg, params, graphdef, tok, mesh, batch_size=args.batch_size)
    lengths = [len(c) for c, _ in scorer.encode_pairs([(c, " A") for c in contexts])]
    print(f"pythia-{args.size} shape, random weights; {args.n} prompts x 2 options, context "
          f"{min(lengths)}-{max(lengths)} tokens (mean {np.mean(lengths):.0f}); {jax.device_count()} "
          f"jax device(s), torch threads {torch.get_num_threads()}")
    t0 = time.perf_counter()
    got = scorer.choice_logprobs(contexts, choices)
    cold = time.perf_counter() - t0
    t0 = time.perf_counter()
    got = scorer.choice_logprobs(contexts, choices)
    warm = time.perf_counter() - t0
    print(f"alignjax: {args.n / cold:7.1f} questions/s cold (compiles included, {cold:.1f} s), "
          f"{args.n / warm:7.1f} warm ({warm:.1f} s); rows {scorer.stats['rows'] // 2}, "
          f"batches {scorer.stats['batches'] // 2}")
    if args.skip_peer:
        return
    hf_tok = transformers.PreTrainedTokenizerFast(tokenizer_file=str(TOKENIZER))
    flat = [(c, ch) for c, chs in zip(contexts, choices) for ch in chs]
    t0 = time.perf_counter()
    want = lm_eval_like(hf, hf_tok, flat, args.batch_size)
    peer = time.perf_counter() - t0
    print(f"lm-eval-like torch: {args.n / peer:7.1f} questions/s ({peer:.1f} s); "
          f"alignjax speed-up {peer / warm:.1f}x warm, {peer / cold:.1f}x cold")
    diff = max(abs(g[0] - w[0]) for g, w in zip((x for row in got for x in row), want))
    print(f"max |loglik difference| {diff:.2e}")


if __name__ == "__main__":
    main()
