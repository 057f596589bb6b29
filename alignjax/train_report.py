"""The training loop's report at a log, eval or save step: metrics checked finite, throughput
and MFU, the evals' results, the data audit."""

from __future__ import annotations

import math
import time

import jax

from alignjax import metrics as metrics_lib
from alignjax import model as model_lib
from alignjax import run_control, train_evals


class Throughput:
    """Tokens per second of training: from after a stage's first (compiling) step, evals left out."""

    def __init__(self):
        self.t0, self.tokens = None, 0

    def restart(self):
        self.t0 = None

    def step(self, metrics, tokens: int):
        if self.t0 is None:  # the first step of a stage compiles; time from after it
            jax.block_until_ready(metrics)
            self.t0, self.tokens = time.perf_counter(), 0
        else:
            self.tokens += tokens

    def rate(self) -> float | None:
        now = time.perf_counter()
        tps = self.tokens / (now - self.t0) if self.tokens else None
        self.t0, self.tokens = now, 0
        return tps

    def exclude(self, seconds: float):
        self.t0 += seconds


def report(cfg, setup, run, tokenizer, step, stage, m, state, frozen, feed, audit, writer, bar,
           speed: Throughput, last_saved: int, log_now: bool, eval_now: bool) -> dict:
    """At a log, eval or save step: the metrics checked finite, the row logged (and printed) with
    the evals' results, and the data audit written. Returns the row ({} at a save-only step)."""
    t, is_main = cfg.train, jax.process_index() == 0
    m = {k: float(v) for k, v in jax.device_get(m).items()}
    if not (math.isfinite(m["loss"]) and math.isfinite(m["grad_norm"])):
        raise run_control.NonFiniteLoss(f"loss={m['loss']} grad_norm={m['grad_norm']} at step {step}; stopping without "
                                        f"saving (last good checkpoint: step {last_saved if last_saved else 'none'})")
    row = {}
    if log_now:
        tps = speed.rate()
        fpt = model_lib.flops_per_token(setup.model_cfg, stage.seq_len)
        peak = metrics_lib.peak_flops(jax.devices()[0].device_kind, t.peak_flops_per_device)
        row = {**m, "tokens_per_sec": tps, "mfu": metrics_lib.mfu(tps, fpt, jax.device_count(), peak) if tps else None,
               **audit.metrics(stage.name)}
        if bar is not None:
            bar.set_postfix(loss=f"{m['loss']:.3f}")
        elif is_main:
            print(f"step {step}: loss {m['loss']:.4f} lr {m['lr']:.2e} grad_norm {m['grad_norm']:.3f}"
                  + (f" tokens/s {tps:,.0f}" if tps else ""), flush=True)
    if eval_now:
        t0 = time.perf_counter()
        params = setup.full_params(state["params"], frozen)  # LoRA: merged
        row.update(train_evals.heldout_losses(setup, params, feed.heldout(stage)))
        row.update(train_evals.suite_metrics(cfg, setup, params, tokenizer))
        del params
        speed.exclude(time.perf_counter() - t0)  # evals are not training time
    if row:
        writer.write(step, row)
    totals = audit.global_tokens()
    if is_main:
        audit.write(run.audit, totals)
    return row
