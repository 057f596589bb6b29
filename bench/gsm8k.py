"""GSM8K generation throughput: alignjax's KV-cache generator vs lm-evaluation-harness (hf backend).

    .venv/bin/python bench/gsm8k.py [--questions=8] [--preset=14m] [--max_gen_toks=64] [--batch_size=8]

Both generate greedily for the same 10-shot GSM8K prompts (``gsm8k_10shot``: lm-eval's gsm8k
prompts and few-shot draws, from the fixture rows in tests/data/capability, cycled to
``--questions``) until "Question:" or ``--max_gen_toks`` tokens, on one random-weight GPT-NeoX of the
given Pythia shape saved as an HF directory, in this one process. Reports questions/s and
generated tokens/s, checks the generations are identical, and prints the ratio last. alignjax is
timed cold (load + JIT) and warm.
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
os.environ.setdefault("ALIGNJAX_CAPABILITY_DATA", str(ROOT / "tests" / "data" / "capability"))

from eval import NEOX, make_model  # noqa: E402  (bench/eval.py: the same model builder)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--questions", type=int, default=8)
    ap.add_argument("--preset", default="14m")
    ap.add_argument("--max_gen_toks", type=int, default=64)
    ap.add_argument("--batch_size", type=int, default=8)
    args = ap.parse_args()

    import torch
    from lm_eval.api.instance import Instance
    from lm_eval.models.huggingface import HFLM

    from alignjax.data import eval_suites as registry
    from alignjax.eval.scoring import Scorer

    task = registry.get_task("gsm8k_10shot")
    base = task.examples()
    prompts = [base[i % len(base)]["context"] for i in range(args.questions)]
    until = list(task.spec.until)
    kwargs = {"until": until, "do_sample": False, "temperature": 0.0, "max_gen_toks": args.max_gen_toks}
    with tempfile.TemporaryDirectory() as tmp:
        make_model(Path(tmp), args.preset)
        lm = HFLM(pretrained=tmp, device="cpu", batch_size=args.batch_size, dtype="float32")
        t0 = time.perf_counter()
        theirs = lm.generate_until([Instance("generate_until", {}, (p, dict(kwargs)), i) for i, p in enumerate(prompts)],
                                   disable_tqdm=True)
        t_lm = time.perf_counter() - t0

        t0 = time.perf_counter()
        scorer = Scorer.from_path(tmp, str(NEOX), batch_size=args.batch_size)
        cold = scorer.generate(prompts, args.max_gen_toks, stop=until)
        t_cold = time.perf_counter() - t0
        scorer.stats.clear()
        t0 = time.perf_counter()
        ours = scorer.generate(prompts, args.max_gen_toks, stop=until)
        t_warm = time.perf_counter() - t0
        tokens = scorer.stats["generated_tokens"]

    q = args.questions
    n_prompt = len(scorer.tokenizer.encode(prompts[0])) - 1
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}, "
          f"torch {torch.__version__} ({torch.get_num_threads()} threads); pythia-{args.preset} shape, {q} GSM8K "
          f"10-shot prompts (~{n_prompt} tokens), greedy, <= {args.max_gen_toks} new tokens, batch {args.batch_size}")
    print(f"{'generator':44s} {'seconds':>8s} {'questions/s':>12s} {'tokens/s':>9s}")
    print(f"{'lm-eval 0.4 hf backend (HFLM.generate_until)':44s} {t_lm:8.2f} {q / t_lm:12.2f} {tokens / t_lm:9.1f}")
    print(f"{'alignjax Scorer.generate, cold (load + jit)':44s} {t_cold:8.2f} {q / t_cold:12.2f} {tokens / t_cold:9.1f}")
    print(f"{'alignjax Scorer.generate, warm':44s} {t_warm:8.2f} {q / t_warm:12.2f} {tokens / t_warm:9.1f}")
    print(f"identical generations: {ours == theirs == cold}")
    print(f"ratio alignjax warm / lm-eval hf (questions/s): {t_lm / t_warm:.2f}x (cold: {t_lm / t_cold:.2f}x)")


if __name__ == "__main__":
    main()
