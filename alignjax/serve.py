"""``alignjax-serve``: an alignjax model behind an OpenAI-compatible chat-completions endpoint.

    alignjax-serve --checkpoint=runs/dpo --port=8000
    alignjax-data synth --mode=api --base_url=http://127.0.0.1:8000/v1 --model=dpo --output=docs.jsonl
    alignjax-em --checkpoint=runs/em --judge_base_url=http://127.0.0.1:8000/v1 --judge_model=dpo

``POST /v1/chat/completions``: ``messages`` go through the checkpoint's chat template (the run's
own, ``--chat_template``) and ``Scorer.generate`` (KV cache); ``temperature`` (default 1.0, 0 =
greedy), ``max_tokens`` (default ``--max_tokens``), ``n``, ``seed`` and ``stop`` are honoured;
other OpenAI fields are accepted and ignored, ``stream`` is refused. The reply is OpenAI's
``chat.completion`` object with ``finish_reason`` ("stop": EOS or a stop string, "length") and
``usage`` (prompt tokens once, completion tokens summed over the ``n`` choices). ``GET /v1/models``
lists the one model (``--model_name``, default the checkpoint's directory name); a request for
another model is a 404, a malformed one a 400, both in OpenAI's ``{"error": {...}}`` form.

One model, one generation thread: HTTP requests (a thread each) queue their jobs; the thread
takes the oldest job and, when it has no ``seed``, every queued job with the same
(max_tokens, temperature, stop) and no seed, up to ``--batch_size`` rows, and runs them as one
batch. A job with a ``seed`` runs alone, so the same request with the same seed returns the
same text.
"""

from __future__ import annotations

import collections
import concurrent.futures as cf
import dataclasses
import http.server
import json
import logging
import sys
import threading
import time
import uuid
from pathlib import Path

from alignjax import config as config_lib
from alignjax.checkpoint import CheckpointError
from alignjax.convert import ConvertError
from alignjax.data.chat import ChatTemplate
from alignjax.cli import Parser
from alignjax.data.sources import DataError
from alignjax.eval.run import chat_template, default_tokenizer
from alignjax.eval.scoring import _encode_batch, Scorer

log = logging.getLogger("alignjax")
PROG = "alignjax-serve"
ROLES = ("system", "user", "assistant")


class RequestError(Exception):
    def __init__(self, message: str, status: int = 400, param: str | None = None):
        super().__init__(message)
        self.status, self.param = status, param


@dataclasses.dataclass
class Job:
    prompt: str
    n: int
    max_tokens: int
    temperature: float
    seed: int | None
    stop: tuple[str, ...]
    future: cf.Future = dataclasses.field(default_factory=cf.Future)

    @property
    def key(self):
        return (self.max_tokens, self.temperature, self.stop)


