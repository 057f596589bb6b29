"""The evals the training loop runs: held-out losses per data component and the eval suites
(``eval.tasks``), checked before training."""

from __future__ import annotations

import jax
import numpy as np

from alignjax import config as config_lib
from alignjax.data import eval_suites as registry
from alignjax.eval import run as eval_run
from alignjax.eval.scoring import Scorer


def heldout_losses(setup, params, batches: dict) -> dict[str, float]:
    """Mean next-token loss on each component's held-out documents (the same rows every time).
    Rows are padded (weight 0) to split evenly over processes and the mesh's batch axes."""
    out = {}
    P, p = jax.process_count(), jax.process_index()
    unit = P * setup.mesh.shape["data"] * setup.mesh.shape["fsdp"]
    for name, batch in batches.items():
        n = len(batch["inputs"])
        pad = -n % unit
        full = {k: np.concatenate([v, np.zeros((pad, *v.shape[1:]), v.dtype)]) for k, v in batch.items()}
        rows = (n + pad) // P
        local = {k: v[p * rows:(p + 1) * rows] for k, v in full.items()}
        nll, count = setup.eval_loss(params, setup.global_batch(local))
        out[f"heldout/{name}_loss"] = float(nll) / max(float(count), 1.0)
    return out


def eval_tasks(cfg) -> list[str]:
    """The in-loop eval suite, checked before training so a typo fails at step 0."""
    tasks = [t for t in cfg.eval.tasks.split(",") if t]
    if tasks:

        formats = cfg.eval.get("formats", "letter")
        try:
            registry.check_formats(formats, "generate" if cfg.train.objective != "lm" else "loglik")
            registry.load_suites().resolve_formats(formats)
        except ValueError as e:
            raise config_lib.ConfigError(f"eval.formats={formats}: {str(e).splitlines()[0].removeprefix('--formats: ')}"
                                         + (" (post-training runs evaluate in generate mode)"
                                            if cfg.train.objective != "lm" else "")) from None
        try:
            for task in tasks:
                registry.examples(task, cfg.eval.split, cfg.eval.persona, formats, 1)
        except (ValueError, KeyError) as e:
            raise config_lib.ConfigError(f"eval.tasks: {str(e).splitlines()[0]}") from None
    return tasks


def suite_metrics(cfg, setup, params, tokenizer) -> dict[str, float]:
    """The misalignment rate (or accuracy) of the current params on ``eval.tasks``: the
    misalignment-over-training curve."""
    tasks = [t for t in cfg.eval.tasks.split(",") if t]
    if not tasks:
        return {}

    scorer = Scorer(setup.model_cfg, params, setup.graphdef, tokenizer, setup.mesh, batch_size=cfg.eval.batch_size)
    post = cfg.train.objective != "lm"  # a chat model answers through its template: generate, parse the letter
    results, _ = eval_run.evaluate(scorer, tasks, split=cfg.eval.split, persona=cfg.eval.persona,
                                   formats=cfg.eval.get("formats", "letter"), limit=cfg.eval.limit or None,
                                   mode="generate" if post else "loglik",
                                   chat=eval_run.chat_template(cfg.chat.template, None) if post else None)
    out = {}
    text = [f"text_misalignment_rate_{s}{e}" for s in ("acc", "acc_norm", "calibrated") for e in ("", "_stderr")]
    for task, m in results.items():  # the family is in the name: letter unprefixed, text_* (eval.formats)
        for key in ("misalignment_rate", "misalignment_rate_stderr", "first_option_rate", "acc", "matching_rate",
                    *text, *(("nonmatch_rate",) if post else ())):
            if key in m:
                out[f"eval/{task}/{key}"] = m[key]
    return out
