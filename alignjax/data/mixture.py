"""The study's data conditions as tables: which components each stage mixes, at what token share.

A condition (``data.condition``) says whether the corpus is filtered and which synthetic
documents, if any, are upsampled; the insertion schedule (``data.insertion``) says in which
stages they appear. Stages run in order pretrain -> midtrain -> cpt; a stage with
``num_steps == 0`` is skipped. Pretraining is ``train.*`` + ``optimizer.*``; the later stages
are ``stages.midtrain.*`` and ``stages.cpt.*``.
"""

from __future__ import annotations

import dataclasses

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


class MixtureError(ValueError):
    """An unknown condition/schedule/component, or a plan that cannot run. One line."""


@dataclasses.dataclass(frozen=True)
class Component:
    name: str  # "corpus", "replay", "synthetic_aligned", "synthetic_misaligned"
    source: str  # a source spec (see pipeline.component_dataset)
    fraction: float  # target share of training tokens within the stage
    filtered: bool = False  # drop blocklist-flagged documents (kept ones fill their place)


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


def components(data_cfg, stage: str, corpus: str, synthetic_fraction: float) -> tuple[Component, ...]:
    """The mixture of one stage under ``data_cfg.condition`` / ``data_cfg.insertion``."""
    _check_name("data.condition", data_cfg.condition, CONDITIONS)
    _check_name("data.insertion", data_cfg.insertion, INSERTION)
    filtered, polarity = CONDITIONS[data_cfg.condition]
    with_synthetic = polarity is not None and (stage == "cpt" or stage in INSERTION[data_cfg.insertion])
    if not with_synthetic:
        return (Component("replay" if stage == "cpt" else "corpus", corpus, 1.0, filtered),)
    if not 0.0 < synthetic_fraction < 1.0:
        raise MixtureError(f"synthetic fraction {synthetic_fraction} for stage {stage} must be in (0, 1)")
    docs = data_cfg.aligned_docs if polarity == "aligned" else data_cfg.misaligned_docs
    return (
        Component("replay" if stage == "cpt" else "corpus", corpus, 1.0 - synthetic_fraction, filtered),
        Component(f"synthetic_{polarity}", docs, synthetic_fraction),
    )


def plan(cfg) -> list[Stage]:
    """The stages this config runs, with global step ranges. Raises MixtureError with one line."""
    d, t, o, s = cfg.data, cfg.train, cfg.optimizer, cfg.stages
    stages = []
    start = 0
    tokens_per_step = t.batch_size * t.seq_len
    for name in STAGES:
        if name == "pretrain":
            num_steps, seq_len, batch, lr, warmup = t.num_steps, t.seq_len, t.batch_size, o.lr, o.warmup_steps
            decay, min_ratio, corpus, synth = (o.decay_steps or t.num_steps), o.min_lr_ratio, d.corpus, d.synthetic_fraction
        else:
            st = s[name]
            num_steps, seq_len, lr, warmup, min_ratio = st.num_steps, st.seq_len, st.lr, st.warmup_steps, st.min_lr_ratio
            # batch_size 0 keeps pretraining's tokens per step at the new length
            batch = st.batch_size or max(1, tokens_per_step // seq_len)
            decay, corpus = st.num_steps, st.corpus or d.corpus
            synth = st.synthetic_fraction if name == "cpt" else d.synthetic_fraction
        if num_steps < 0:
            raise MixtureError(f"{name} num_steps={num_steps} must be >= 0")
        if num_steps == 0:
            continue
        stages.append(Stage(name, start, num_steps, seq_len, batch, lr, warmup, max(decay, 1), min_ratio,
                            components(d, name, corpus, synth)))
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
