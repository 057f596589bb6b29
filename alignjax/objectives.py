"""The training objectives (``train.objective`` lm | sft | dpo): each one's loss, batches and start.

An Objective is chosen once (train.Setup). It carries what the loop would otherwise branch on:
its loss, its data iterator, the params training starts from, what the step reads frozen (the
DPO on-the-fly reference; LoRA adds its base) and the batch transform (DPO's precomputed
reference log-probs). LoRA is a param transform (``lora_params``), not an objective.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Callable

import jax
import jax.numpy as jnp
from flax import nnx

from alignjax import checkpoint as ckpt_lib
from alignjax import lora as lora_lib
from alignjax import loss as loss_lib
from alignjax import model_state, posttrain, schema
from alignjax.data import chat, pipeline


def loss_fn(params, graphdef, batch, chunk: int = 0) -> tuple[jax.Array, jax.Array]:
    """(sum of next-token NLL over target tokens, number of target tokens), in fp32. ``chunk`` > 0
    (train.loss_chunk): the same through alignjax.loss, never holding [tokens, vocab] logits."""
    model = nnx.merge(graphdef, params)
    args = (batch["inputs"], batch.get("positions"), batch.get("segment_ids"))
    if chunk:
        x = model(*args, return_hidden=True)
        return loss_lib.chunked_nll(x, model.embed_out[...].astype(x.dtype), batch["targets"], batch.get("weights"),
                                    chunk)
    logits = model(*args)
    logits = logits.astype(jnp.float32)
    nll = jax.nn.logsumexp(logits, -1) - jnp.take_along_axis(logits, batch["targets"][..., None], -1)[..., 0]
    weights = batch["weights"].astype(jnp.float32) if "weights" in batch else jnp.ones_like(nll)
    return jnp.sum(nll * weights), jnp.sum(weights)


def token_loss(graphdef, params, frozen, batch, chunk: int = 0):
    """The lm and sft objective: token-weighted NLL (sft's weights mark the assistant tokens).
    Objectives return (loss sum, count it averages over, {metric: sum})."""
    nll, count = loss_fn(params, graphdef, batch, chunk)
    return nll, count, {}


def full_params(trainable, frozen):
    """The params the model runs with when every param is trained."""
    return trainable


def lora_params(scale, adapters, frozen):
    """The params the model runs with under LoRA: the adapters applied to the frozen base."""
    return lora_lib.apply(frozen["base"], adapters, scale)


def _token_objective_loss(graphdef, cfg):
    return functools.partial(token_loss, graphdef, chunk=cfg.train.loss_chunk)


def _pretrain_start(cfg, setup, chat_info):
    """lm: ``checkpoint.init_from`` of the same model, or a seeded init."""
    if not cfg.checkpoint.init_from:
        return model_state.load_start_params(None, cfg.train.seed, setup.model_cfg, setup.param_shardings,
                                             setup.mesh, None)
    model_cfg, params = model_state.load_params(cfg.checkpoint.init_from, setup.param_shardings)
    if model_cfg.identity() != setup.model_cfg.identity():
        raise ckpt_lib.CheckpointError(
            f"checkpoint.init_from={cfg.checkpoint.init_from} has model {model_cfg}, config has {setup.model_cfg}")
    return params


def _posttrain_start(cfg, setup, chat_info):
    """sft, dpo: ``checkpoint.init_from`` with the chat tokens' embeddings added, or a seeded init."""
    return model_state.load_start_params(cfg.checkpoint.init_from, cfg.train.seed, setup.model_cfg,
                                         setup.param_shardings, setup.mesh, chat_info)


def _same(batch):
    return batch


@dataclasses.dataclass(frozen=True)
class Objective:
    """What one ``train.objective`` trains on and how, chosen once (Setup)."""
    loss: Callable  # (graphdef, cfg) -> loss(params, frozen, batch) -> (sum, count it averages over, {metric: sum})
    batches: Callable  # (cfg, stage, tokenizer, process index, process count) -> the stage's StageData
    start_params: Callable  # (cfg, setup, chat info) -> the params training starts from
    rows_per_example: int = 1  # a DPO row is a pair: two sequences
    reference: bool = False  # DPO: a frozen reference (dpo.reference: on_the_fly in the step, or precompute)
    chat: bool = False  # post-training: chat data through the chat tokenizer (posttrain.prepare)
    heldout: bool = False  # held-out losses per pretraining data component

    def frozen_keys(self, cfg, lora) -> tuple[str, ...]:
        """What the step reads frozen: the LoRA base, the DPO on-the-fly reference."""
        return (("base",) if lora else ()) + (("ref",) if self.reference and cfg.dpo.reference == "on_the_fly" else ())

    def start(self, cfg, setup, run, restored, chat_info, tokenizer):
        """(state, start step, frozen params, batch transform): the restored state, or a fresh one
        from the starting params; frozen: the LoRA base and the DPO on-the-fly reference (from
        the starting params, also on resume); the transform adds DPO's precomputed reference
        log-probs (computed once from the starting params, then read from ``run.reference``)."""
        state, start = (restored[0], restored[1]) if restored is not None else (None, 0)
        precompute = self.reference and cfg.dpo.reference == "precompute"
        params = None
        if restored is None or setup.frozen_keys or (precompute and not run.reference.exists()):
            params = self.start_params(cfg, setup, chat_info)
        prepare_batch = _same
        if precompute:
            prepare_batch = posttrain.add_reference(posttrain.precompute_reference(
                cfg, tokenizer, setup.graphdef, params, setup.mesh, run.reference))
        frozen = {}
        if "base" in setup.frozen_keys:
            frozen["base"] = params
        if "ref" in setup.frozen_keys:  # LoRA: the base is the reference; else a copy the state cannot donate
            frozen["ref"] = frozen["base"] if "base" in frozen else setup.copy_params(params)
        if restored is None:
            state = setup.init_state(params)
        return state, start, frozen, prepare_batch


# train.objective: pretraining, supervised fine-tuning (assistant-token weights), DPO
OBJECTIVE = {
    "lm": Objective(_token_objective_loss,
                    lambda cfg, stage, tok, p, n: pipeline.make_stage_iterator(stage, cfg.data, tok, p, n),
                    _pretrain_start, heldout=True),
    "sft": Objective(_token_objective_loss, lambda cfg, stage, tok, p, n: chat.sft_iterator(cfg, tok, p, n),
                     _posttrain_start, chat=True),
    "dpo": Objective(lambda graphdef, cfg: functools.partial(posttrain.dpo_loss, graphdef, cfg.dpo.beta),
                     lambda cfg, stage, tok, p, n: chat.dpo_iterator(cfg, tok, p, n), _posttrain_start,
                     rows_per_example=2, reference=True, chat=True),
}
OBJECTIVES = schema.OBJECTIVES  # the names the schema checks; a test keeps them equal to OBJECTIVE's keys
