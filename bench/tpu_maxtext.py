"""The planner's Pythia-6.9B step against MaxText's, both AOT-compiled for 128 v5p chips on this host.

    .venv/bin/python bench/tpu_maxtext.py [--remat=full,none,save_all]

alignjax: ``alignjax.plan.build_plan`` (what ``alignjax-plan`` prints) for configs/pythia.py:6.9b on
``v5p-256`` (128 chips), pure FSDP, 8 sequences of 2,048 per chip, grad_accum 1, bf16, splash
attention, once per remat policy. MaxText: its ``train_compile`` of the same shape on this host with
the same jax/libtpu, read from ../shared/notes/tpu-planning.md (MaxText is not installed here): the
NeoX-6.9B shape with the flash kernel and full remat (the equal setting) and llama2-7b with
``minimal`` remat (its best). Kernel time is excluded on both sides, as the notes' figures are.
Prints step time and HBM against the equal setting for ``full`` and tokens/s/chip against MaxText's
best for every policy; the last line is the best alignjax policy against MaxText's best.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("JAX_PLATFORMS", "cpu")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
NOTES = ROOT.parent / "shared/notes/tpu-planning.md"


def maxtext_rows(path: Path) -> dict[tuple[str, str, str], list[str]]:
    """(model, attention, remat) -> the notes' MaxText table row cells ("same" = the NeoX shape)."""
    rows, model = {}, None
    for line in path.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 7 and cells[3].replace(".", "").isdigit():
            model = model if cells[0] == "same" else cells[0]
            rows[("neox" if model.startswith("NeoX") else model, cells[1], cells[2])] = cells
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--remat", default="full,none,save_all")
    args = ap.parse_args()

    from alignjax import config as config_lib
    from alignjax import plan as plan_lib

    rows = maxtext_rows(NOTES)
    try:
        equal, best = rows[("neox", "flash kernel", "full")], rows[("llama2-7b", "flash kernel", "minimal")]
    except KeyError as e:
        sys.exit(f"tpu_maxtext: {NOTES} has no MaxText row {e}")
    mt_gib, mt_step = float(equal[3]), float(equal[4])
    mt_best = float(best[6].replace(",", ""))
    print(f"MaxText (from {NOTES.name}): NeoX-6.9B shape, flash, full remat: {mt_step:.3f} s, {mt_gib} GiB/chip; "
          f"llama2-7b, flash, minimal remat: {mt_best:,.0f} tokens/s/chip (kernel excluded)")

    results = {}
    for remat in args.remat.split(","):
        cfg, _ = config_lib.parse_args([
            f"--config={ROOT}/configs/pythia.py:6.9b", "--config.mesh.data=1", "--config.mesh.fsdp=-1",
            "--config.train.batch_size=1024", "--config.train.seq_len=2048", "--config.model.dtype=bfloat16",
            "--config.model.attention=splash", f"--config.model.remat={remat}"], {})
        plan = plan_lib.build_plan(cfg, "v5p-256")
        step = plan["compute"]["compiler_optimal_seconds"]
        tps = plan["tokens_per_step"] / plan["topology"]["chips"] / step
        gib = plan["hbm"]["total_gib"]
        results[remat] = tps
        line = (f"alignjax remat={remat:8s} {step:.3f} s, {gib:6.2f} GiB/chip, {tps:,.0f} tokens/s/chip "
                f"(kernel excluded; fits: {plan['fits']}); vs MaxText's best {tps / mt_best:.3f}x")
        if remat == "full":
            line += f"; equal setting: step {step / mt_step:.3f}x, HBM {gib / mt_gib:.3f}x MaxText's"
        print(line, flush=True)
    top = max(results, key=results.get)
    print(f"best against best: alignjax remat={top} {results[top]:,.0f} vs MaxText llama2-7b minimal "
          f"{mt_best:,.0f} tokens/s/chip: {results[top] / mt_best:.3f}x")


if __name__ == "__main__":
    main()
