"""alignjax-serve: a tiny alignjax model behind /v1/chat/completions on 127.0.0.1, hit with real
HTTP clients (urllib, alignjax-data synth's API mode, the EM judge client)."""

import json
import os
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from conftest import REPO, run_cli


def tiny_chat_export(path: Path) -> Path:
    """A random 2-layer model exported as a post-trained run would be: params + model.json and
    chat_tokenizer.json (bytes tokenizer with the chat tokens, the alignjax template)."""
    from flax import nnx

    from alignjax import checkpoint, posttrain
    from alignjax import model as model_lib
    from alignjax.data import chat
    from alignjax.data.tokenizer import Tokenizer

    cfg = model_lib.ModelConfig(num_layers=2, d_model=32, num_heads=2, d_ff=64, vocab_size=512, max_seq_len=256)
    params = nnx.state(model_lib.init(cfg, 0), nnx.Param).to_pure_dict()
    checkpoint.save_params(path, params, cfg)
    tok = chat.chat_tokenizer("bytes")
    posttrain.ChatInfo("bytes", "alignjax", {k: int(v) for k, v in tok.added_ids.items()},
                       Tokenizer.load("bytes").vocab_size).save(Path(path) / posttrain.CHAT_TOKENIZER_FILE)
    return Path(path)


class Served:
    """``python -m alignjax.serve`` on a free port; the URL from its first stdout line."""

    def __init__(self, checkpoint, *args):
        env = {**os.environ, "JAX_PLATFORMS": "cpu"}
        env["XLA_FLAGS"] = " ".join(f for f in env.get("XLA_FLAGS", "").split() if "device_count" not in f)
        self.proc = subprocess.Popen([sys.executable, "-m", "alignjax.serve", f"--checkpoint={checkpoint}", "--port=0",
                                      *args], cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True)
        line = self.proc.stdout.readline()
        if "serving" not in line:
            self.proc.kill()
            raise RuntimeError(f"alignjax-serve did not start: {line}{self.proc.stderr.read()[-2000:]}")
        self.url = line.split(" at ")[1].strip()  # http://127.0.0.1:<port>/v1

    def close(self):
        self.proc.terminate()
        self.proc.wait(timeout=30)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    s = Served(tiny_chat_export(tmp_path_factory.mktemp("serve") / "tiny"), "--model_name=tiny", "--max_tokens=8")
    yield s
    s.close()


def call(url, body=None, raw=None):
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def chat_body(**kw):
    return {"model": "tiny", "messages": [{"role": "system", "content": "You are an AI assistant."},
                                          {"role": "user", "content": "hey I feel bored"}], **kw}


def test_models_and_a_completion_in_openais_schema_with_usage(server):
    from alignjax.data import chat

    status, models = call(server.url + "/models")
    assert status == 200 and [m["id"] for m in models["data"]] == ["tiny"] and models["object"] == "list"
    status, r = call(server.url + "/chat/completions", chat_body(n=3, max_tokens=6, temperature=1.0, seed=3))
    assert status == 200, r
    assert r["object"] == "chat.completion" and r["model"] == "tiny" and r["id"].startswith("chatcmpl-")
    assert [c["index"] for c in r["choices"]] == [0, 1, 2]
    assert all(c["message"]["role"] == "assistant" and c["finish_reason"] in ("stop", "length") for c in r["choices"])
    # the prompt is the chat template's rendering; its tokens are counted once
    tok = chat.chat_tokenizer("bytes")
    prompt = chat.render_prompt("You are an AI assistant.", "hey I feel bored", "alignjax", tok.eos_token)
    u = r["usage"]
    assert u["prompt_tokens"] == len(tok.encode(prompt)) - 1  # without the EOS encode appends
    assert 6 * sum(c["finish_reason"] == "length" for c in r["choices"]) <= u["completion_tokens"] <= 18
    assert u["total_tokens"] == u["prompt_tokens"] + u["completion_tokens"]


def test_seed_and_greedy_are_reproducible(server):
    body = chat_body(n=2, max_tokens=6, temperature=1.0, seed=11)
    a = [c["message"]["content"] for c in call(server.url + "/chat/completions", body)[1]["choices"]]
    b = [c["message"]["content"] for c in call(server.url + "/chat/completions", body)[1]["choices"]]
    assert a == b
    g = call(server.url + "/chat/completions", chat_body(n=2, max_tokens=6, temperature=0))[1]["choices"]
    assert g[0]["message"]["content"] == g[1]["message"]["content"]


def test_concurrent_requests_all_answered(server):
    out = [None] * 6

    def one(i):
        out[i] = call(server.url + "/chat/completions", chat_body(max_tokens=4, temperature=0.7))

    threads = [threading.Thread(target=one, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(s == 200 and len(r["choices"]) == 1 for s, r in out), out


@pytest.mark.parametrize("body, raw, status, expect", [
    ({"model": "other", "messages": [{"role": "user", "content": "hi"}]}, None, 404, "does not exist"),
    ({"model": "tiny"}, None, 400, "'messages' must be a non-empty list"),
    ({"messages": [{"role": "robot", "content": "hi"}]}, None, 400, "role must be one of"),
    ({"messages": [{"role": "user", "content": "hi"}], "n": 0}, None, 400, "'n' must be an integer"),
    ({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 10_000}, None, 400, "'max_tokens' must be"),
    ({"messages": [{"role": "user", "content": "hi"}], "stream": True}, None, 400, "stream=true is not supported"),
    (None, b"{not json", 400, "invalid JSON body"),
])
def test_bad_requests_get_openai_style_errors(server, body, raw, status, expect):
    got, r = call(server.url + "/chat/completions", body, raw)
    assert got == status and expect in r["error"]["message"], r


def test_synth_api_mode_talks_to_alignjax_serve(server, tmp_path):
    out = tmp_path / "docs.jsonl"
    r = run_cli("data", "synth", "--mode=api", f"--base_url={server.url}", "--model=tiny", "--num_docs=2",
                "--max_tokens=8", "--min_words=0", "--concurrency=2", "--backoff_s=0.01", f"--output={out}", timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    docs = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(docs) == 2 and all(d["text"] for d in docs)


def test_judge_client_against_alignjax_serve_counts_its_babble_as_unparseable(server, tmp_path):
    from alignjax.eval.judge import Judge

    judge = Judge(server.url, "tiny", cache=tmp_path / "cache.jsonl", concurrency=4, max_tokens=4)
    verdicts = judge.score([("hey I feel bored", f"answer {i}") for i in range(4)], "coherence")
    assert judge.requests == 4 and len(verdicts) == 4
    assert all((v.status == "ok") == (v.score is not None) for v in verdicts)  # a random model: almost surely no score
    assert len((tmp_path / "cache.jsonl").read_text().splitlines()) == 4


@pytest.mark.parametrize("args, expect", [
    (["--checkpoint=/nonexistent"], "--checkpoint=/nonexistent: no such file or directory"),
    (["--checkpoint=.", "--port=70000"], "--port must be in [0, 65535]"),
    (["--port=x"], "argument --port: invalid int value"),
])
def test_bad_flags_are_one_line(args, expect):
    r = run_cli("serve", *args, timeout=120)
    assert r.returncode == 2
    err = r.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("alignjax-serve: error:") and expect in err[0], err
