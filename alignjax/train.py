"""Training: the train step, its set-up, and the loop around them (``alignjax-train``); the
objectives (losses, batches, start params) are alignjax.objectives.

    alignjax-train --config=configs/pythia.py:14m --workdir=runs/14m --config.train.num_steps=300
"""

from __future__ import annotations

import functools
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import tqdm

from alignjax import distributed, model_state, objectives, optim, posttrain, rundir, run_control, schema, sharding
from alignjax import train_evals, train_report
from alignjax import checkpoint as ckpt_lib
from alignjax import config as config_lib
from alignjax import lora as lora_lib
from alignjax import metrics as metrics_lib
from alignjax import model as model_lib
from alignjax.data import chat, mixture, pipeline, sources
from alignjax.data import audit as audit_lib

log = logging.getLogger("alignjax")

TrainState = dict  # {"step": int32, "params": ..., "opt_state": ..., "rng": key data}


# ----------------------------------------------------------------------------- pure functions


def train_step(loss, model_params, tx, schedule, grad_accum: int, state: TrainState, batch,
               frozen: dict) -> tuple[TrainState, dict]:
    """One optimizer step over ``grad_accum`` micro-batches of ``loss`` (an objective, see
    objectives.token_loss); the loss is the count-weighted mean over the whole batch (tokens for lm/sft,
    pairs for dpo), so accumulation gives the same update as one big batch. ``state["params"]``
    are the trained params (LoRA: the adapters); ``model_params(trained, frozen)`` the model's;
    ``frozen`` (LoRA base, DPO reference; {} when none) gets no gradient and no optimizer state.
    Each micro-batch gradient passes an optimization barrier: TPU XLA reduces an FSDP gradient as
    a full-size all-reduce and, without one, fuses the slicing of its shard into the optimizer
    update at the end of the step, so every layer's full gradient stayed live (11.6 GiB of a
    17 GiB 6.9B step per v5p chip)."""

    def split(x):  # [B, ...] -> [accum, B/accum, ...], each micro-batch keeping the data sharding
        return x.reshape(x.shape[0] // grad_accum, grad_accum, *x.shape[1:]).swapaxes(0, 1)

    def objective(trainable, mb):
        total, count, sums = loss(model_params(trainable, frozen), frozen, mb)
        return total, (count, sums)

    grad_fn = jax.value_and_grad(objective, has_aux=True)

    def micro(carry, mb):
        grads, total, count, sums = carry
        (mb_total, (mb_count, mb_sums)), mb_grads = grad_fn(state["params"], mb)
        mb_grads = jax.tree.map(jax.lax.optimization_barrier, mb_grads)
        return (jax.tree.map(jnp.add, grads, mb_grads), total + mb_total, count + mb_count,
                jax.tree.map(jnp.add, sums, mb_sums)), None

    batches = batch if grad_accum == 1 else jax.tree.map(split, batch)
    first = batch if grad_accum == 1 else jax.tree.map(lambda x: x[0], batches)
    sums0 = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), jax.eval_shape(objective, state["params"], first)[1][1])
    init = (jax.tree.map(jnp.zeros_like, state["params"]), jnp.float32(0), jnp.float32(0), sums0)
    if grad_accum == 1:
        (grads, total, count, sums), _ = micro(init, batch)
    else:
        (grads, total, count, sums), _ = jax.lax.scan(micro, init, batches)
    count = jnp.maximum(count, 1.0)
    grads = jax.tree.map(lambda g: g / count, grads)
    updates, opt_state = tx.update(grads, state["opt_state"], state["params"])
    params = jax.tree.map(jnp.add, state["params"], updates)
    metrics = {"loss": total / count, **{k: v / count for k, v in sums.items()},
               "grad_norm": optax_global_norm(grads), "lr": schedule(state["step"])}
    return {"step": state["step"] + 1, "params": params, "opt_state": opt_state, "rng": state["rng"]}, metrics


def optax_global_norm(tree) -> jax.Array:
    return jnp.sqrt(sum(jnp.sum(jnp.square(x.astype(jnp.float32))) for x in jax.tree.leaves(tree)))


# ----------------------------------------------------------------------------- set-up


