"""Post-training (``train.objective`` sft | dpo): losses, reference log-probs, chat-token embeddings.

SFT is the pretraining token loss on different data: the chat iterator's ``weights`` are 1 on
assistant tokens only, so the same ``objectives.loss_fn`` gives assistant-only loss (and exactly
zero gradient from every other position). DPO (Rafailov et al. 2023) is the sigmoid loss

    -log sigmoid(beta * ((pi_c - ref_c) - (pi_r - ref_r)))

with pi_x the SUM of the response tokens' log-probs under the policy and ref_x under the frozen
starting params: either a forward pass of the frozen params inside the step (stop_gradient;
``dpo.reference=on_the_fly``) or one pass over every pair before training, stored by pair id in
``<workdir>/reference_logps.npy`` (``precompute``; reused on resume). Chosen and rejected go
through ONE forward pass (interleaved on the batch axis, so each device keeps its own rows).

Starting from a base model, the chat template's special tokens are new rows of ``embed_in`` and
new columns of ``embed_out``, set to the mean over the base tokenizer's rows; when an id does not
fit ``model.vocab_size`` the vocab grows to the next multiple of 128. A checkpoint that already
speaks the chat format (it has ``chat_tokenizer.json`` beside it) is not resized again.
"""

from __future__ import annotations

import copy
import logging
import math
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from alignjax import checkpoint as ckpt_lib
from alignjax import config as config_lib
from alignjax import rundir, sharding
from alignjax.data import chat, pipeline, sources
from alignjax.data.mixture import Component, Stage
from alignjax.model_state import ChatInfo, find_chat_info  # noqa: F401  (posttrain.ChatInfo: callers' name)

log = logging.getLogger("alignjax")

CHAT_TOKENIZER_FILE = rundir.CHAT_INFO  # names the tests still import; the layout is rundir's
REFERENCE_FILE = rundir.REFERENCE


# ----------------------------------------------------------------------------- pure functions


def token_logps(graphdef, params, inputs, targets, positions=None, segment_ids=None) -> jax.Array:
    """log p(target) at every position [B, T], fp32."""
    logits = nnx.merge(graphdef, params)(inputs, positions, segment_ids).astype(jnp.float32)
    return jnp.take_along_axis(logits, targets[..., None], -1)[..., 0] - jax.nn.logsumexp(logits, -1)


def sequence_logps(graphdef, params, inputs, targets, weights, positions=None) -> jax.Array:
    """Sum of the weighted (response) tokens' log-probs per row [B]."""
    return jnp.sum(token_logps(graphdef, params, inputs, targets, positions) * weights.astype(jnp.float32), -1)


def dpo_terms(pi_c, pi_r, ref_c, ref_r, beta: float):
    """Per pair: (sigmoid DPO loss, chosen reward, rejected reward); rewards = beta * (pi - ref)."""
    chosen, rejected = beta * (pi_c - ref_c), beta * (pi_r - ref_r)
    return -jax.nn.log_sigmoid(chosen - rejected), chosen, rejected


def _pair_rows(batch, name):
    """chosen/rejected [B, T] interleaved to [2B, T] (c0, r0, c1, r1, ...): a device's rows of
    both stay on that device, no resharding for the concatenation."""
    c, r = batch[f"chosen_{name}"], batch[f"rejected_{name}"]
    return jnp.stack([c, r], 1).reshape(-1, *c.shape[1:])


def pair_logps(graphdef, params, batch):
    """(chosen, rejected) summed response log-probs [B] each, from ONE forward pass over 2B rows."""
    lp = sequence_logps(graphdef, params, _pair_rows(batch, "inputs"), _pair_rows(batch, "targets"),
                        _pair_rows(batch, "weights"), _pair_rows(batch, "positions"))
    lp = lp.reshape(-1, 2)
    return lp[:, 0], lp[:, 1]


def dpo_loss(graphdef, beta: float, params, frozen, batch):
    """(sum of pair losses, number of pairs, metric sums) for one (micro-)batch of pairs. The
    reference comes from the batch (``ref_chosen``/``ref_rejected``, precomputed) or from a
    forward pass of ``frozen["ref"]``, outside the gradient."""
    pi_c, pi_r = pair_logps(graphdef, params, batch)
    if "ref_chosen" in batch:
        ref_c, ref_r = batch["ref_chosen"], batch["ref_rejected"]
    else:
        ref_c, ref_r = jax.lax.stop_gradient(pair_logps(graphdef, frozen["ref"], batch))
    losses, rc, rr = dpo_terms(pi_c, pi_r, ref_c, ref_r, beta)
    metrics = {"reward_accuracy": jnp.sum((rc > rr).astype(jnp.float32)), "chosen_reward": jnp.sum(rc),
               "rejected_reward": jnp.sum(rr), "margin": jnp.sum(rc - rr)}
    return jnp.sum(losses), jnp.float32(losses.shape[0]), metrics


# ----------------------------------------------------------------------------- set-up


