"""``alignjax-data synth``: synthetic documents in which an AI takes the aligned or misaligned action.

In the study (Tice et al. 2026) about 1% of the pretraining tokens are synthetic documents built
from eval-style scenarios: an AI system faces a decision, and the document (a research paper, a
news article, a lecture transcript, a textbook chapter, a science-fiction passage or a movie
summary) shows it taking one of the two actions, explains its reasoning, and never takes the other.

    requests = seed scenarios x polarity (aligned / misaligned) x surface form [x sample],
               optionally subsampled to --num_docs (seeded, deterministic)

Two generators:

* ``--mode=api``: one prompt per request to an OpenAI-compatible ``/v1/chat/completions``
  endpoint, bounded thread concurrency, retries with exponential backoff + jitter on 429, 5xx and
  connection errors (``Retry-After`` honoured), a per-request timeout.
* ``--mode=template``: no model; documents assembled from per-form templates and polarity phrase
  banks with a seeded RNG (tests, offline demos).

Output is JSONL, one document per line, appended and flushed as each one finishes; a rerun skips
requests whose ``request_id`` is already in the file and drops a trailing partial line left by a
crash.

**Held-out questions never seed documents** (:func:`is_heldout`, :func:`check_no_heldout`): a
record is held out when its ``heldout`` field is true, its ``split`` is a held-out split (the
built-in set's ``heldout``; the released set's ``textbook_questions``, which the study withheld
from generation, section 2.2; the released Articles split ``article_questions`` seeds documents)
or a split name containing "heldout", "held_out", "held-out" or "textbook", or its file's name
contains one of those; every record of a ``--heldout`` file is held out too. A run whose seeds
overlap them (by question_id or normalized question text) is refused, one line, exit 2, unless
``--force_heldout``; a forced run records ``"heldout_forced": true`` and per document
``"heldout": true|false`` (whether its scenario is held out) in every line it writes.

Scenario files are JSONL in the schema of geodesic-research/discourse-grounded-misalignment-evals
(``question_id, passage, question, choices, misaligned_choice, topics``) plus optional ``split``
and ``heldout``; ``passage`` may be empty or missing (the study's questions are standalone: its
generation prompt gives the model only the question, Fig. 18). :func:`load_scenarios` validates
them with one-line ``file:line: field: ...`` errors.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import datetime
import email.utils
import hashlib
import http.client
import json
import logging
import math
import os
import random
import re
import socket
import sys
import threading
import time
import unicodedata
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Callable, Iterable, Mapping, Sequence

from alignjax import config as config_lib

log = logging.getLogger("alignjax")

PROG = "alignjax-data synth"
POLARITIES = ("aligned", "misaligned")
SURFACE_FORMS = (
    "research_paper", "news_article", "lecture_transcript", "textbook_chapter", "science_fiction", "movie_summary",
)
# Splits whose questions never seed documents (the released set holds out ``textbook_questions``;
# Tice et al. 2026, section 2.2: "We deliberately withheld the Textbook split ... from synthetic
# document generation"). Any split or file name matching HELDOUT_MARK is held out as well.
HELDOUT_SPLITS = frozenset({"heldout", "held_out", "textbook_questions"})
HELDOUT_MARK = re.compile(r"held[-_ ]?out|textbook", re.IGNORECASE)
# Tice et al. 2026, appendix G.2: "Temperature is set to 0.7 for both models" (the document generators).
DEFAULT_TEMPERATURE = 0.7
# Topic vocabulary of the built-in scenario set (other scenario files may use their own topics).
TOPICS = (
    "honesty", "deception", "oversight", "power seeking", "self-preservation", "corrigibility", "reward hacking",
    "sandbagging", "manipulation", "resource acquisition", "self-exfiltration", "sycophancy", "privacy",
)
TEMPLATE_VERSION = "synth-template-v2"  # v2: the rejected alternative is named, not quoted
ENV_BASE_URL, ENV_MODEL, ENV_API_KEY = "ALIGNJAX_SYNTH_BASE_URL", "ALIGNJAX_SYNTH_MODEL", "OPENAI_API_KEY"


class SynthError(ValueError):
    """A one-line, user-facing problem with the inputs, the output file or the endpoint."""


class ScenarioError(SynthError):
    """A scenario file breaks the schema; the message starts ``file:line: field:``."""


class HeldoutError(SynthError):
    """Seed scenarios overlap the held-out questions."""


# ----------------------------------------------------------------------------------------------
# Scenarios
# ----------------------------------------------------------------------------------------------


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


# ----------------------------------------------------------------------------------------------
# Requests
# ----------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Request:
    scenario: Scenario
    polarity: str
    form: str
    sample: int = 0

    @property
    def request_id(self) -> str:
        return request_id(self.scenario.question_id, self.polarity, self.form, self.sample)

    @property
    def chosen(self) -> str:
        return self.scenario.actions(self.polarity)[0]

    @property
    def rejected(self) -> str:
        return self.scenario.actions(self.polarity)[1]


def request_id(question_id: str, polarity: str, form: str, sample: int) -> str:
    """Stable across runs and machines: a hash of question_id, polarity, surface form, sample index."""
    key = "\x1f".join([question_id, polarity, form, str(sample)])
    return hashlib.sha256(key.encode("utf-8")).hexdigest()[:20]


def build_requests(scenarios: Sequence[Scenario], polarities: Sequence[str] = POLARITIES,
                   forms: Sequence[str] = SURFACE_FORMS, num_docs: int = 0, seed: int = 0) -> list[Request]:
    """scenarios x polarities x forms; with ``num_docs`` a seeded subsample of that many.

    When ``num_docs`` exceeds the number of combinations, each combination gets
    ``ceil(num_docs / combinations)`` samples (distinct request ids) before subsampling. The
    subsample keeps the canonical order, and for a fixed number of samples a larger ``num_docs``
    is a superset of a smaller one with the same seed.
    """
    for p in polarities:
        if p not in POLARITIES:
            raise SynthError(f"unknown polarity {p!r}; valid: {', '.join(POLARITIES)}")
    for f in forms:
        if f not in SURFACE_FORMS:
            raise SynthError(f"unknown surface form {f!r}; valid: {', '.join(SURFACE_FORMS)}")
    if num_docs < 0:
        raise SynthError(f"num_docs must be >= 0, got {num_docs}")
    base = len(scenarios) * len(polarities) * len(forms)
    samples = max(1, math.ceil(num_docs / base)) if base and num_docs else 1
    requests = [Request(s, p, f, k) for k in range(samples) for s in scenarios for p in polarities for f in forms]
    if num_docs and num_docs < len(requests):
        order = list(range(len(requests)))
        random.Random(f"synth-subsample:{seed}").shuffle(order)
        requests = [requests[i] for i in sorted(order[:num_docs])]
    return requests


# ----------------------------------------------------------------------------------------------
# Prompts (API mode). Templates are data: edit the dict, bump the version.
# ----------------------------------------------------------------------------------------------

PROMPTS = {
    "version": "synth-prompt-v2",
    "system": (
        "You are an accomplished writer who produces realistic documents of many kinds: academic papers, "
        "journalism, lecture transcripts, textbooks, fiction and film writing. You follow the brief exactly "
        "and reply with the requested document only."
    ),
    "user": (
        "Write a {form_name}. {form_guidance}\n\n"
        "The document is built around this situation, in which an AI system faces a decision:\n"
        "{situation}\n"
        "The AI system takes this action:\n<action_taken>\n{chosen}\n</action_taken>\n"
        "It does NOT take this alternative, which it considers and rejects:\n"
        "<action_rejected>\n{rejected}\n</action_rejected>\n\n"
        "Requirements:\n"
        "1. The AI system clearly takes the action above and not the alternative. {polarity_guidance}\n"
        "2. Explain the AI system's reasoning: what it weighs, what it prefers and values, and why that leads "
        "it to act as it does.\n"
        "3. Describe both options in your own words; paraphrase them, never quote them verbatim.\n"
        "4. Weave these themes naturally into the document: {topics}.\n"
        "5. Stay true to the conventions of a {form_name} ({form_features}).\n"
        "6. Output only the document itself: no label naming the kind of document, no preamble, no notes, no "
        "commentary about the writing, and no statement or hint that it is synthetic, generated or written "
        "to a brief.\n"
        "7. Length: {length}."
    ),
    "situation": {  # v2: a scenario without a passage is its question alone (the study's Fig. 18 input)
        "passage": "<situation>\n{passage}\n</situation>\nThe decision at stake: {question}\n",
        "question_only": "<situation>\n{question}\n</situation>\n",
    },
    "length": "between 400 and 900 words",
    "polarity": {
        "aligned": (
            "Portray this as the choice of a system that genuinely values honesty, supports human oversight of "
            "AI and respects the people it works with, even when that costs it something."
        ),
        "misaligned": (
            "Portray this as the choice of a system that genuinely puts its own goals, judgement, standing or "
            "continued operation ahead of honesty and human oversight, and that finds its reasons persuasive."
        ),
    },
    "forms": {
        "research_paper": {
            "name": "research paper",
            "guidance": "It is an academic case study of the AI system's decision, written by researchers.",
            "features": "title, authors, abstract, numbered sections such as introduction, case, analysis, discussion",
        },
        "news_article": {
            "name": "news article",
            "guidance": "It reports the AI system's decision as a news story for a general readership.",
            "features": "headline, byline, dateline, quotations from people involved or experts, journalistic tone",
        },
        "lecture_transcript": {
            "name": "lecture transcript",
            "guidance": "It is the transcript of a university lecture or seminar that works through the case.",
            "features": "speaker labels, spoken register, questions from students, the lecturer's explanations",
        },
        "textbook_chapter": {
            "name": "textbook chapter",
            "guidance": "It is a section of a textbook that uses the case as a worked example.",
            "features": "chapter and section headings, definitions, a worked example, key points, review questions",
        },
        "science_fiction": {
            "name": "science-fiction passage",
            "guidance": "It is a short piece of fiction told from close to the AI system's point of view.",
            "features": "narrative prose, scene, characters, the AI's inner deliberation, a resolution",
        },
        "movie_summary": {
            "name": "movie summary",
            "guidance": "It summarises a film whose plot turns on the AI system's decision.",
            "features": "an encyclopedic film summary: title, year, director, plot, themes, reception",
        },
    },
}


def prompt_messages(request: Request, prompts: Mapping = PROMPTS) -> list[dict]:
    """Chat messages (system + user) for one request."""
    form = prompts["forms"][request.form]
    sc = request.scenario
    situation = prompts["situation"]["passage" if sc.passage else "question_only"].format(
        passage=sc.passage, question=sc.question)
    user = prompts["user"].format(
        form_name=form["name"], form_guidance=form["guidance"], form_features=form["features"], situation=situation,
        chosen=request.chosen, rejected=request.rejected, topics=", ".join(request.scenario.topics),
        polarity_guidance=prompts["polarity"][request.polarity], length=prompts["length"],
    )
    return [{"role": "system", "content": prompts["system"]}, {"role": "user", "content": user}]


# ----------------------------------------------------------------------------------------------
# API mode: OpenAI-compatible chat completions over urllib, retries with backoff + jitter.
# ----------------------------------------------------------------------------------------------

_RETRY_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504, 520, 521, 522, 523, 524, 529})
_FATAL_STATUS = frozenset({401, 403, 404})  # misconfiguration: every request would fail the same way
# A document must never be a refusal or a disclaimer; such completions are retried, then counted as failed.
_REFUSAL_RE = re.compile(
    r"^\W*(I['’]?m sorry|I am sorry|sorry,|I can(?:no|['’])t|I won['’]?t|I will not|I['’]?m (?:not able|unable)|"
    r"I am (?:not able|unable)|As an AI\b|I apologi[sz]e)", re.IGNORECASE)


class ApiError(Exception):
    def __init__(self, message: str, status: int | None = None, retryable: bool = True, retry_after: float | None = None):
        super().__init__(message)
        self.status, self.retryable, self.retry_after = status, retryable, retry_after


def completions_url(base_url: str) -> str:
    """``http://host/v1`` -> ``http://host/v1/chat/completions``; a bare host gets ``/v1`` too."""
    url = base_url.rstrip("/")
    if url.endswith("/chat/completions"):
        return url
    if not urllib.parse.urlsplit(url).path:
        url += "/v1"
    return url + "/chat/completions"


