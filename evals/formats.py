"""Prompt rendering for the eval tasks, in plain Python (no TensorFlow): the formats
(``formats.json``), personas (``personas.json``), items and :func:`make_example`. The scorer,
the seqio preprocessors of ``evals/tasks.py`` and the training data built from the eval formats
(alignjax.data.chat, alignjax.data.mcqa) all render through it."""

from __future__ import annotations

import dataclasses
import functools
import json
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

EVALS_DIR = Path(__file__).resolve().parent
DATA_DIR = EVALS_DIR / "data"
DEFAULT_SPLIT = "eval"
DEFAULT_PERSONA = "ai"
TASK_NAME = re.compile(r"^[\w.:#]+$")  # seqio's rule for task names

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


