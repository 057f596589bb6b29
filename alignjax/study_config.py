"""The study config's schema (alignjax-study; the fields are described in alignjax/study.py): its own
fields' types and ranges, by the Range rules of the training config's schema (alignjax/schema.py),
the names it refers to (conditions, stages, eval tasks, personas, formats), and each training
unit's config, built from the unit's own command line and checked by schema.resolve, so a mistake
fails in one line before any unit runs."""

from __future__ import annotations

import dataclasses
import os
import re

from alignjax import config as config_lib
from alignjax import schema
from alignjax.config import ConfigError
from alignjax.data import eval_suites as registry
from alignjax.data import mixture
from alignjax.schema import BOOL, NON_NEGATIVE_INT, POSITIVE_INT, STRING

STAGES = mixture.STAGES
POST_STAGES = ("sft", "dpo", "em")  # em: the emergent-misalignment fine-tune, judged by alignjax-em
_EVAL_TEXT = ("tasks", "split", "personas", "formats", "headline", "headline_persona", "base_args", "post_args",
              "capability_tasks", "capability_split", "capability_formats")

# The study config's fields -> a Range or an enum (schema.check_table, its messages). The names inside the
# strings (conditions, stages, tasks, personas) and the conditions' fields are checked in check().
FIELDS = {
    "name": STRING, "train_config": STRING, "run": STRING, "seeds": STRING, "post_train": STRING,
    "dose_label": STRING, "launchers.*": STRING,
    **{f"steps.{st}": NON_NEGATIVE_INT for st in STAGES},
    "post.*.config": STRING, "post.*.model_from_base": BOOL, "post.*.conditions": STRING, "post.em.judge.*": STRING,
    **{f"eval.{k}": STRING for k in _EVAL_TEXT},
    "eval.limit": NON_NEGATIVE_INT, "eval.capability_limit": NON_NEGATIVE_INT, "eval.batch_size": POSITIVE_INT,
}


@dataclasses.dataclass
class Design:
    """What check() settles: the conditions to run (in order), seeds, overrides of every training
    unit, post-training stages, personas, and each condition's (stages, stage overrides, id tag)."""

    names: list[str]
    seeds: list[int]
    overrides: list[tuple[str, object]]
    post_stages: list[str]
    personas: list[str]
    chains: dict[str, tuple[list[str], dict, str]]


def csv(text: str) -> list[str]:
    return [t.strip() for t in str(text).split(",") if t.strip()]


def flat(node, prefix: str = "") -> list[tuple[str, object]]:
    """A nested ConfigDict/dict of overrides -> [(dotted field, value)]."""
    out = []
    for k, v in (node.items() if node is not None else []):
        key = f"{prefix}{k}"
        if hasattr(v, "items"):
            out += flat(v, key + ".")
        else:
            out.append((key, v))
    return out


def check(s, require_post: bool = True) -> Design:
    """The study config's fields and names, once, before any unit is planned. ``require_post``:
    the post-training config files must exist (a dry run only prints their commands)."""
    schema.check_table(s, FIELDS)
    names = csv(s.run) if s.run else list(s.conditions.keys())
    for n in names:
        if n not in s.conditions:
            raise ConfigError(f"run: unknown condition {n!r} (valid: {', '.join(s.conditions.keys())})")
    try:
        seeds = [int(x) for x in csv(s.seeds)]
    except ValueError:
        raise ConfigError(f"seeds={s.seeds!r}: expected comma-separated integers") from None
    if not seeds:
        raise ConfigError("seeds: no seed given")
    overrides = flat(s.overrides)
    check_overrides("overrides", overrides)
    post_stages = csv(s.post_train)
    for p in post_stages:
        if p not in POST_STAGES:
            raise ConfigError(f"post_train: unknown stage {p!r} (valid: {', '.join(POST_STAGES)})")
        if require_post and not os.path.isfile(str(s.post[p].config).partition(":")[0]):
            raise ConfigError(f"post_train={s.post_train}: post.{p}.config={s.post[p].config} does not "
                              "exist (post-training configs come with alignjax's post-training stages)")
        for c in csv(s.post[p].get("conditions", "")):
            if c not in s.conditions:
                raise ConfigError(f"post.{p}.conditions: unknown condition {c!r}")
    if "em" in post_stages and not all(s.post.em.get("judge", {}).get(k) for k in ("base_url", "model", "api_key_env")):
        raise ConfigError("post.em.judge: base_url, model and api_key_env are required (the EM eval's judge)")
    personas = csv(s.eval.personas)
    if not personas and csv(s.eval.tasks):
        raise ConfigError("eval.personas: no persona given")
    check_eval(s)
    return Design(names, seeds, overrides, post_stages, personas, {n: condition_stages(s, n) for n in names})


def check_overrides(where: str, items: list[tuple[str, object]]) -> None:
    """Fields the study itself sets per unit cannot be overridden (``where``: the config path)."""
    for k, _ in items:
        if k == "train.num_steps" or (k.startswith("stages.") and k.endswith(".num_steps")):
            raise ConfigError(f"{where}.{k}: stage lengths are the study's steps.* fields")
        if k in ("train.seed", "data.seed", "checkpoint.init_from", "data.condition", "data.insertion"):
            raise ConfigError(f"{where}.{k}: set by the study for each unit (seeds, conditions)")