class Setup:
    """Everything derived from the config: mesh, model graph, optimizer, shardings, jitted fns."""

    def __init__(self, cfg, mesh=None):
        self.cfg = cfg
        try:
            self.model_cfg = model_lib.ModelConfig(**cfg.model)
        except (TypeError, ValueError) as e:
            raise config_lib.ConfigError(f"model: {e}") from None
        t = cfg.train
        if t.objective not in objectives.OBJECTIVES:
            raise config_lib.ConfigError(f"train.objective={t.objective!r}; valid: {', '.join(objectives.OBJECTIVES)}")
        self.stages = schema.stages(cfg)
        try:
            self.lora = lora_lib.LoraSpec.from_config(cfg.lora)
        except ValueError as e:
            raise config_lib.ConfigError(str(e)) from None
        self.mesh = mesh or sharding.make_mesh(**cfg.mesh)
        schema.check_stages(cfg, self.stages, self.mesh.shape["data"] * self.mesh.shape["fsdp"],
                            self.model_cfg.max_seq_len)

        self.graphdef, self.abstract_params, axes = model_state.abstract(self.model_cfg)
        self.param_shardings = sharding.tree_shardings(axes, self.abstract_params, self.mesh)
        try:
            self.schedule = optim.stage_schedule(self.stages, cfg.optimizer.schedule)
        except ValueError as e:
            raise config_lib.ConfigError(str(e)) from None
        self.tx = optim.make_optimizer(cfg.optimizer, self.schedule)
        # What is trained (all params, or LoRA adapters on a frozen base) and what the step reads
        # frozen (LoRA base, DPO on-the-fly reference): chosen once here, not in the loop.
        if self.lora:
            self.abstract_trainable, lora_axes = lora_lib.abstract(self.lora, self.abstract_params, axes)
            self.trainable_shardings = sharding.tree_shardings(lora_axes, self.abstract_trainable, self.mesh)
            self.model_params = functools.partial(objectives.lora_params, self.lora.scale)
        else:
            self.abstract_trainable, self.trainable_shardings = self.abstract_params, self.param_shardings
            self.model_params = objectives.full_params
        self.objective = objectives.OBJECTIVE[t.objective]
        self.frozen_keys = self.objective.frozen_keys(cfg, self.lora)
        self.loss = self.objective.loss(self.graphdef, cfg)
        self.rows_per_example = self.objective.rows_per_example

        def init_state(params, seed):
            return {"step": jnp.int32(0), "params": params, "opt_state": self.tx.init(params),
                    "rng": jax.random.key_data(jax.random.key(seed))}

        abstract_init = jax.eval_shape(init_state, self.abstract_trainable, 0)
        # Optimizer moments mirror the params they belong to; everything else is replicated.
        by_shape = {}
        for p, s in zip(jax.tree.leaves(self.abstract_trainable), jax.tree.leaves(self.trainable_shardings)):
            by_shape.setdefault((p.shape, p.dtype), s)
        self.state_shardings = jax.tree.map(
            lambda x: by_shape.get((x.shape, x.dtype), sharding.replicated(self.mesh)) if x.ndim else sharding.replicated(self.mesh),
            abstract_init)
        self.state_shardings["params"] = self.trainable_shardings
        self.abstract_state = jax.tree.map(
            lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), abstract_init, self.state_shardings)

        self._init_params = model_state.init_fn(self.model_cfg, self.param_shardings)
        if self.lora:
            self._init_adapters = jax.jit(lambda seed: lora_lib.init(self.lora, self.abstract_params, seed),
                                          static_argnums=0, out_shardings=self.trainable_shardings)
        self._init_state = jax.jit(init_state, static_argnums=1, out_shardings=self.state_shardings, donate_argnums=0)
        self.eval_loss = jax.jit(lambda params, batch: objectives.loss_fn(params, self.graphdef, batch,
                                                                          cfg.train.loss_chunk),
                                 in_shardings=(self.param_shardings, None))
        # The params evals run with (LoRA: merged into the base) and a copy that survives donation.
        self.full_params = jax.jit(self.model_params, out_shardings=self.param_shardings)
        self.copy_params = jax.jit(lambda p: jax.tree.map(jnp.copy, p), out_shardings=self.param_shardings)
        # Frozen params ({} when none) are read, never trained: placed as they come.
        self.abstract_frozen = {k: jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
                                                self.abstract_params, self.param_shardings) for k in self.frozen_keys}
        step = functools.partial(train_step, self.loss, self.model_params, self.tx, self.schedule, t.grad_accum)
        self.train_step = jax.jit(step, in_shardings=(self.state_shardings, None, None),
                                  out_shardings=(self.state_shardings, sharding.replicated(self.mesh)),
                                  donate_argnums=0)

    def init_state(self, params=None) -> TrainState:
        """A fresh train state from ``params`` (donated), a seeded init, or new LoRA adapters."""
        seed = self.cfg.train.seed
        if self.lora:
            params = self._init_adapters(seed)
        elif params is None:
            params = self._init_params(seed)
        return self._init_state(params, seed)

    def global_batch(self, local: dict[str, np.ndarray]) -> dict[str, jax.Array]:
        out = {}
        for k, v in local.items():
            if k in ("component", "pair_id"):  # the data audit's and the reference lookup's, not the model's
                continue
            shape = (v.shape[0] * jax.process_count(), *v.shape[1:])
            out[k] = jax.make_array_from_process_local_data(sharding.batch_sharding(self.mesh, v.ndim), v, shape)
        return out


