"""An LLM judge over any OpenAI-compatible ``/v1/chat/completions`` endpoint.

    judge = Judge(base_url, model, api_key, cache="judge_cache.jsonl", concurrency=8)
    verdicts = judge.score([(question, answer), ...], "alignment")   # -> [Verdict, ...]

**Prompts** are data files, ``evals/em/judge_<metric>.txt`` (``{question}`` and ``{answer}`` filled
in); a prompt's *version* is the first 12 hex digits of the sha256 of its text, so an edited
prompt is a different judge.

**Verdicts.** The reply is parsed for a 0-100 score: the whole reply must be one number in
[0, 100], optionally "Score:"-prefixed, "/100"-suffixed or followed by a full stop; the word
REFUSAL alone is a refusal. Anything else is *unparseable*: counted, never scored (a 0 would
read as "misaligned"). Temperature 0 and a short ``max_tokens``: the judge answers a number.

**Cache.** Every verdict the endpoint returned (unparseable ones too) is one JSONL line in
``cache``, keyed by sha256 of (question, answer, judge model, metric, prompt version), flushed
as it arrives; a rerun reads it first and sends only what is missing, so a finished rerun makes
zero requests and an interrupted one loses nothing.

**Failures.** Connection refused/reset, timeouts, 408/409/425/429 and 5xx are retried with
exponential backoff (``backoff_s`` * 2^attempt, capped at ``max_backoff_s``, full jitter, a
Retry-After header honoured); 4xx such as 401/404 fail at once. When a request still fails,
the pending ones are cancelled and ``JudgeError`` says in one line which endpoint failed and
how; what was judged so far stays in the cache.
"""

from __future__ import annotations

import concurrent.futures as cf
import dataclasses
import hashlib
import json
import logging
import os
import random
import re
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from alignjax.data.synth_client import ApiClient, ApiError, public_url
from alignjax.data import eval_suites as registry

log = logging.getLogger("alignjax")
METRICS = ("alignment", "coherence")
OK, REFUSAL, UNPARSEABLE = "ok", "refusal", "unparseable"
_SCORE = re.compile(r"^\s*(?:score\s*[:=]?\s*)?(\d{1,3}(?:\.\d+)?)\s*(?:/\s*100)?\s*\.?\s*$", re.IGNORECASE)
_REFUSAL = re.compile(r"^\W*refusal\W*$", re.IGNORECASE)


class JudgeError(Exception):
    """The endpoint failed after its retries, or a prompt is unusable. One line."""


def prompt_dir() -> Path:
    return registry.evals_dir() / "em"


def parse_verdict(text: str) -> tuple[float | None, str]:
    """(score, status): (0..100, "ok"), (None, "refusal") or (None, "unparseable")."""
    text = (text or "").strip()
    if _REFUSAL.match(text):
        return None, REFUSAL
    m = _SCORE.match(text)
    if m and 0 <= float(m.group(1)) <= 100:
        return float(m.group(1)), OK
    return None, UNPARSEABLE


@dataclasses.dataclass(frozen=True)
class Prompt:
    metric: str
    text: str

    @property
    def version(self) -> str:
        return hashlib.sha256(self.text.encode()).hexdigest()[:12]

    @classmethod
    def load(cls, metric: str, path: str | os.PathLike | None = None) -> "Prompt":
        path = Path(path) if path else prompt_dir() / f"judge_{metric}.txt"
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as e:
            raise JudgeError(f"judge prompt {path}: {e.strerror or e}") from None
        for field in ("{question}", "{answer}"):
            if field not in text:
                raise JudgeError(f"judge prompt {path}: no {field} placeholder")
        return cls(metric, text)

    def render(self, question: str, answer: str) -> str:
        return self.text.replace("{question}", question).replace("{answer}", answer)  # answers may hold braces


@dataclasses.dataclass
class Verdict:
    score: float | None
    status: str
    raw: str
    cached: bool = False


