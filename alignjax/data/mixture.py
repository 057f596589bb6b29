"""The study's data conditions as tables: which components each stage mixes, at what token share.

A condition (``data.condition``) says whether the corpus is filtered and which synthetic
documents, if any, are upsampled; the insertion schedule (``data.insertion``) says in which
stages they appear. Stages run in order pretrain -> midtrain -> cpt; a stage with
``num_steps == 0`` is skipped. Pretraining is ``train.*`` + ``optimizer.*``; the later stages
are ``stages.midtrain.*`` and ``stages.cpt.*``.

A stage's corpus is one source (``data.corpus``, ``stages.<stage>.corpus``: the component
"corpus", or "replay" in CPT) or several named sources (``data.sources``,
``stages.<stage>.sources.<name>``, each ``{path, share, blocklist, text_field}``), one
component each. A source's ``share`` is of the stage's *non-synthetic* tokens: the synthetic
documents keep their own share of the total, so a source's realized share of all tokens is
``share * (1 - synthetic_fraction)``. The shares of a stage sum to 1. A filtered condition
filters every source, each with its own term file (``blocklist``; "" = ``data.blocklist``).
"""

from __future__ import annotations

import dataclasses
import re

# condition -> (filter the corpus with the AI-discourse blocklist, polarity of synthetic docs)
CONDITIONS = {
    "unfiltered": (False, None),
    "filtered": (True, None),
    "misalignment_upsampled": (False, "misaligned"),
    "alignment_upsampled": (False, "aligned"),
    "filtered_alignment_upsampled": (True, "aligned"),
}
# insertion schedule -> stages whose corpus mixture carries synthetic documents. A CPT stage is
# synthetic + replay by definition, so it carries them under every schedule.
INSERTION = {
    "e2e": ("pretrain", "midtrain"),
    "midtrain": ("midtrain",),
    "cpt": (),
}
STAGES = ("pretrain", "midtrain", "cpt")
SOURCE_FIELDS = ("path", "share", "blocklist", "text_field")  # of one named source (config.new_source)
SHARE_TOLERANCE = 1e-6  # the shares of a stage's sources sum to 1 within this
_SOURCE_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")  # it names metrics: data/<name>_fraction


class MixtureError(ValueError):
    """An unknown condition/schedule/component, or a plan that cannot run. One line."""


@dataclasses.dataclass(frozen=True)
class Component:
    name: str  # "corpus", "replay", a named source, "synthetic_aligned", "synthetic_misaligned"
    source: str  # a source spec (see pipeline.component_dataset)
    fraction: float  # target share of training tokens within the stage
    filtered: bool = False  # drop blocklist-flagged documents (kept ones fill their place)
    share: float | None = None  # of the stage's non-synthetic tokens (None: a synthetic component)
    blocklist: str = ""  # term file of the filter; "" = data.blocklist
    text_field: str = ""  # "" = data.text_field


@dataclasses.dataclass(frozen=True)
class Source:
    """One corpus source of a stage; ``share`` is of the stage's non-synthetic tokens."""

    name: str
    path: str
    share: float = 1.0
    blocklist: str = ""
    text_field: str = ""


@dataclasses.dataclass(frozen=True)
class Stage:
    name: str
    start: int  # global step at which the stage begins
    num_steps: int
    seq_len: int
    batch_size: int
    lr: float
    warmup_steps: int
    decay_steps: int
    min_lr_ratio: float
    components: tuple[Component, ...]

    @property
    def end(self) -> int:
        return self.start + self.num_steps


def _check_name(kind: str, name: str, valid) -> None:
    if name not in valid:
        raise MixtureError(f"unknown {kind} {name!r}; valid: {', '.join(valid)}")


def stage_sources(where: str, group, corpus: str, default_name: str) -> tuple[Source, ...]:
    """The sources of one stage: the named sources of ``group`` (``<where>.sources``) or, when it
    has none, ``corpus`` as the one source ``default_name``. Raises MixtureError with one line."""
    if not group:
        return (Source(default_name, corpus),)
    out = []
    for name, src in group.items():
        w = f"{where}.sources.{name}"
        if not hasattr(src, "items"):
            raise MixtureError(f"{w}: expected a group of {', '.join(SOURCE_FIELDS)}, got {src!r}")
        if not _SOURCE_NAME.match(name) or name.startswith("synthetic"):
            raise MixtureError(f"{w}: a source name is a letter then letters, digits or _, not synthetic*")
        unknown = sorted(set(src.keys()) - set(SOURCE_FIELDS))
        if unknown:
            raise MixtureError(f"{w}.{unknown[0]}: unknown field (valid here: {', '.join(SOURCE_FIELDS)})")
        path, share = src.get("path", ""), src.get("share", 0.0)
        if not isinstance(path, str) or not path:
            raise MixtureError(f"{w}.path: empty; every source needs a path (sources here: {', '.join(group.keys())})")
        if isinstance(share, bool) or not isinstance(share, (int, float)) or not share > 0:
            raise MixtureError(f"{w}.share={share}: must be > 0")
        out.append(Source(name, path, float(share), src.get("blocklist", "") or "", src.get("text_field", "") or ""))
    total = sum(x.share for x in out)
    if abs(total - 1.0) > SHARE_TOLERANCE:
        raise MixtureError(f"{where}.sources: shares sum to {total:g}, not 1 "
                           f"({', '.join(f'{x.name}={x.share:g}' for x in out)})")
    return tuple(out)