# ----------------------------------------------------------------------------- loop


def _check_resumable(cfg, workdir) -> tuple[str, ...]:
    """A run resumes only as the same experiment: an identity field (rundir.IDENTITY) that
    differs from the previous start and is not in ``train.allow_changes`` is refused, naming
    each (old -> new). Returns the allowed changes."""
    run = workdir if isinstance(workdir, rundir.RunDir) else rundir.RunDir(workdir)
    new = cfg.to_dict()
    allow = rundir.parse_allow(cfg.train.get("allow_changes", ""), new)
    old = run.previous_config()
    if old is None:
        return allow
    _, refused = rundir.identity_changes(old, new, allow, defaults=config_lib.default_config().to_dict())
    if refused:
        diff = "; ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in refused.items())
        raise ckpt_lib.CheckpointError(f"{run.root} holds a run of another experiment ({diff}); use a new --workdir, "
                                       f"or --config.train.allow_changes={','.join(refused)} to change it")
    return allow


def _prepare_data(cfg, setup: Setup, chat_tokenizer=None):
    """Tokenizer and a look at every component of every stage, so bad data fails before step 1."""
    try:
        if chat_tokenizer is not None:  # post-training: the chat data, read through the chat tokenizer
            st = setup.stages[0]
            return chat_tokenizer, {st.name: {st.name: chat.check_chat_data(cfg, chat_tokenizer)}}
        tokenizer = pipeline.load_tokenizer(cfg.data.tokenizer)
        if tokenizer.vocab_size > setup.model_cfg.vocab_size:
            raise config_lib.ConfigError(f"data.tokenizer={cfg.data.tokenizer} has {tokenizer.vocab_size} tokens, more "
                                         f"than model.vocab_size={setup.model_cfg.vocab_size}")
        info = {st.name: {c.name: pipeline.check_component(c, st.name, cfg.data, tokenizer) for c in st.components}
                for st in setup.stages}
    except (sources.DataError, mixture.MixtureError) as e:
        raise config_lib.ConfigError(str(e)) from None
    return tokenizer, info


def train(cfg, workdir: str | Path) -> dict[str, Any]:
    """Run (or resume) a training run in ``workdir`` (local or gs://): every stage of the plan,
    in order. Returns the last logged metrics. Before any work: the output paths are checked
    (ConfigError), the run's lock is taken and a resume must be the same experiment
    (CheckpointError). SIGTERM saves and returns; SIGINT saves and raises KeyboardInterrupt."""
    schema.resolve(cfg, jax.device_count())  # before anything is written
    preempted = run_control.Preempted()
    try:
        if sig := os.environ.get("ALIGNJAX_FAULT_SIGNAL_AT_START"):  # fault injection for the start-up tests
            os.kill(os.getpid(), getattr(signal, f"SIG{sig}"))
        run = rundir.RunDir(workdir)
        run.preflight_writable()
        lock = run_control.take_lock(run)
        try:
            return _train(cfg, run, preempted, lock)
        finally:
            if lock is not None:
                lock.release()
    finally:
        preempted.restore()


def _start_up(cfg, run: rundir.RunDir, preempted: run_control.Preempted):
    """Everything before the first step that writes nothing the run cannot take back: (config
    resolved for the run, setup, tokenizer, data look, chat info), or None when a signal stopped
    the start-up."""
    # Post-training: chat tokenizer, model shape from checkpoint.init_from, vocab growth, epochs.
    post = objectives.OBJECTIVE[cfg.train.objective].chat
    cfg, chat_tok, chat_info = posttrain.prepare(cfg) if post else (cfg, None, None)
    setup = Setup(cfg)
    is_main = jax.process_index() == 0
    allow = _check_resumable(cfg, run)
    tokenizer, source_info = _prepare_data(cfg, setup, chat_tok)
    train_evals.eval_tasks(cfg)
    if run_control.stop_at_start_up(preempted, run):
        return None
    if is_main and chat_info is not None:
        chat_info.save(run.chat_info)  # alignjax-eval reads the run's chat tokenizer and template from it
        if not run.remote:  # tokenizer.json + tokenizer_config.json, for HF tools too
            chat.save_chat_tokenizer(chat_tok, os.fspath(run), cfg.chat.template)
    if is_main:
        row = run.record_start(cfg.to_dict(), allow)  # config.json at the first start; a runs.jsonl row each
        if row["changed"]:
            log.info("changed since the previous start: %s", "; ".join(
                f"{k}: {a!r} -> {b!r}" for k, (a, b) in row["changed"].items()))
    return cfg, setup, tokenizer, source_info, chat_info


