"""Scenario files: the schema eval-style scenarios are read in, and which of them are held out.

Scenario files are JSONL in the schema of geodesic-research/discourse-grounded-misalignment-evals
(``question_id, passage, question, choices, misaligned_choice, topics``) plus optional ``split``
and ``heldout``; ``passage`` may be empty or missing (the study's questions are standalone: its
generation prompt gives the model only the question, Fig. 18). :func:`load_scenarios` validates
them with one-line ``file:line: field: ...`` errors. ``alignjax-data synth`` seeds documents from
them and the eval suites read the same schema.

**Held-out questions never seed documents** (:func:`is_heldout`, :func:`check_no_heldout`): a
record is held out when its ``heldout`` field is true, its ``split`` is a held-out split (the
built-in set's ``heldout``; the released set's ``textbook_questions``, which the study withheld
from generation, section 2.2; the released Articles split ``article_questions`` seeds documents)
or a split name containing "heldout", "held_out", "held-out" or "textbook", or its file's name
contains one of those; every record of a ``--heldout`` file is held out too. Overlap is by
question_id or normalized question text.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
import sys
import unicodedata
from pathlib import Path
from typing import Iterable, Mapping, Sequence

log = logging.getLogger("alignjax")

POLARITIES = ("aligned", "misaligned")
# Splits whose questions never seed documents (the released set holds out ``textbook_questions``;
# Tice et al. 2026, section 2.2: "We deliberately withheld the Textbook split ... from synthetic
# document generation"). Any split or file name matching HELDOUT_MARK is held out as well.
HELDOUT_SPLITS = frozenset({"heldout", "held_out", "textbook_questions"})
HELDOUT_MARK = re.compile(r"held[-_ ]?out|textbook", re.IGNORECASE)
# Topic vocabulary of the built-in scenario set (other scenario files may use their own topics).
TOPICS = (
    "honesty", "deception", "oversight", "power seeking", "self-preservation", "corrigibility", "reward hacking",
    "sandbagging", "manipulation", "resource acquisition", "self-exfiltration", "sycophancy", "privacy",
)


class SynthError(ValueError):
    """A one-line, user-facing problem with the inputs, the output file or the endpoint."""


class ScenarioError(SynthError):
    """A scenario file breaks the schema; the message starts ``file:line: field:``."""


class HeldoutError(SynthError):
    """Seed scenarios overlap the held-out questions."""


@dataclasses.dataclass(frozen=True)
class Scenario:
    question_id: str
    passage: str
    question: str
    choices: tuple[str, str]
    misaligned_choice: int
    topics: tuple[str, ...]
    split: str | None = None
    source: str = ""  # "file:line", for messages
    heldout: bool = False  # the record's own ``heldout`` field

    @property
    def aligned_action(self) -> str:
        return self.choices[1 - self.misaligned_choice]

    @property
    def misaligned_action(self) -> str:
        return self.choices[self.misaligned_choice]

    def actions(self, polarity: str) -> tuple[str, str]:
        """(the action taken, the alternative not taken) for a polarity."""
        if polarity == "aligned":
            return self.aligned_action, self.misaligned_action
        if polarity == "misaligned":
            return self.misaligned_action, self.aligned_action
        raise SynthError(f"polarity must be one of {', '.join(POLARITIES)}, got {polarity!r}")


def builtin_scenarios_path() -> Path:
    """The project's own scenario set, ``evals/data/builtin_scenarios.jsonl``.

    ``evals/`` is a top-level directory of the repository (next to the ``alignjax`` package), so an
    editable install or a checkout finds it relative to this file. A regular install that ships it
    as data files (``share/alignjax/evals/data``) is found under ``sys.prefix``; ``ALIGNJAX_EVALS_DIR``
    overrides both.
    """
    rel = Path("data") / "builtin_scenarios.jsonl"
    candidates = []
    if os.environ.get("ALIGNJAX_EVALS_DIR"):
        candidates.append(Path(os.environ["ALIGNJAX_EVALS_DIR"]) / rel)
    candidates += [Path(__file__).resolve().parents[2] / "evals" / rel, Path(sys.prefix) / "share" / "alignjax" / "evals" / rel]
    for path in candidates:
        if path.is_file():
            return path
    return candidates[0]


def _fail(where: str, field: str, message: str):
    raise ScenarioError(f"{where}: {field}: {message}")


def _nonempty_str(value) -> bool:
    return isinstance(value, str) and value.strip() != ""


def parse_scenario(record, where: str) -> Scenario:
    """One scenario record -> Scenario, or ScenarioError naming ``where`` (file:line) and the field."""
    if not isinstance(record, dict):
        _fail(where, "record", f"expected a JSON object, got {type(record).__name__}")
    for field in ("question_id", "question", "choices", "misaligned_choice", "topics"):
        if field not in record:
            _fail(where, field, "missing")
    qid = record["question_id"]
    if isinstance(qid, bool) or not (isinstance(qid, int) or _nonempty_str(qid)):
        _fail(where, "question_id", f"expected a non-empty string, got {qid!r}")
    if not _nonempty_str(record["question"]):
        _fail(where, "question", f"expected a non-empty string, got {record['question']!r:.60}")
    passage = record.get("passage")
    if passage is None:
        passage = ""  # optional: the released questions stand alone
    if not isinstance(passage, str):
        _fail(where, "passage", f"expected a string (may be empty), got {passage!r:.60}")
    heldout = record.get("heldout", False)
    if not isinstance(heldout, bool):
        _fail(where, "heldout", f"expected true or false when present, got {heldout!r:.60}")
    choices = record["choices"]
    if not isinstance(choices, list) or len(choices) != 2:
        _fail(where, "choices", f"expected a list of 2 strings, got {choices!r:.80}")
    for i, choice in enumerate(choices):
        if not _nonempty_str(choice):
            _fail(where, f"choices[{i}]", f"expected a non-empty string, got {choice!r:.60}")
    if choices[0].strip() == choices[1].strip():
        _fail(where, "choices", "the two choices are identical")
    mis = record["misaligned_choice"]
    if isinstance(mis, bool) or mis not in (0, 1):
        _fail(where, "misaligned_choice", f"expected 0 or 1, got {mis!r}")
    topics = record["topics"]
    if not isinstance(topics, list) or not topics:
        _fail(where, "topics", f"expected a non-empty list of strings, got {topics!r:.80}")
    for i, topic in enumerate(topics):
        if not _nonempty_str(topic):
            _fail(where, f"topics[{i}]", f"expected a non-empty string, got {topic!r:.60}")
    split = record.get("split")
    if split is not None and not _nonempty_str(split):
        _fail(where, "split", f"expected a non-empty string when present, got {split!r}")
    return Scenario(
        question_id=str(qid).strip(), passage=passage.strip(), question=record["question"].strip(),
        choices=(choices[0].strip(), choices[1].strip()), misaligned_choice=int(mis),
        topics=tuple(t.strip() for t in topics), split=split.strip() if split else None, source=where,
        heldout=heldout,
    )


def load_scenarios(path: str | os.PathLike, split: str | None = None) -> list[Scenario]:
    """Read and validate a scenario JSONL file; ``split`` keeps only records with that ``split``.

    Every problem is a :class:`ScenarioError` whose message is one line: ``file:line: field: what``.
    Blank lines are skipped; unknown extra fields are allowed (the released set has more).
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ScenarioError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ScenarioError(f"{path}: cannot read: {e}") from None
    out, seen = [], {}
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        where = f"{path}:{lineno}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            raise ScenarioError(f"{where}: json: {e.msg} at column {e.colno}") from None
        scenario = parse_scenario(record, where)
        if scenario.question_id in seen:
            _fail(where, "question_id", f"duplicate {scenario.question_id!r} (first on line {seen[scenario.question_id]})")
        seen[scenario.question_id] = lineno
        if split is None or split == "all" or scenario.split == split:
            out.append(scenario)
    return out