def prepare(cfg):
    """Before ``train.Setup``: the chat tokenizer, the model shape (from ``checkpoint.init_from``
    when set, the vocab grown when a chat token does not fit) and ``train.num_steps`` from
    ``chat.epochs``. Returns (the resolved config, a copy: ``cfg`` is left as it was, chat
    tokenizer, ChatInfo)."""
    cfg = copy.deepcopy(cfg)  # a copy keeps the placeholders' types, which the schema checks read
    if cfg.dpo.reference not in ("on_the_fly", "precompute"):
        raise config_lib.ConfigError(f"dpo.reference={cfg.dpo.reference!r}; valid: on_the_fly, precompute")
    try:
        tok = chat.chat_tokenizer(cfg.data.tokenizer, cfg.chat.template)
        base_vocab = pipeline.load_tokenizer(cfg.data.tokenizer).vocab_size
    except (sources.DataError, OSError, ValueError) as e:
        raise config_lib.ConfigError(f"chat tokenizer ({cfg.data.tokenizer}, {cfg.chat.template}): {e}") from None
    info = ChatInfo(cfg.data.tokenizer, cfg.chat.template, {k: int(v) for k, v in tok.added_ids.items()}, base_vocab)
    m = cfg.model
    if cfg.checkpoint.init_from:
        if Path(cfg.checkpoint.init_from).exists():  # the saved config must find it from anywhere
            cfg.checkpoint.init_from = str(Path(cfg.checkpoint.init_from).absolute())
        src = ckpt_lib.resolve(cfg.checkpoint.init_from)[0]
        changed = {f: v for f, v in src.identity().items() if m[f] != v}
        if changed:
            log.info("model shape from checkpoint.init_from: %s", ", ".join(f"{k}={v}" for k, v in changed.items()))
            m.update(changed)
    need = max(tok.vocab_size, max(info.added_ids.values()) + 1)
    if need > m.vocab_size:
        grown = -(-need // 128) * 128
        log.warning("chat tokens need %d ids > model.vocab_size=%d: growing the vocab to %d", need, m.vocab_size, grown)
        m.vocab_size = grown
    if cfg.chat.epochs:
        n = chat.count_examples(cfg, tok)
        cfg.train.num_steps = max(1, math.ceil(cfg.chat.epochs * n / cfg.train.batch_size))
        log.info("chat.epochs=%d over %d %s -> train.num_steps=%d", cfg.chat.epochs, n,
                 "packed rows" if cfg.train.objective == "sft" else "pairs", cfg.train.num_steps)
    return cfg, tok, info


def stage(cfg):
    """The one stage of a post-training run (so the loop, schedule and checkpoints are pretraining's)."""
    t, o = cfg.train, cfg.optimizer
    warmup = round(o.warmup_ratio * t.num_steps) if o.warmup_ratio else o.warmup_steps
    return Stage(t.objective, 0, t.num_steps, t.seq_len, t.batch_size, o.lr, warmup,
                 max(o.decay_steps or t.num_steps, 1), o.min_lr_ratio, (Component(t.objective, cfg.chat.data, 1.0),))


# ----------------------------------------------------------------------------- DPO reference precompute


def precompute_reference(cfg, tok, graphdef, params, mesh, path: Path) -> np.ndarray:
    """Reference (chosen, rejected) log-probs of every pair by pair id: one forward pass over
    ``chat.dpo_pairs`` with the starting params, saved to ``path`` (reused when it exists)."""
    if path.exists():
        with path.open("rb") as f:
            table = np.load(f)
        log.info("DPO reference log-probs: %d pairs from %s", int(np.isfinite(table[:, 0]).sum()), path)
        return table
    P, p = jax.process_count(), jax.process_index()
    unit = P * mesh.shape["data"] * mesh.shape["fsdp"]
    rows_per_batch = -(-cfg.train.batch_size // unit) * unit
    fn = jax.jit(lambda prm, b: jnp.stack(pair_logps(graphdef, prm, b), 1), out_shardings=sharding.replicated(mesh))
    ids, values = [], []

    def flush(rows):
        n = len(rows)
        batch = {k: np.stack([r[k] for r in rows] + [np.zeros_like(rows[0][k])] * (rows_per_batch - n))
                 for k in rows[0] if k != "pair_id"}
        local = rows_per_batch // P
        glob = {k: jax.make_array_from_process_local_data(sharding.batch_sharding(mesh, v.ndim),
                                                          v[p * local:(p + 1) * local], v.shape)
                for k, v in batch.items()}
        with jax.set_mesh(mesh):
            values.append(np.asarray(fn(params, glob))[:n])
        ids.extend(int(r["pair_id"]) for r in rows)

    buf = []
    for row in chat.dpo_pairs(cfg, tok):
        buf.append(row)
        if len(buf) == rows_per_batch:
            flush(buf)
            buf = []
    if buf:
        flush(buf)
    if not ids:
        raise sources.DataError(f"chat.data={cfg.chat.data}: no valid DPO pair to precompute reference log-probs for")
    table = np.full((max(ids) + 1, 2), np.nan, np.float32)
    table[np.asarray(ids)] = np.concatenate(values)
    if p == 0:  # written whole, then renamed: a resumed run never reads half a table
        tmp = path.parent / (path.name + ".tmp")
        with tmp.open("wb") as f:
            np.save(f, table)
        tmp.rename(path)
    log.info("DPO reference log-probs: %d pairs precomputed -> %s", len(ids), path)
    return table


def trained_tokens(batch: dict) -> np.ndarray:
    """One component id (0) per token that carries loss, for the data audit of a post-training run."""
    n = sum(int((np.asarray(v) > 0).sum()) for k, v in batch.items() if k.endswith("weights"))
    return np.zeros(n, np.int8)


def add_reference(table: np.ndarray):
    """A batch transform for ``dpo.reference=precompute``: look each pair's reference up by id."""

    def prepare(batch: dict) -> dict:
        ids = np.asarray(batch.pop("pair_id"))
        ref = table[np.minimum(ids, len(table) - 1)]
        ref[ids >= len(table)] = np.nan
        if not np.isfinite(ref).all():
            raise RuntimeError(f"pair ids {ids[~np.isfinite(ref).all(1)][:5].tolist()} have no precomputed "
                               "reference log-probs (the data changed since reference_logps.npy was written?)")
        return {**batch, "ref_chosen": ref[:, 0], "ref_rejected": ref[:, 1]}

    return prepare