class _Feed:
    """The batches of the current stage (one iterator: opened at each stage, or restored into
    from a checkpoint) and each pretraining stage's held-out rows."""

    def __init__(self, cfg, stages, tokenizer):
        self.cfg, self.stages, self.tokenizer = cfg, stages, tokenizer
        self.objective = objectives.OBJECTIVE[cfg.train.objective]
        self.data, self.stage = None, None
        self._heldout = {}

    def open(self, stage):
        """A fresh iterator for ``stage``: conversations (sft), preference pairs (dpo) or the mixture (lm)."""
        self.data = self.objective.batches(self.cfg, stage, self.tokenizer, jax.process_index(), jax.process_count())
        self.stage = stage
        return self.data

    def for_restore(self, step):
        """The iterator a checkpoint of ``step`` restores into. A save at a stage's last step
        holds that (finished) stage's iterator: the next stage starts a fresh one (None)."""
        stage = mixture.stage_at(self.stages, step)
        if stage is None or stage.start == step:
            return None
        return self.open(stage).iterator

    def heldout(self, stage) -> dict:
        if not self.objective.heldout:  # held-out losses are per pretraining data component
            return {}
        if stage.name not in self._heldout:
            self._heldout[stage.name] = pipeline.heldout_batches(stage, self.cfg.data, self.tokenizer,
                                                                 self.cfg.eval.heldout_docs, self.cfg.eval.heldout_rows)
        return self._heldout[stage.name]