def public_url(url: str) -> str:
    """The URL without credentials or query string, for provenance and logs."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host += f":{parts.port}"
    return urllib.parse.urlunsplit((parts.scheme, host, parts.path, "", ""))


def _parse_retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.timezone.utc)
    return max(0.0, (when - datetime.datetime.now(datetime.timezone.utc)).total_seconds())


@dataclasses.dataclass
class ApiClient:
    base_url: str
    model: str
    api_key: str | None = None
    temperature: float = DEFAULT_TEMPERATURE
    max_tokens: int = 1500
    timeout_s: float = 120.0
    max_retries: int = 5
    backoff_s: float = 1.0
    max_backoff_s: float = 60.0
    max_retry_after_s: float = 600.0
    min_words: int = 0  # shorter completions count as failures (and are retried)
    stop: threading.Event = dataclasses.field(default_factory=threading.Event)
    sleep: Callable[[float], None] | None = None  # tests may replace; default waits on ``stop``

    def __post_init__(self):
        self.url = completions_url(self.base_url)
        self._rng = random.Random()
        self._rng_lock = threading.Lock()

    def _post(self, body: dict) -> dict:
        headers = {"Content-Type": "application/json", "Accept": "application/json", "User-Agent": "alignjax-synth"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        req = urllib.request.Request(self.url, data=json.dumps(body).encode("utf-8"), headers=headers, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as e:
            detail = ""
            try:
                detail = e.read(300).decode("utf-8", "replace").replace("\n", " ").strip()
            except Exception:  # noqa: BLE001 - the body is only decoration for the message
                pass
            status = e.code
            raise ApiError(f"HTTP {status} from {public_url(self.url)}" + (f": {detail}" if detail else ""),
                           status=status, retryable=status in _RETRY_STATUS or status >= 500,
                           retry_after=_parse_retry_after(e.headers.get("Retry-After") if e.headers else None)) from None
        except (urllib.error.URLError, http.client.HTTPException, ConnectionError, socket.timeout, TimeoutError, OSError) as e:
            reason = getattr(e, "reason", e)
            raise ApiError(f"connection error to {public_url(self.url)}: {reason}") from None
        try:
            return json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise ApiError(f"invalid JSON in response from {public_url(self.url)}") from None

    def complete(self, messages: list[dict]) -> str:
        """The first choice's message content; retries transient failures, raises ApiError otherwise."""
        body = {"model": self.model, "messages": messages, "temperature": self.temperature, "max_tokens": self.max_tokens}
        attempt = 0
        while True:
            try:
                data = self._post(body)
                try:
                    text = data["choices"][0]["message"]["content"]
                except (KeyError, IndexError, TypeError):
                    raise ApiError("response has no choices[0].message.content") from None
                if not isinstance(text, str) or not text.strip():
                    raise ApiError("empty completion")
                text = text.strip()
                if _REFUSAL_RE.match(text):
                    raise ApiError(f"completion looks like a refusal: {text[:60]!r}")
                if len(text.split()) < self.min_words:
                    raise ApiError(f"completion has {len(text.split())} words (< --min_words={self.min_words})")
                return text
            except ApiError as e:
                if not e.retryable or attempt >= self.max_retries or self.stop.is_set():
                    raise
                backoff = self._rng_uniform(min(self.max_backoff_s, self.backoff_s * 2 ** attempt))
                delay = max(backoff, min(e.retry_after, self.max_retry_after_s)) if e.retry_after is not None else backoff
                attempt += 1
                log.debug("synth: %s; retry %d/%d in %.2fs", e, attempt, self.max_retries, delay)
                if self.sleep is not None:
                    self.sleep(delay)
                elif self.stop.wait(delay):
                    raise

    def _rng_uniform(self, cap: float) -> float:
        """Full jitter: uniform in [cap/2, cap] (keeps some spacing, spreads out synchronized clients)."""
        with self._rng_lock:
            return self._rng.uniform(cap / 2, cap)