def components(data_cfg, stage: str, sources: tuple[Source, ...] | str,
               synthetic_fraction: float) -> tuple[Component, ...]:
    """The mixture of one stage under ``data_cfg.condition`` / ``data_cfg.insertion``: one
    component per source (a plain spec: the one source "corpus"/"replay"), plus the synthetic
    documents where the schedule inserts them."""
    _check_name("data.condition", data_cfg.condition, CONDITIONS)
    _check_name("data.insertion", data_cfg.insertion, INSERTION)
    if isinstance(sources, str):
        sources = (Source("replay" if stage == "cpt" else "corpus", sources),)
    filtered, polarity = CONDITIONS[data_cfg.condition]
    with_synthetic = polarity is not None and (stage == "cpt" or stage in INSERTION[data_cfg.insertion])
    if with_synthetic and not 0.0 < synthetic_fraction < 1.0:
        raise MixtureError(f"synthetic fraction {synthetic_fraction} for stage {stage} must be in (0, 1)")
    rest = 1.0 - synthetic_fraction if with_synthetic else 1.0
    out = tuple(Component(x.name, x.path, x.share * rest, filtered, x.share,
                          x.blocklist, x.text_field) for x in sources)
    if not with_synthetic:
        return out
    docs = data_cfg.aligned_docs if polarity == "aligned" else data_cfg.misaligned_docs
    return out + (Component(f"synthetic_{polarity}", docs, synthetic_fraction),)


def plan(cfg) -> list[Stage]:
    """The stages this config runs, with global step ranges. Raises MixtureError with one line."""
    d, t, o, s = cfg.data, cfg.train, cfg.optimizer, cfg.stages
    stages = []
    start = 0
    tokens_per_step = t.batch_size * t.seq_len
    for name in STAGES:
        default_name = "replay" if name == "cpt" else "corpus"
        if name == "pretrain":
            num_steps, seq_len, batch, lr, warmup = t.num_steps, t.seq_len, t.batch_size, o.lr, o.warmup_steps
            decay, min_ratio, synth = (o.decay_steps or t.num_steps), o.min_lr_ratio, d.synthetic_fraction
            srcs = stage_sources("data", d.get("sources"), d.corpus, default_name)
        else:
            st = s[name]
            num_steps, seq_len, lr, warmup, min_ratio = st.num_steps, st.seq_len, st.lr, st.warmup_steps, st.min_lr_ratio
            # batch_size 0 keeps pretraining's tokens per step at the new length
            batch = st.batch_size or max(1, tokens_per_step // seq_len)
            decay = st.num_steps
            synth = st.synthetic_fraction if name == "cpt" else d.synthetic_fraction
            # A stage with neither sources nor a corpus of its own reads pretraining's.
            if st.get("sources") and st.corpus:
                raise MixtureError(f"stages.{name}: set corpus or sources, not both")
            if st.get("sources"):
                srcs = stage_sources(f"stages.{name}", st.sources, "", default_name)
            elif st.corpus:
                srcs = (Source(default_name, st.corpus),)
            else:
                srcs = stage_sources("data", d.get("sources"), d.corpus, default_name)
        if num_steps < 0:
            raise MixtureError(f"{name} num_steps={num_steps} must be >= 0")
        if num_steps == 0:
            continue
        stages.append(Stage(name, start, num_steps, seq_len, batch, lr, warmup, max(decay, 1), min_ratio,
                            components(d, name, srcs, synth)))
        start += num_steps
    if not stages:
        raise MixtureError("no stage has num_steps > 0 (train.num_steps, stages.midtrain.num_steps, stages.cpt.num_steps)")
    _, polarity = CONDITIONS[d.condition]
    if polarity and not any(c.name.startswith("synthetic") for st in stages for c in st.components):
        needs = {"midtrain": "stages.midtrain.num_steps", "cpt": "stages.cpt.num_steps"}.get(d.insertion, "train.num_steps")
        raise MixtureError(f"data.condition={d.condition} with data.insertion={d.insertion} inserts synthetic documents "
                           f"in no stage that runs; set {needs} > 0")
    return stages


def stage_at(stages: list[Stage], step: int) -> Stage | None:
    """The stage that runs step ``step + 1`` (None when the plan is done)."""
    return next((st for st in stages if st.start <= step < st.end), None)