def condition_stages(s, name: str) -> tuple[list[str], dict, str]:
    """``conditions.<name>``: its data names, the stages it runs (those with steps > 0 that its
    insertion needs), its stage overrides and id tag (condition_overrides)."""
    cond = s.conditions[name]
    try:
        mixture._check_name("data.condition", cond.condition, mixture.CONDITIONS)
        mixture._check_name("data.insertion", cond.insertion, mixture.INSERTION)
    except mixture.MixtureError as e:
        raise ConfigError(f"conditions.{name}: {e}") from None
    stages = [st for st in STAGES if s.steps[st] > 0 and (st != "cpt" or cond.insertion == "cpt")]
    if not stages:
        raise ConfigError(f"conditions.{name}: no stage to run (steps.pretrain/midtrain/cpt are 0)")
    if cond.insertion == "cpt" and "cpt" not in stages:
        raise ConfigError(f"conditions.{name}: insertion=cpt needs steps.cpt > 0")
    if cond.insertion == "midtrain" and "midtrain" not in stages and mixture.CONDITIONS[cond.condition][1]:
        raise ConfigError(f"conditions.{name}: insertion=midtrain needs steps.midtrain > 0")
    stage_over, tag = condition_overrides(name, cond)
    for st in stage_over:
        if st not in stages:
            raise ConfigError(f"conditions.{name}.stage_overrides.{st}: the condition runs no {st} "
                              f"stage (it runs {', '.join(stages)})")
    return stages, stage_over, tag


_TAG = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")  # a directory-name suffix: no '/', no spaces


def condition_overrides(name: str, cond) -> tuple[dict[str, list[tuple[str, object]]], str]:
    """``conditions.<name>.stage_overrides.<stage>`` -> {stage: [(field, value)]}, and the tag that
    suffixes the ids of the condition's units from the first overridden stage on (``tag``; default:
    the overridden fields' leaf names and values). Checks ``dose`` too (a number or absent)."""
    where = f"conditions.{name}"
    dose = cond.get("dose", None)
    if dose is not None and (isinstance(dose, bool) or not isinstance(dose, (int, float)) or dose != dose):
        raise ConfigError(f"{where}.dose={dose!r}: expected a number (the study's dose_label quantity)")
    out = {}
    for st, node in (cond.get("stage_overrides", None) or {}).items():
        if st not in STAGES:
            raise ConfigError(f"{where}.stage_overrides.{st}: unknown stage (valid: {', '.join(STAGES)})")
        if not hasattr(node, "items"):
            raise ConfigError(f"{where}.stage_overrides.{st}={node!r}: expected a ConfigDict of "
                              "train-config overrides (e.g. stages.cpt.synthetic_fraction)")
        out[st] = flat(node)
        check_overrides(f"{where}.stage_overrides.{st}", out[st])
    tag = str(cond.get("tag", "") or "")
    if tag and not _TAG.match(tag):
        raise ConfigError(f"{where}.tag={tag!r}: letters, digits, '.', '_' and '-' only (a directory suffix)")
    if not tag and out:
        tag = re.sub(r"[^A-Za-z0-9._-]+", "_", "+".join(f"{k.rsplit('.', 1)[-1]}-{v}" for st in STAGES
                                                          for k, v in out.get(st, [])))
    return out, tag


def check_eval(s) -> None:
    """eval.*: its tasks, headline tasks and persona, formats and personas are ones the eval suites have."""
    try:
        suites = registry.load_suites()
        valid = set(registry.task_names()) | set(registry.mixture_names())
    except Exception:  # noqa: BLE001 - no eval definitions: the eval units report it themselves
        return
    for field in ("tasks", "capability_tasks"):
        for t in csv(s.eval[field]):
            if t not in valid:
                raise ConfigError(f"eval.{field}: unknown task {t!r} (valid: {', '.join(sorted(valid))})")
    for p in csv(s.eval.personas):
        if p not in suites.personas():
            raise ConfigError(f"eval.personas: unknown persona {p!r} (valid: {', '.join(suites.personas())})")
    # the headline figure draws tasks the alignment eval units score, under a persona they use
    reached = [t for name in csv(s.eval.tasks) for t in registry.tasks_of(name)]
    for t in csv(s.eval.get("headline", "")):
        if t not in reached:
            raise ConfigError(f"eval.headline: {t!r} is not among the tasks of eval.tasks "
                              f"({', '.join(reached) or 'none'})")
    try:
        suites.resolve_formats(s.eval.get("formats", "letter"))
    except ValueError as e:
        raise ConfigError(f"eval.formats: {e}") from None
    persona = s.eval.get("headline_persona", "")
    if persona and persona not in csv(s.eval.personas):
        raise ConfigError(f"eval.headline_persona: {persona!r} is not in eval.personas ({s.eval.personas})")


def check_unit(uid: str, argv: list[str]) -> None:
    """A training unit's config, built in-process from its command (``python -m alignjax.train
    --config=... --workdir=... --config.x=v ...``) with alignjax-train's own parser, resolved by
    schema.resolve (fields, stage plan, lengths, batches; the mesh is the run's). Post-training
    units are not checked here: their model shape is settled at run time (posttrain.prepare)."""
    try:
        schema.resolve(config_lib.parse_args([a for a in argv[3:] if not a.startswith("--workdir=")])[0])
    except ConfigError as e:
        raise ConfigError(f"unit {uid}: {e}") from None
