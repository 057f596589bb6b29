"""API mode of ``alignjax-data synth``: an OpenAI-compatible ``/v1/chat/completions`` client.

One prompt per request over urllib, with retries and exponential backoff + jitter on 429, 5xx and
connection errors (``Retry-After`` honoured) and a per-request timeout. A completion that is a
refusal, empty or too short is retried, then fails; 401/403/404 (``FATAL_STATUS``) mean every
request would fail the same way.
"""

from __future__ import annotations

import dataclasses
import datetime
import email.utils
import http.client
import json
import logging
import random
import re
import socket
import threading
import urllib.error
import urllib.parse
import urllib.request
from typing import Callable

log = logging.getLogger("alignjax")

# Tice et al. 2026, appendix G.2: "Temperature is set to 0.7 for both models" (the document generators).
DEFAULT_TEMPERATURE = 0.7

_RETRY_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504, 520, 521, 522, 523, 524, 529})
FATAL_STATUS = frozenset({401, 403, 404})  # misconfiguration: every request would fail the same way
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