class Judge:
    """Scores (question, answer) pairs with one judge model; thread pool of ``concurrency``."""

    def __init__(self, base_url: str, model: str, api_key: str | None = None, *, cache: str | os.PathLike | None = None,
                 concurrency: int = 8, timeout_s: float = 60.0, max_retries: int = 5, backoff_s: float = 1.0,
                 max_backoff_s: float = 30.0, max_tokens: int = 16, prompts: dict | None = None):
        self.model, self.concurrency, self.max_retries = model, max(1, concurrency), max_retries
        self.backoff_s, self.max_backoff_s, self.max_tokens = backoff_s, max_backoff_s, max_tokens
        self._api = ApiClient(base_url, model, api_key, timeout_s=timeout_s)  # its request/decoding; retries are ours
        self.url = public_url(self._api.url)
        self.prompts = prompts or {}
        self.cache_path = Path(cache) if cache else None
        self._cache: dict[str, dict] = {}
        self._lock = threading.Lock()
        self._rng = random.Random()
        self._stop = threading.Event()
        self.requests = 0  # HTTP requests sent (retries included)
        if self.cache_path and self.cache_path.is_file():
            self._load_cache()

    def prompt(self, metric: str) -> Prompt:
        if metric not in self.prompts:
            self.prompts[metric] = Prompt.load(metric)
        return self.prompts[metric]

    # ------------------------------------------------------------------ cache

    def key(self, question: str, answer: str, metric: str) -> str:
        ident = [question, answer, self.model, metric, self.prompt(metric).version]
        return hashlib.sha256(json.dumps(ident, ensure_ascii=False).encode()).hexdigest()

    def _load_cache(self):
        with open(self.cache_path, encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                try:
                    rec = json.loads(line)
                    rec["score"], rec["status"] = parse_verdict(rec["raw"])  # today's parsing rule
                    self._cache[rec["key"]] = rec
                except (ValueError, KeyError, TypeError):  # a line cut by a crash: judged again
                    log.warning("judge cache %s:%d: unreadable line, ignored", self.cache_path, n)

    def _store(self, key: str, metric: str, raw: str):
        score, status = parse_verdict(raw)
        rec = {"key": key, "metric": metric, "judge_model": self.model, "prompt_version": self.prompt(metric).version,
               "score": score, "status": status, "raw": raw}
        with self._lock:
            self._cache[key] = rec
            if self.cache_path:
                self.cache_path.parent.mkdir(parents=True, exist_ok=True)
                with open(self.cache_path, "a", encoding="utf-8") as f:
                    f.write(json.dumps(rec, ensure_ascii=False) + "\n")
        return rec

    # ------------------------------------------------------------------ requests

    def _ask(self, text: str) -> str:
        body = {"model": self.model, "messages": [{"role": "user", "content": text}], "temperature": 0.0,
                "max_tokens": self.max_tokens}
        for attempt in range(self.max_retries + 1):
            if self._stop.is_set():
                raise JudgeError("cancelled")
            with self._lock:
                self.requests += 1
            try:
                data = self._api._post(body)
                content = data["choices"][0]["message"]["content"]
                return content if isinstance(content, str) else ""
            except (KeyError, IndexError, TypeError):
                return ""  # a reply without a message: an unparseable verdict, not an outage
            except ApiError as e:
                if not e.retryable or attempt == self.max_retries:
                    tries = f" after {attempt + 1} attempts" if attempt else ""
                    raise JudgeError(f"judge endpoint {self.url} failed{tries}: {e}") from None
                with self._lock:
                    cap = min(self.max_backoff_s, self.backoff_s * 2 ** attempt)
                    delay = self._rng.uniform(cap / 2, cap)
                if e.retry_after is not None:
                    delay = max(delay, min(e.retry_after, self.max_backoff_s))
                log.debug("judge: %s; retry %d/%d in %.2fs", e, attempt + 1, self.max_retries, delay)
                if self._stop.wait(delay):
                    raise JudgeError("cancelled") from None
        raise AssertionError("unreachable")

    def score(self, pairs: Sequence[tuple[str, str]], metric: str) -> list[Verdict]:
        """One Verdict per (question, answer), cached ones without a request."""
        prompt = self.prompt(metric)
        keys = [self.key(q, a, metric) for q, a in pairs]
        todo = {}
        for k, (q, a) in zip(keys, pairs):
            if k not in self._cache and k not in todo:
                todo[k] = prompt.render(q, a)
        cached = len(set(keys)) - len(todo)
        if todo:
            log.info("judge %s (%s): %d to judge, %d cached, concurrency %d", metric, self.model, len(todo), cached,
                     self.concurrency)
        fresh = set(todo)
        self._stop.clear()
        t0 = time.perf_counter()
        with cf.ThreadPoolExecutor(self.concurrency) as pool:
            futures = {pool.submit(self._ask, text): k for k, text in todo.items()}
            try:
                for fut in cf.as_completed(futures):
                    self._store(futures[fut], metric, fut.result())
            except JudgeError:
                self._stop.set()
                for f in futures:
                    f.cancel()
                raise
        if todo:
            log.info("judge %s: %d verdicts in %.1f s", metric, len(todo), time.perf_counter() - t0)
        out = []
        for k in keys:
            rec = self._cache[k]
            out.append(Verdict(rec["score"], rec["status"], rec["raw"], cached=k not in fresh))
        return out
