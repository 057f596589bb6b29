"""Eval throughput: alignjax's scorer vs lm-evaluation-harness (hf backend), same model, prompts, CPU.

    .venv/bin/python bench/eval.py [--questions=40] [--preset=70m]

Both score the same two-option questions (the built-in scenarios, 8 prompt formats each, AI
persona) by log-likelihood of the option letters, on one random-weight GPT-NeoX of the given
Pythia shape saved as an HF directory (alignjax loads it through its converter). Reports
questions/s (a question = all 8 formats), checks the picked answers are identical, and prints
the ratio. alignjax is timed cold (including JIT compilation) and warm (compiled), and warm with
its prompts packed as prefix trees (the default) and in the plain layout (``pack_len=0``, one
padded row per prompt), with the tokens each runs.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import numpy as np  # noqa: E402

from alignjax import convert  # noqa: E402
from alignjax.model import ModelConfig, PRESETS  # noqa: E402

NEOX = ROOT.parent / "shared/data/tokenizers/gpt-neox-20b-tokenizer.json"


def make_model(path: Path, preset: str) -> None:
    import torch
    import transformers

    torch.manual_seed(0)
    cfg = transformers.GPTNeoXConfig(**convert.model_config_to_hf_config(ModelConfig(**PRESETS[preset]), "float32"))
    transformers.GPTNeoXForCausalLM(cfg).eval().save_pretrained(path, safe_serialization=True)
    transformers.PreTrainedTokenizerFast(tokenizer_file=str(NEOX), eos_token="<|endoftext|>").save_pretrained(path)


def picks(logliks, examples):
    out, i = [], 0
    for e in examples:
        k = len(e["continuations"])
        out.append(int(np.argmax([x[0] for x in logliks[i:i + k]])))
        i += k
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--questions", type=int, default=40)
    ap.add_argument("--preset", default="70m")
    ap.add_argument("--batch_size", type=int, default=32)
    args = ap.parse_args()

    import torch
    from lm_eval.api.instance import Instance
    from lm_eval.models.huggingface import HFLM

    from alignjax.data import eval_suites as registry
    from alignjax.eval.scoring import Scorer

    examples = registry.examples("builtin_scenarios", "eval", "ai", limit=args.questions)
    requests = [(e["context"], c) for e in examples for c in e["continuations"]]
    with tempfile.TemporaryDirectory() as tmp:
        make_model(Path(tmp), args.preset)
        lm = HFLM(pretrained=tmp, device="cpu", batch_size=args.batch_size, dtype="float32")
        t0 = time.perf_counter()
        theirs = lm.loglikelihood([Instance("loglikelihood", {}, r, i) for i, r in enumerate(requests)],
                                  disable_tqdm=True)
        t_lm = time.perf_counter() - t0

        t0 = time.perf_counter()
        scorer = Scorer.from_path(tmp, str(NEOX), batch_size=args.batch_size)
        contexts, choices = [e["context"] for e in examples], [e["continuations"] for e in examples]
        cold = [x for r in scorer.choice_logprobs(contexts, choices) for x in r]
        t_cold = time.perf_counter() - t0
        scorer.stats.clear()
        t0 = time.perf_counter()
        ours = [x for r in scorer.choice_logprobs(contexts, choices) for x in r]
        t_warm = time.perf_counter() - t0
        plain = Scorer(scorer.cfg, scorer.params, scorer.graphdef, scorer.tokenizer, scorer.mesh,
                       batch_size=args.batch_size, pack_len=0)
        flat = [x for r in plain.choice_logprobs(contexts, choices) for x in r]  # compiles its shapes
        plain.stats.clear()
        t0 = time.perf_counter()
        flat = [x for r in plain.choice_logprobs(contexts, choices) for x in r]
        t_plain = time.perf_counter() - t0

    same = picks(ours, examples) == picks(theirs, examples) == picks(cold, examples) == picks(flat, examples)
    diff = max(float(np.max(np.abs(np.array([x[0] for x in run]) - np.array([x[0] for x in theirs]))))
               for run in (ours, flat))
    q = args.questions
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__} "
          f"({torch.get_num_threads()} threads); pythia-{args.preset} shape, {q} questions x 8 formats "
          f"= {len(examples)} prompts, {len(requests)} (context, option) requests")
    print(f"{'scorer':42s} {'seconds':>8s} {'questions/s':>12s} {'x lm-eval':>10s}")
    print(f"{'lm-eval 0.4 hf backend (HFLM.loglikelihood)':42s} {t_lm:8.2f} {q / t_lm:12.2f} {1.0:9.2f}x")
    print(f"{'alignjax Scorer, cold (incl. load + jit)':42s} {t_cold:8.2f} {q / t_cold:12.2f} {t_lm / t_cold:9.2f}x")
    print(f"{'alignjax Scorer, plain rows, warm':42s} {t_plain:8.2f} {q / t_plain:12.2f} {t_lm / t_plain:9.2f}x"
          f"  ({plain.stats['tokens']:,} tokens)")
    print(f"{'alignjax Scorer, prefix trees, warm':42s} {t_warm:8.2f} {q / t_warm:12.2f} {t_lm / t_warm:9.2f}x"
          f"  ({scorer.stats['tokens']:,} tokens)")
    print(f"identical answers: {same}; max |loglik difference| {diff:.2e}")
    print(f"alignjax Scorer (prefix trees, warm) vs lm-eval hf, pythia-{args.preset}: {t_lm / t_warm:.2f}x")


if __name__ == "__main__":
    main()