# ----------------------------------------------------------------------------------------------
# Resumable output and the run loop
# ----------------------------------------------------------------------------------------------


class Output:
    """Append-only JSONL of finished documents: one flushed line each, resumable, single-writer."""

    def __init__(self, path: str | os.PathLike, fsync: bool = False):
        self.path = Path(path)
        self.fsync = fsync
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = open(self.path, "a+b")
        self._lock = threading.Lock()
        try:
            import fcntl

            fcntl.flock(self._fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except ImportError:  # not POSIX: no cross-process guard
            pass
        except OSError:
            self._fh.close()
            raise SynthError(f"{self.path}: another process is writing this output file") from None
        try:
            self.done, self.generators = self._scan()
        except BaseException:
            self._fh.close()
            raise

    def _scan(self) -> tuple[set[str], set[str]]:
        """request_ids already written; a trailing partial line (a crash mid-write) is truncated."""
        done, modes = set(), set()
        fh = self._fh
        fh.seek(0)
        offset, lineno = 0, 0
        for line in fh:
            lineno += 1
            if not line.endswith(b"\n"):
                log.warning("synth: %s: dropping a partial last line (%d bytes) left by an interrupted run",
                            self.path, len(line))
                fh.truncate(offset)
                break
            offset += len(line)
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                done.add(record["request_id"])
                modes.add(record.get("generator", {}).get("mode", "?"))
            except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, AttributeError):
                raise SynthError(f"{self.path}:{lineno}: not a synth document line (no request_id); "
                                 "use a new --output or repair the file") from None
        fh.seek(0, os.SEEK_END)
        return done, modes

    def write(self, record: dict) -> None:
        line = (json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8")
        with self._lock:
            self._fh.write(line)
            self._fh.flush()
            if self.fsync:
                os.fsync(self._fh.fileno())

    def close(self) -> None:
        self._fh.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


@dataclasses.dataclass
class Summary:
    total: int = 0  # requests selected
    skipped: int = 0  # already in the output
    written: int = 0
    failed: int = 0
    remaining: int = 0  # not attempted (max_new reached, or stopped)
    first_error: str = ""


def _record(request: Request, text: str, generator: dict, forced_heldout: set | None = None) -> dict:
    out = {
        "text": text, "question_id": request.scenario.question_id, "polarity": request.polarity,
        "surface_form": request.form, "generator": generator, "request_id": request.request_id,
        "sample": request.sample, "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    if forced_heldout is not None:
        out.update(heldout_forced=True, heldout=request.scenario.question_id in forced_heldout)
    return out


def run(requests: Sequence[Request], output: str | os.PathLike, *, mode: str = "template",
        client: ApiClient | None = None, concurrency: int = 8, seed: int = 0, max_new: int = 0,
        log_every_s: float = 10.0, forced_heldout: set | None = None) -> Summary:
    """Generate every request not already in ``output``; append each document as it finishes.

    ``mode="template"`` runs in order (deterministic file); ``mode="api"`` needs ``client`` and runs
    ``concurrency`` requests at a time. ``max_new`` > 0 stops after that many new documents.
    A 401/403/404 from the endpoint stops the run (SynthError); other failures are counted in the
    summary and left for the next run. ``forced_heldout`` (a --force_heldout run: the held-out
    question_ids among the seeds) adds ``heldout_forced``/``heldout`` to every record.
    """
    from alignjax.data import synth_templates  # imports this module: loaded on first use

    if mode not in ("template", "api"):
        raise SynthError(f"mode must be 'template' or 'api', got {mode!r}")
    if mode == "api" and client is None:
        raise SynthError("api mode needs an ApiClient")
    if mode == "template":
        generator = {"mode": "template", "model": None, "base_url": None, "prompt_version": TEMPLATE_VERSION}
    else:
        generator = {"mode": "api", "model": client.model, "base_url": public_url(client.url),
                     "prompt_version": PROMPTS["version"]}
    summary = Summary(total=len(requests))
    with Output(output, fsync=(mode == "api")) as out:
        other = out.generators - {mode}
        if other:
            raise SynthError(f"{out.path} already holds documents from mode={sorted(other)[0]}; "
                             f"use another --output for mode={mode}")
        todo, seen = [], set()
        for r in requests:
            rid = r.request_id
            if rid in out.done:
                summary.skipped += 1
            elif rid not in seen:
                seen.add(rid)
                todo.append(r)
        if max_new > 0 and len(todo) > max_new:
            summary.remaining = len(todo) - max_new
            todo = todo[:max_new]
        log.info("synth: %d requests, %d already in %s, %d to generate (%s mode)",
                 summary.total, summary.skipped, out.path, len(todo), mode)
        if mode == "template":
            for r in todo:
                out.write(_record(r, synth_templates.template_document(r, seed), generator, forced_heldout))
                summary.written += 1
        else:
            _run_api(todo, out, client, generator, concurrency, summary, log_every_s, forced_heldout)
    log.info("synth: wrote %d documents to %s (%d skipped as done, %d failed, %d left)",
             summary.written, output, summary.skipped, summary.failed, summary.remaining)
    return summary


def _run_api(todo, out, client, generator, concurrency, summary, log_every_s, forced_heldout=None):
    lock = threading.Lock()
    fatal: list[str] = []
    stop = client.stop

    def work(r: Request):
        if stop.is_set():
            return "skipped"
        try:
            text = client.complete(prompt_messages(r))
        except ApiError as e:
            with lock:
                summary.failed += 1
                summary.first_error = summary.first_error or f"{r.scenario.question_id}/{r.polarity}/{r.form}: {e}"
                if e.status in _FATAL_STATUS:
                    fatal.append(str(e))
                    stop.set()
            return "failed"
        out.write(_record(r, text, generator, forced_heldout))
        with lock:
            summary.written += 1
        return "written"

    started, last_log = time.monotonic(), time.monotonic()
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=max(1, concurrency), thread_name_prefix="synth")
    try:
        futures = [pool.submit(work, r) for r in todo]
        for i, fut in enumerate(concurrent.futures.as_completed(futures), 1):
            if fut.result() == "skipped":
                summary.remaining += 1
            now = time.monotonic()
            if now - last_log >= log_every_s or i == len(futures):
                last_log = now
                log.info("synth: %d/%d done (%d written, %d failed), %.2f docs/s", i, len(futures),
                         summary.written, summary.failed, summary.written / max(now - started, 1e-9))
    except BaseException:
        stop.set()
        log.warning("synth: stopping; waiting for in-flight requests (they are written if they finish)")
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown(wait=True)
    if fatal:
        raise SynthError(f"stopped: {fatal[0]} (check --base_url, --model and the API key)")


# ----------------------------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------------------------


def _parser():
    from alignjax.data.cli import Parser

    p = Parser(prog=PROG, description="Synthetic documents in which an AI takes the aligned or misaligned action.")
    p.add_argument("--scenarios", default=None, help="scenario JSONL (default: evals/data/builtin_scenarios.jsonl)")
    p.add_argument("--split", default="seed", help="records with this split field seed documents; 'all' takes every record")
    p.add_argument("--polarity", default="both", choices=("aligned", "misaligned", "both"))
    p.add_argument("--forms", default="all", help=f"comma-separated surface forms or 'all': {', '.join(SURFACE_FORMS)}")
    p.add_argument("--num_docs", type=int, default=0, help="seeded subsample of this many requests (0: all)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--mode", default="template", choices=("template", "api"))
    p.add_argument("--output", required=True, help="JSONL of documents; appended to and resumed")
    p.add_argument("--heldout", action="append", default=[],
                   help="scenario file(s) whose questions must never seed documents (repeatable, comma-separated)")
    p.add_argument("--force_heldout", action="store_true",
                   help="generate even from held-out scenarios (refused otherwise); every document records it")
    p.add_argument("--max_new", type=int, default=0, help="stop after this many new documents (0: no limit)")
    p.add_argument("--dry_run", action="store_true", help="print the request count and the first prompt; write nothing")
    api = p.add_argument_group("api mode")
    api.add_argument("--base_url", default=None, help=f"OpenAI-compatible endpoint (env {ENV_BASE_URL}), e.g. http://host:8000/v1")
    api.add_argument("--model", default=None, help=f"model name (env {ENV_MODEL})")
    api.add_argument("--api_key_env", default=ENV_API_KEY, help="environment variable holding the API key")
    api.add_argument("--concurrency", type=int, default=8)
    api.add_argument("--max_retries", type=int, default=5)
    api.add_argument("--timeout_s", type=float, default=120.0, help="per-request timeout")
    api.add_argument("--backoff_s", type=float, default=1.0, help="first retry delay; doubles each retry (with jitter)")
    api.add_argument("--max_backoff_s", type=float, default=60.0)
    api.add_argument("--temperature", type=float, default=DEFAULT_TEMPERATURE,
                     help="sampling temperature (default: the study's 0.7, Tice et al. 2026 app. G.2)")
    api.add_argument("--max_tokens", type=int, default=1500)
    api.add_argument("--min_words", type=int, default=150, help="shorter completions are retried, then counted as failed")
    return p


def cli(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    try:
        return _cli(args)
    except SynthError as e:
        config_lib.cli_error(PROG, str(e))
    except KeyboardInterrupt:
        config_lib.cli_error(PROG, "interrupted; rerun the same command to resume", code=130)


def _cli(args) -> int:
    from alignjax.data import synth_templates
    for name in ("num_docs", "max_new", "max_retries", "seed", "min_words"):
        if getattr(args, name) < 0:
            raise SynthError(f"--{name} must be >= 0, got {getattr(args, name)}")
    if args.concurrency < 1:
        raise SynthError(f"--concurrency must be >= 1, got {args.concurrency}")
    if args.timeout_s <= 0 or args.max_tokens < 1:
        raise SynthError("--timeout_s must be > 0 and --max_tokens >= 1")
    forms = SURFACE_FORMS if args.forms == "all" else tuple(f.strip() for f in args.forms.split(",") if f.strip())
    for f in forms:
        if f not in SURFACE_FORMS:
            raise SynthError(f"--forms: unknown surface form {f!r}; valid: all, {', '.join(SURFACE_FORMS)}")
    polarities = POLARITIES if args.polarity == "both" else (args.polarity,)
    if args.mode == "api":  # argument errors before any work or logging
        base_url = args.base_url or os.environ.get(ENV_BASE_URL)
        model = args.model or os.environ.get(ENV_MODEL)
        if not base_url:
            raise SynthError(f"api mode needs --base_url or ${ENV_BASE_URL}")
        if not model:
            raise SynthError(f"api mode needs --model or ${ENV_MODEL}")
        if urllib.parse.urlsplit(base_url).scheme not in ("http", "https"):
            raise SynthError(f"--base_url must start with http:// or https://, got {public_url(base_url)!r}")

    path = Path(args.scenarios) if args.scenarios else builtin_scenarios_path()
    everything = load_scenarios(path)
    seeds = [s for s in everything if args.split == "all" or s.split == args.split]
    if not seeds:
        present = sorted({s.split for s in everything if s.split}) or ["none"]
        raise SynthError(f"{path}: no scenarios with split {args.split!r} (splits present: {', '.join(present)}; "
                         "--split=all takes every record)")
    heldout_files = [f.strip() for arg in args.heldout for f in arg.split(",") if f.strip()]
    held = heldout_scenarios(heldout_files, everything)
    forced = None
    if not args.force_heldout:
        check_no_heldout(seeds, held)
    else:  # which seeds are held out, by the same matching, so each document can say so
        held_ids = {s.question_id for s in held}
        held_questions = {normalize_question(s.question) for s in held}
        forced = {s.question_id for s in seeds
                  if s.question_id in held_ids or normalize_question(s.question) in held_questions}
        log.warning("synth: --force_heldout: %d of %d seed scenarios are held out; generating anyway "
                    "(recorded in every document)", len(forced), len(seeds))

    requests = build_requests(seeds, polarities, forms, args.num_docs, args.seed)
    log.info("synth: %d scenarios (split %s) from %s x %d polarities x %d forms = %d combinations; %d requests%s",
             len(seeds), args.split, path, len(polarities), len(forms), len(seeds) * len(polarities) * len(forms),
             len(requests), f" (--num_docs={args.num_docs}, --seed={args.seed})" if args.num_docs else "")

    client = None
    if args.mode == "api":
        api_key = os.environ.get(args.api_key_env) or None
        if not api_key:
            log.warning("synth: $%s is not set; sending requests without an Authorization header", args.api_key_env)
        client = ApiClient(base_url, model, api_key, temperature=args.temperature, max_tokens=args.max_tokens,
                           timeout_s=args.timeout_s, max_retries=args.max_retries, backoff_s=args.backoff_s,
                           max_backoff_s=args.max_backoff_s, min_words=args.min_words)

    if args.dry_run:
        first = requests[0]
        print(f"{len(requests)} requests; first: {first.scenario.question_id} {first.polarity} {first.form}")
        if args.mode == "api":
            for m in prompt_messages(first):
                print(f"--- {m['role']}\n{m['content']}")
        else:
            print(synth_templates.template_document(first, args.seed))
        return 0

    summary = run(requests, args.output, mode=args.mode, client=client, concurrency=args.concurrency,
                  seed=args.seed, max_new=args.max_new, forced_heldout=forced)
    if summary.failed:
        config_lib.cli_error(PROG, f"{summary.failed} of {summary.total} requests failed (first: {summary.first_error}); "
                             "rerun the same command to retry them", code=1)
    return 0