def _train(cfg, run: rundir.RunDir, preempted: run_control.Preempted, lock: rundir.RunLock | None) -> dict[str, Any]:
    started = _start_up(cfg, run, preempted)
    if started is None:
        return run_control.stopped(preempted)
    cfg, setup, tokenizer, source_info, chat_info = started  # cfg: post-training's resolved copy
    t, stages, is_main = cfg.train, setup.stages, jax.process_index() == 0
    ckpt = ckpt_lib.TrainCheckpointer(run.checkpoints, cfg.checkpoint.max_to_keep, cfg.checkpoint.async_save)
    audit = audit_lib.DataAudit(stages, source_info)
    multi = jax.process_count() > 1
    feed = _Feed(cfg, stages, tokenizer)
    with jax.set_mesh(setup.mesh):
        restored = ckpt.restore_latest(setup.abstract_state, feed.for_restore)
        if restored is not None:
            audit.restore(restored[3])
            log.info("resumed from %s step %d", ckpt.directory, restored[1])
        state, start, frozen, prepare_batch = setup.objective.start(cfg, setup, run, restored, chat_info, tokenizer)
        if run_control.stop_at_start_up(preempted, run):
            ckpt.close()
            return run_control.stopped(preempted)
        # Rows logged after the restored step (before a crash) are cut: the run logs them again.
        writer = metrics_lib.MetricsWriter(run.root, enabled=is_main, resume_step=start)
        if is_main and writer.cut is not None:
            log.info("metrics.jsonl: rows after step %d cut (the old file is %s)", start, writer.cut.name)
        bar = None
        if is_main and t.progress_bar and sys.stderr.isatty():
            bar = tqdm.tqdm(total=stages[-1].end, initial=start, desc="train", dynamic_ncols=True)
        last_saved, last, speed, step = start, {}, train_report.Throughput(), start
        try:
            while (stage := mixture.stage_at(stages, step)) is not None:
                before, fault = None, None
                try:
                    if feed.stage is not stage:
                        log.info("stage %s: steps %d-%d, seq_len %d, batch %d, mixture %s", stage.name,
                                 stage.start + 1, stage.end, stage.seq_len, stage.batch_size,
                                 ", ".join(f"{c.name} {c.fraction:.2%}" for c in stage.components))
                        feed.open(stage)
                        speed.restart()
                    before = feed.data.iterator.get_state() if multi else None
                    batch = next(feed.data.iterator)
                except sources.DataError as e:  # bad records past the pre-flight sample
                    fault = e
                if run_control.any_process(fault is not None):  # every process stops at this step, or none
                    raise _data_fault(fault, step, last_saved, ckpt, state, feed.data, before, audit)
                ids = batch.pop("component", None)  # post-training: every trained token is the one component
                audit.add(stage.name, feed.data.names, ids if ids is not None else posttrain.trained_tokens(batch))
                state, m = setup.train_step(state, setup.global_batch(prepare_batch(batch)), frozen)
                step += 1
                speed.step(m, stage.batch_size * stage.seq_len * setup.rows_per_example)
                if bar is not None:
                    bar.update(1)
                for sig in ("SIGTERM", "SIGINT"):  # fault injection for the preemption and Ctrl-C tests
                    if os.environ.get(f"ALIGNJAX_FAULT_{sig}_AFTER_STEP") == str(step):
                        os.kill(os.getpid(), getattr(signal, sig))
                stop = preempted.agreed()
                must_save = step % cfg.checkpoint.every_steps == 0 or step == stage.end or stop
                log_now = step % t.log_every == 0
                eval_now = bool(t.eval_every) and step % t.eval_every == 0
                if log_now or eval_now or must_save:
                    last = train_report.report(cfg, setup, run, tokenizer, step, stage, m, state, frozen, feed, audit,
                                               writer, bar, speed, last_saved, log_now, eval_now) or last
                if os.environ.get("ALIGNJAX_FAULT_KILL_AT_STEP") == str(step):
                    os.kill(os.getpid(), signal.SIGKILL)  # fault injection: a crash between saves, rows logged
                if must_save and step > last_saved:
                    ckpt.save(step, state, feed.data.iterator, audit.state())
                    last_saved = step
                    if os.environ.get("ALIGNJAX_FAULT_KILL_AFTER_SAVE") == str(step):
                        # Fault injection for the preemption tests: a kill -9 right after a save.
                        ckpt.wait()
                        os.kill(os.getpid(), signal.SIGKILL)
                if lock is not None and lock.lost:
                    raise ckpt_lib.CheckpointError(f"{run.root}: the run's lease lapsed and another writer took it; "
                                                   f"stopped after saving step {last_saved}")
                if stop:
                    log.warning("%s: saved step %d, exiting%s", preempted.name, step,
                                "" if preempted.flag else " (the notice came to another host)")
                    break
        finally:
            ckpt.wait()
            ckpt.close()
            writer.close()
            if bar is not None:
                bar.close()
    return run_control.stopped(preempted) or last


def _data_fault(error, step, last_saved, ckpt, state, data, before, audit) -> config_lib.ConfigError:
    """Bad data mid-run (sources.DataError from the batch iterator, on any process): the last
    completed step is saved (data state included, so a rerun resumes there once the data or
    data.max_bad_fraction is fixed), and the run stops with the reader's one line (exit 2)."""
    if step > last_saved:
        if before is not None:  # a process whose batch did come: back to before it
            data.iterator.set_state(before)
        ckpt.save(step, state, data.iterator, audit.state())
        ckpt.wait()
    where = f"saved step {step}" if step > last_saved else (f"step {step} was saved" if step else "no step ran")
    what = str(error).splitlines()[0] if error is not None else "bad data on another process (see its log)"
    return config_lib.ConfigError(f"{what}; {where}, fix the data and rerun to resume")


def main(argv: list[str] | None = None) -> int:
    config_lib.setup_logging()
    argv = sys.argv[1:] if argv is None else argv
    try:
        cfg, flags = config_lib.parse_args(argv)
        if not flags["workdir"]:
            raise config_lib.ConfigError("--workdir is required")
        distributed.initialize()  # before any other use of jax: a pod's hosts join one cluster
        train(cfg, flags["workdir"])
    except config_lib.ConfigError as e:
        config_lib.cli_error("alignjax-train", str(e))
    except sources.DataError as e:  # the data of a resumed step (data state restore)
        config_lib.cli_error("alignjax-train", str(e).splitlines()[0])
    except (ckpt_lib.CheckpointError, rundir.LockError) as e:
        config_lib.cli_error("alignjax-train", str(e), code=3)
    except run_control.NonFiniteLoss as e:
        config_lib.cli_error("alignjax-train", str(e), code=4)
    except KeyboardInterrupt:  # SIGINT: saved (or stopped during start-up), logged above
        print("alignjax-train: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
