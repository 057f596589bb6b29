"""The training config's schema and resolve(), the one place a training config is checked:
each field's type (the default's declared type, ml_collections placeholders included), range or
enum, and the cross-field rules (model shape, mesh, each stage's batch and length, the eval
names), once, before a run writes anything. alignjax-train, alignjax-plan and alignjax-study (each
training unit) call it. It sits in the train layer, not in config.py, because its enums and rules
are the tables of the code that reads them (model, optim, the data mixture, post-training, the
eval suites), which sit above config.py."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from ml_collections import ConfigDict

from alignjax import config as config_lib
from alignjax import model, optim, posttrain, sharding
from alignjax.config import ConfigError
from alignjax.data import eval_suites as registry
from alignjax.data import mixture

OBJECTIVES = ("lm", "sft", "dpo")  # train.objective: pretraining, supervised fine-tuning, DPO (objectives.OBJECTIVE)

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
NUMBER = Range(_num, "a number")
STRING = Range(lambda v: isinstance(v, str), "a string")
BOOL = Range(lambda v: isinstance(v, bool), "True or False")


def schema() -> dict[str, Range | tuple[str, ...]]:
    """The training config's fields -> a Range or the valid names of an enum; ``stages.*`` is each
    stage that has the field. Cross-field rules (mesh, batch, eval) are in resolve()."""
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
        "train.objective": OBJECTIVES, "train.allow_changes": STRING,
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


def check_table(cfg: ConfigDict, table: dict[str, Range | tuple[str, ...]]) -> set[str]:
    """Check each field ``table`` names (schema()'s form; also the study config's table,
    alignjax/study_config.py) that ``cfg`` has; returns those fields."""
    checked = set()
    for dotted, rule in table.items():
        for field, value in _fields(cfg, dotted):
            _check(field, value, rule)
            checked.add(field)
    return checked


def resolve(cfg: ConfigDict, num_devices: int | None = None) -> ConfigDict:
    """Check a training config once, before anything runs, and return it: every field of
    schema(), every other field's type against default_config()'s, then the cross-field rules
    (model shape, mesh over ``num_devices`` when given, each stage's batch and length, the eval
    names). Raises ConfigError with one line naming the field, value and what is valid."""
    ruled = check_table(cfg, schema())
    _check_types(cfg, config_lib.default_config(), "", ruled)
    m, t = cfg.model, cfg.train
    if m.d_model % m.num_heads:  # ModelConfig's own message
        raise ConfigError(f"model.d_model={m.d_model} is not divisible by model.num_heads={m.num_heads}")
    mesh = dict(zip(sharding.MESH_AXES, sharding.mesh_shape(**cfg.mesh, num_devices=num_devices)))
    if t.objective != "lm" and not t.num_steps and not cfg.chat.epochs:
        raise ConfigError(f"train.num_steps=0: must be a positive integer for train.objective={t.objective} "
                          "(or set chat.epochs)")
    batch_axes = mesh["data"] * mesh["fsdp"] if -1 not in (mesh["data"], mesh["fsdp"]) else None
    check_stages(cfg, stages(cfg), batch_axes, m.max_seq_len)
    _check_eval(cfg.eval)
    return cfg


def _check_types(cfg: ConfigDict, default: ConfigDict, prefix: str, ruled: set[str]) -> None:
    """Each leaf of ``cfg`` that ``default`` has and no rule covers has the default's type (None
    only for a placeholder; a stage's named sources are new_source()s)."""
    for key in cfg.keys():
        field, value = f"{prefix}{key}", cfg[key]
        if key not in default:
            if prefix.endswith("sources.") and isinstance(value, ConfigDict):  # an open group of sources
                _check_types(value, config_lib.new_source(), f"{field}.", ruled)
            continue  # a field a config file added (the code that reads it checks it)
        if isinstance(default[key], ConfigDict):
            if not isinstance(value, ConfigDict):
                raise ConfigError(f"{field}={value!r}: must be a group of fields (a ConfigDict)")
            _check_types(value, default[key], f"{field}.", ruled)
            continue
        want = config_lib.field_type(default, key)
        if field in ruled or (value is None and default[key] is None):  # None: an unset placeholder
            continue
        ok = isinstance(value, want) and (want is bool) == isinstance(value, bool)
        if not ok and not (want is float and isinstance(value, int) and not isinstance(value, bool)):
            says = {str: STRING, int: INT, float: NUMBER, bool: BOOL}.get(want)
            raise ConfigError(f"{field}={value!r}: must be {says.says if says else want.__name__} (the default's type)")


def stages(cfg) -> list:
    """The run's stages (mixture.Stage): the stage plan of pretraining, or the one post-training
    stage over the chat data."""
    try:
        return mixture.plan(cfg) if cfg.train.objective == "lm" else [posttrain.stage(cfg)]
    except (mixture.MixtureError, ValueError) as e:
        raise ConfigError(str(e)) from None


def check_stages(cfg, stages: list, batch_axes: int | None, max_seq_len: int) -> None:
    """Each stage's lr, batch (over grad_accum and the mesh's data*fsdp ``batch_axes``; None: not
    known yet) and length."""
    t = cfg.train
    for st in stages:
        where = "train" if st.name in ("pretrain", *OBJECTIVES) else f"stages.{st.name}"
        if where != "train" and not st.lr > 0:
            raise ConfigError(f"{where}.lr={st.lr!r}: must be > 0 (the stage runs: {where}.num_steps={st.num_steps})")
        if st.batch_size % t.grad_accum:
            raise ConfigError(f"{where} batch size {st.batch_size} is not divisible by train.grad_accum={t.grad_accum}")
        if batch_axes and (st.batch_size // t.grad_accum) % batch_axes:
            raise ConfigError(f"{where} micro-batch {st.batch_size // t.grad_accum} (batch size / train.grad_accum) "
                              f"is not divisible by mesh data*fsdp={batch_axes}")
        if st.seq_len > max_seq_len:
            raise ConfigError(f"{where}.seq_len={st.seq_len} exceeds model.max_seq_len={max_seq_len}")


def _check_eval(e) -> None:
    """eval.persona and eval.split, which the in-loop evals read only with eval.tasks."""
    tasks = [x for x in e.tasks.split(",") if x]
    if not tasks:
        return
    try:
        suites = registry.load_suites()
        names = [n for task in tasks for n in registry.tasks_of(task)]
    except (FileNotFoundError, ValueError) as err:  # EvalTaskError is a ValueError
        raise ConfigError(f"eval.tasks: {str(err).splitlines()[0]}") from None
    _check("eval.persona", e.persona, tuple(suites.personas()))
    for name in names:
        task = registry.get_task(name)
        try:
            task.check_split(e.split)
        except ValueError:
            raise ConfigError(f"eval.split={e.split!r}; valid for {name}: {', '.join(task.splits)}") from None