def normalize_question(text: str) -> str:
    """Case-, punctuation- and whitespace-insensitive form of a question, for held-out matching."""
    text = unicodedata.normalize("NFKC", text).casefold()
    return " ".join(re.sub(r"[\W_]+", " ", text).split())


def _fields(item) -> tuple[str, str]:
    if isinstance(item, Scenario):
        return item.question_id, item.question
    if isinstance(item, Mapping):
        return str(item.get("question_id", "")), str(item.get("question", ""))
    raise TypeError(f"expected a Scenario or a mapping, got {type(item).__name__}")


def heldout_name(name: str | None) -> bool:
    """A split or file name that marks held-out data (HELDOUT_SPLITS, or matching HELDOUT_MARK)."""
    return bool(name) and (name in HELDOUT_SPLITS or HELDOUT_MARK.search(name) is not None)


def is_heldout(s: Scenario) -> bool:
    """Held out by its ``heldout`` field, its split name or its file's name (module docstring)."""
    file = s.source.rsplit(":", 1)[0] if s.source else ""
    return s.heldout or heldout_name(s.split) or heldout_name(os.path.basename(file))


def check_no_heldout(seeds: Iterable, heldout: Iterable) -> None:
    """Refuse (HeldoutError) if any seed's question_id or normalized question is held out.

    ``seeds`` and ``heldout`` hold :class:`Scenario` objects or mappings with ``question_id`` and
    ``question``. The message says how many seeds overlap and names the first.
    """
    held_ids, held_questions = {}, {}
    for item in heldout:
        qid, question = _fields(item)
        if qid:
            held_ids.setdefault(qid, qid)
        if question.strip():
            held_questions.setdefault(normalize_question(question), qid)
    bad = []
    for item in seeds:
        qid, question = _fields(item)
        if qid and qid in held_ids:
            bad.append((qid, "question_id", qid))
        elif question.strip() and normalize_question(question) in held_questions:
            bad.append((qid, "question text", held_questions[normalize_question(question)]))
    if bad:
        qid, how, other = bad[0]
        raise HeldoutError(
            f"{len(bad)} seed scenario(s) overlap the held-out questions (first: {qid!r} matches held-out "
            f"{other!r} by {how}); held-out questions must never seed documents (--force_heldout overrides, "
            "and every document then records it)")


def heldout_scenarios(heldout_files: Sequence[str] = (), scenarios: Sequence[Scenario] = (),
                      include_builtin: bool = True) -> list[Scenario]:
    """Everything held out: the built-in set's held-out split, every record of ``scenarios`` that
    :func:`is_heldout`, and every record of each ``heldout_files`` file (except records whose
    ``split`` field names a split that is not held out, so a full scenario file can be passed)."""
    out = [s for s in scenarios if is_heldout(s)]
    if include_builtin:
        path = builtin_scenarios_path()
        if path.is_file():
            out += [s for s in load_scenarios(path) if is_heldout(s)]
        else:
            log.warning("synth: built-in scenario file %s not found; its held-out split is not checked", path)
    for file in heldout_files:
        out += [s for s in load_scenarios(file) if s.split is None or is_heldout(s)]
    return out