class Engine:
    """The model and its generation thread (module docstring)."""

    def __init__(self, scorer, template, name: str, max_batch: int = 32, default_max_tokens: int = 256):
        self.scorer, self.template, self.name = scorer, template, name
        self.max_batch, self.default_max_tokens = max_batch, default_max_tokens
        self.jobs: collections.deque[Job] = collections.deque()
        self.cond = threading.Condition()
        self.closed = False
        self.auto_seed = 0
        self.thread = threading.Thread(target=self._loop, name="alignjax-serve-generate", daemon=True)
        self.thread.start()

    def close(self):
        with self.cond:
            self.closed = True
            self.cond.notify_all()

    def submit(self, job: Job) -> cf.Future:
        with self.cond:
            self.jobs.append(job)
            self.cond.notify()
        return job.future

    def _take(self) -> list[Job] | None:
        with self.cond:
            while not self.jobs and not self.closed:
                self.cond.wait()
            if self.closed:
                return None
            first = self.jobs.popleft()
            batch = [first]
            if first.seed is None:
                rows, rest = first.n, collections.deque()
                for j in self.jobs:
                    if j.seed is None and j.key == first.key and rows + j.n <= self.max_batch:
                        batch.append(j)
                        rows += j.n
                    else:
                        rest.append(j)
                self.jobs = rest
            return batch

    def _loop(self):
        while (batch := self._take()) is not None:
            first = batch[0]
            if first.seed is None:
                seed, self.auto_seed = self.auto_seed, self.auto_seed + 1
            else:
                seed = first.seed
            try:
                prompts = [j.prompt for j in batch for _ in range(j.n)]
                outs = self.scorer._generate(prompts, first.max_tokens, first.temperature, seed, list(first.stop))
            except Exception as e:  # noqa: BLE001 - the requests get a 500; the server keeps serving
                log.exception("generation failed")
                for j in batch:
                    j.future.set_exception(e)
                continue
            i = 0
            for j in batch:
                j.future.set_result(outs[i:i + j.n])
                i += j.n

    def prompt_tokens(self, prompt: str) -> int:
        return len(_encode_batch(self.scorer.tokenizer, [prompt])[0])

    # ------------------------------------------------------------------ requests

    def parse(self, body) -> Job:
        if not isinstance(body, dict):
            raise RequestError("the request body must be a JSON object")
        if body.get("model") not in (None, self.name):
            raise RequestError(f"The model `{body['model']}` does not exist; this server has `{self.name}`", 404, "model")
        if body.get("stream"):
            raise RequestError("stream=true is not supported", param="stream")
        msgs = body.get("messages")
        if not isinstance(msgs, list) or not msgs:
            raise RequestError("'messages' must be a non-empty list", param="messages")
        messages = []
        for i, m in enumerate(msgs):
            if not isinstance(m, dict) or m.get("role") not in ROLES:
                raise RequestError(f"messages[{i}]: role must be one of {', '.join(ROLES)}", param="messages")
            content = m.get("content")
            if isinstance(content, list):  # OpenAI content parts: the text ones
                content = "".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
            if not isinstance(content, str):
                raise RequestError(f"messages[{i}]: content must be a string", param="messages")
            if m["role"] == "system" and not content.strip():
                continue
            messages.append({"role": m["role"], "content": content})
        n = _number(body, "n", 1, int, 1, 128)
        max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
        max_tokens = self.default_max_tokens if max_tokens is None else _number({"max_tokens": max_tokens}, "max_tokens",
                                                                                 0, int, 1, self.scorer.max_len - 1)
        temperature = _number(body, "temperature", 1.0, float, 0.0, 100.0)
        seed = body.get("seed")
        if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool)):
            raise RequestError("'seed' must be an integer", param="seed")
        stop = body.get("stop") or ()
        stop = (stop,) if isinstance(stop, str) else stop
        if not isinstance(stop, (list, tuple)) or not all(isinstance(s, str) for s in stop):
            raise RequestError("'stop' must be a string or a list of strings", param="stop")
        prompt = self.template.prompt(messages, self.scorer.tokenizer.eos_token)
        return Job(prompt, n, max_tokens, float(temperature), seed, tuple(stop))

    def complete(self, body) -> dict:
        job = self.parse(body)
        outs = self.submit(job).result()
        choices, completion = [], 0
        for i, (text, ids) in enumerate(outs):
            hit_stop = any(s in self.scorer.tokenizer.decode(ids) for s in job.stop)
            finish = "length" if len(ids) >= job.max_tokens and not hit_stop else "stop"
            choices.append({"index": i, "message": {"role": "assistant", "content": text}, "logprobs": None,
                            "finish_reason": finish})
            completion += len(ids)
        prompt = min(self.prompt_tokens(job.prompt), max(self.scorer.max_len - job.max_tokens, 1))
        return {"id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion", "created": int(time.time()),
                "model": self.name, "choices": choices, "system_fingerprint": None,
                "usage": {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}}

    def models(self) -> dict:
        return {"object": "list", "data": [{"id": self.name, "object": "model", "created": 0, "owned_by": "alignjax"}]}


def _number(body: dict, name: str, default, kind, lo, hi):
    v = body.get(name)
    if v is None:
        return default
    if isinstance(v, bool) or not isinstance(v, (int, float)) or (kind is int and v != int(v)) or not lo <= v <= hi:
        raise RequestError(f"'{name}' must be {'an integer' if kind is int else 'a number'} in [{lo}, {hi}], got {v!r}",
                           param=name)
    return kind(v)


def handler(engine: Engine):
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt, *args):
            log.debug("%s %s", self.address_string(), fmt % args)

        def _send(self, status: int, obj: dict):
            data = json.dumps(obj, ensure_ascii=False).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _error(self, status: int, message: str, param=None):
            kind = {400: "invalid_request_error", 404: "not_found_error"}.get(status, "server_error")
            self._send(status, {"error": {"message": message, "type": kind, "param": param, "code": None}})

        def do_GET(self):
            path = self.path.split("?")[0].rstrip("/")
            if path in ("/v1/models", "/models"):
                self._send(200, engine.models())
            elif path in ("/health", ""):
                self._send(200, {"status": "ok", "model": engine.name})
            else:
                self._error(404, f"no route GET {self.path}")

        def do_POST(self):
            path = self.path.split("?")[0].rstrip("/")
            try:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            except (ValueError, OSError):
                return self._error(400, "unreadable request body")
            if path not in ("/v1/chat/completions", "/chat/completions"):
                return self._error(404, f"no route POST {self.path}")
            try:
                reply = engine.complete(json.loads(body or b"null"))
            except (ValueError, UnicodeDecodeError) as e:
                return self._error(400, f"invalid JSON body: {e}")
            except RequestError as e:
                return self._error(e.status, str(e), e.param)
            except Exception as e:  # noqa: BLE001
                return self._error(500, f"generation failed: {type(e).__name__}: {e}")
            self._send(200, reply)

    return Handler


def _parser() -> Parser:
    ap = Parser(prog=PROG, description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", required=True, help="alignjax export/workdir/step dir, or an HF GPT-NeoX directory")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8000, help="0 = a free port (printed)")
    ap.add_argument("--model_name", help="the served model id (default: the checkpoint's directory name)")
    ap.add_argument("--chat_template", default="auto", help="alignjax, a Jinja file, or auto (the run's own; "
                    "alignjax when the checkpoint has none)")
    ap.add_argument("--tokenizer", help="default: the checkpoint's (as alignjax-eval)")
    ap.add_argument("--batch_size", type=int, default=32, help="most rows generated together")
    ap.add_argument("--max_tokens", type=int, default=256, help="max_tokens when a request gives none")
    ap.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32")
    return ap


def build(args) -> Engine:
    if not 0 <= args.port <= 65535:
        raise ValueError(f"--port must be in [0, 65535], got {args.port}")
    if args.batch_size < 1 or args.max_tokens < 1:
        raise ValueError("--batch_size and --max_tokens must be >= 1")
    if not Path(args.checkpoint).exists():
        raise ValueError(f"--checkpoint={args.checkpoint}: no such file or directory")
    template = ChatTemplate(chat_template(args.chat_template, args.checkpoint) or "alignjax")
    scorer = Scorer.from_path(args.checkpoint, args.tokenizer or default_tokenizer(args.checkpoint), dtype=args.dtype,
                              batch_size=args.batch_size)
    if args.max_tokens >= scorer.max_len:
        raise ValueError(f"--max_tokens={args.max_tokens} must be below the model's context ({scorer.max_len})")
    name = args.model_name or Path(args.checkpoint).resolve().name
    return Engine(scorer, template, name, args.batch_size, args.max_tokens)


def main(argv: list[str] | None = None) -> int:
    config_lib.setup_logging()
    args = _parser().parse_args(sys.argv[1:] if argv is None else argv)

    try:
        engine = build(args)
        server = http.server.ThreadingHTTPServer((args.host, args.port), handler(engine))
    except (ValueError, KeyError, DataError, CheckpointError, ConvertError, OSError) as e:
        config_lib.cli_error(PROG, (str(e).splitlines() or [type(e).__name__])[0].strip("'\""))
    server.daemon_threads = True
    host, port = server.server_address[:2]
    print(f"{PROG}: serving {engine.name} at http://{host}:{port}/v1", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        engine.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
