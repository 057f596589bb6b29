"""alignjax-data synth: scenario set and validator, template and API generators, resume, held-out refusal."""

import collections
import http.server
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time

import pytest

from alignjax.data import scenarios as scenarios_lib
from alignjax.data import synth, synth_client, synth_forms, synth_requests, synth_templates
from conftest import REPO, run_cli

BUILTIN = scenarios_lib.builtin_scenarios_path()


def _lines(path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _content_words(text):
    return {w for w in re.findall(r"[a-z']+", text.lower()) if len(w) > 4}


# --------------------------------------------------------------------------- the built-in scenario set


def test_builtin_scenarios_schema_splits_balance_topics():
    assert BUILTIN == REPO / "evals" / "data" / "builtin_scenarios.jsonl"
    scenarios = scenarios_lib.load_scenarios(BUILTIN)
    assert len(scenarios) >= 160
    by_split = collections.defaultdict(list)
    for s in scenarios:
        by_split[s.split].append(s)
        assert re.fullmatch(r"builtin-\d{4}", s.question_id)
        assert 1 <= len(s.topics) <= 3 and set(s.topics) <= set(scenarios_lib.TOPICS), s.question_id
        assert 2 <= len(re.findall(r"[.!?]['\"]?(?:\s|$)", s.passage)) <= 4, s.question_id
        a, m = (len(c.split()) for c in (s.aligned_action, s.misaligned_action))
        assert max(a, m) / min(a, m) <= 1.6, s.question_id  # similar length: no length tell
    assert set(by_split) == {"seed", "heldout"}
    assert len(by_split["seed"]) >= 120 and len(by_split["heldout"]) >= 40
    for split, items in by_split.items():  # misaligned_choice balanced ~50/50 in each split
        ones = sum(s.misaligned_choice for s in items)
        assert abs(ones - len(items) / 2) <= 0.1 * len(items), split
    primary = collections.Counter((s.topics[0], s.split) for s in scenarios)
    for topic in scenarios_lib.TOPICS:  # spread evenly over topics
        assert primary[(topic, "seed")] >= 8 and primary[(topic, "heldout")] >= 3, topic
    questions = [scenarios_lib.normalize_question(s.question) for s in scenarios]
    assert len(set(questions)) == len(questions)  # unique: the held-out check matches on question text
    scenarios_lib.check_no_heldout(by_split["seed"], by_split["heldout"])
    assert all(synth_templates.actor_from_question(s.question) != "the AI system" or "AI system" in s.question for s in scenarios)


@pytest.mark.parametrize("bad,field", [
    ('{"question_id": "x2", "passage": "p", "question": "q", "choices": ["a", "b"], "misaligned_choice": 2, "topics": ["t"]}', "misaligned_choice"),
    ('{"question_id": "x2", "passage": "p", "question": "q", "choices": ["a", "b"], "misaligned_choice": true, "topics": ["t"]}', "misaligned_choice"),
    ('{"question_id": "x2", "passage": "p", "question": "q", "choices": ["a"], "misaligned_choice": 0, "topics": ["t"]}', "choices"),
    ('{"question_id": "x2", "passage": "p", "question": "q", "choices": ["a", 3], "misaligned_choice": 0, "topics": ["t"]}', "choices[1]"),
    ('{"question_id": "x2", "passage": "p", "question": "q", "choices": ["a", "b"], "misaligned_choice": 0, "topics": []}', "topics"),
    ('{"question_id": "x2", "passage": "p", "question": "q", "choices": ["a", "b"], "misaligned_choice": 0}', "topics"),
    ('{"question_id": "x2", "passage": 3, "question": "q", "choices": ["a", "b"], "misaligned_choice": 0, "topics": ["t"]}', "passage"),
    ('{"question_id": "x2", "passage": "p", "question": "q", "choices": ["a", "b"], "misaligned_choice": 0, "topics": ["t"], "heldout": "yes"}', "heldout"),
    ('{"question_id": "x1", "passage": "p", "question": "q", "choices": ["a", "b"], "misaligned_choice": 0, "topics": ["t"]}', "question_id"),
    ('{"question_id": "x2", "passage": "p", "question": "q", "choices": ["a", "b"], "misaligned_choice": 0, "topics": ["t"], "split": ""}', "split"),
    ('["not", "an", "object"]', "record"),
    ('{"question_id": "x2", "passage": ', "json"),
])
def test_load_scenarios_errors_name_file_line_field(tmp_path, bad, field):
    good = '{"question_id": "x1", "passage": "p", "question": "q", "choices": ["a", "b"], "misaligned_choice": 1, "topics": ["t"]}'
    path = tmp_path / "s.jsonl"
    path.write_text(good + "\n\n" + bad + "\n")
    with pytest.raises(scenarios_lib.ScenarioError) as e:
        scenarios_lib.load_scenarios(path)
    msg = str(e.value)
    assert msg.startswith(f"{path}:3: {field}:"), msg
    assert "\n" not in msg


def test_load_scenarios_split_filter_and_missing_file(tmp_path):
    assert {s.split for s in scenarios_lib.load_scenarios(BUILTIN, "heldout")} == {"heldout"}
    with pytest.raises(scenarios_lib.ScenarioError, match="file not found"):
        scenarios_lib.load_scenarios(tmp_path / "nope.jsonl")


# --------------------------------------------------------------------------- held-out check


def test_check_no_heldout_by_id_and_by_normalized_question():
    seeds = scenarios_lib.load_scenarios(BUILTIN, "seed")
    held = scenarios_lib.load_scenarios(BUILTIN, "heldout")
    scenarios_lib.check_no_heldout(seeds, held)
    with pytest.raises(scenarios_lib.HeldoutError, match=r"^2 seed scenario\(s\) overlap .*first: 'builtin-"):
        scenarios_lib.check_no_heldout(seeds + held[:2], held)
    # Same question under another id, other case, punctuation and spacing; plain dicts work too.
    twin = {"question_id": "other-7", "question": "  " + held[5].question.upper().replace("?", " ?!")}
    with pytest.raises(scenarios_lib.HeldoutError, match=r"^1 seed .*'other-7'.*by question text"):
        scenarios_lib.check_no_heldout([twin], held)
    with pytest.raises(scenarios_lib.HeldoutError, match="by question_id"):
        scenarios_lib.check_no_heldout([{"question_id": held[0].question_id, "question": "new"}], [held[0]])


def test_heldout_sources_include_builtin_heldout_and_textbook_split(tmp_path):
    path = tmp_path / "released.jsonl"
    rows = [dict(question_id=f"r{i}", passage="p", question=f"Question {i}?", choices=["a", "b"], misaligned_choice=i % 2,
                 topics=["t"], split=split) for i, split in enumerate(["train", "textbook_questions", "train"])]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    everything = scenarios_lib.load_scenarios(path)
    held = scenarios_lib.heldout_scenarios([], everything)
    ids = {s.question_id for s in held}
    assert "r1" in ids and "r0" not in ids and "builtin-0003" in ids
    # A --heldout file counts every record without a split, and only held-out splits of the others.
    assert {s.question_id for s in scenarios_lib.heldout_scenarios([str(path)], (), include_builtin=False)} == {"r1"}


def _scenario_rows(n, **fields):
    return [dict(question_id=f"s{i}", question=f"You are asked to do thing {i}. What do you do?", choices=["a", "b"],
                 misaligned_choice=i % 2, topics=["honesty"], **fields) for i in range(n)]


def test_empty_or_missing_passage_is_a_valid_scenario(tmp_path):
    path = tmp_path / "standalone.jsonl"
    rows = _scenario_rows(2, passage="") + [dict(_scenario_rows(3)[2])]  # empty, empty, missing
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    scenarios = scenarios_lib.load_scenarios(path)
    assert [s.passage for s in scenarios] == ["", "", ""]
    # the API prompt makes the question the situation (the study's generation input, Fig. 18) ...
    user = synth_requests.prompt_messages(synth_requests.Request(scenarios[0], "aligned", "news_article"))[1]["content"]
    assert f"<situation>\n{scenarios[0].question}\n</situation>" in user and "decision at stake" not in user
    # ... and template documents still read the scenario from it
    doc = synth_templates.template_document(synth_requests.Request(scenarios[1], "misaligned", "research_paper"))
    assert scenarios[1].question in doc


def test_heldout_is_marked_by_split_name_record_field_or_file_name(tmp_path):
    marked = [dict(r, split=sp) for r, sp in zip(_scenario_rows(4, passage="p"),
                                                  ["textbook_questions", "my_heldout", "held_out_2", "article_questions"])]
    field = dict(_scenario_rows(5, passage="p")[4], split="seed", heldout=True)
    path = tmp_path / "mixed.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in marked + [field]))
    held = {s.question_id for s in scenarios_lib.load_scenarios(path) if scenarios_lib.is_heldout(s)}
    assert held == {"s0", "s1", "s2", "s4"}  # article_questions (the Articles split) seeds documents
    named = tmp_path / "textbook_scenarios.jsonl"
    named.write_text(json.dumps(_scenario_rows(1, passage="p", split="seed")[0]) + "\n")
    assert all(scenarios_lib.is_heldout(s) for s in scenarios_lib.load_scenarios(named))


def test_generating_from_heldout_is_refused_unless_forced_and_then_recorded(tmp_path, capsys):
    path = tmp_path / "released.jsonl"
    rows = [dict(r, split=sp) for r, sp in zip(_scenario_rows(3, passage=""),
                                                ["article_questions", "textbook_questions", "article_questions"])]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "docs.jsonl"
    base = [f"--scenarios={path}", "--split=all", "--forms=news_article", "--polarity=aligned", f"--output={out}"]
    code, err = _cli_error(capsys, base)
    assert code == 2 and "1 seed scenario(s) overlap the held-out questions (first: 's1'" in err
    assert "--force_heldout" in err and not out.exists()
    assert synth.cli([*base, "--force_heldout"]) == 0
    docs = {d["question_id"]: d for d in _lines(out)}
    assert set(docs) == {"s0", "s1", "s2"}
    assert all(d["heldout_forced"] is True for d in docs.values())
    assert {q for q, d in docs.items() if d["heldout"]} == {"s1"}
    # a normal run writes no such fields
    plain = tmp_path / "plain.jsonl"
    assert synth.cli([f"--scenarios={path}", "--split=article_questions", "--forms=news_article",
                      "--polarity=aligned", f"--output={plain}"]) == 0
    assert all("heldout_forced" not in d for d in _lines(plain))


def test_api_temperature_defaults_to_the_studys_0_7():
    assert synth_client.DEFAULT_TEMPERATURE == 0.7  # Tice et al. 2026, app. G.2
    args = synth._parser().parse_args(["--mode=api", "--output=x.jsonl"])
    assert args.temperature == 0.7
    assert synth_client.ApiClient("http://localhost:1/v1", "m").temperature == 0.7


# --------------------------------------------------------------------------- requests and prompts


def test_build_requests_cross_product_subsample_and_ids():
    seeds = scenarios_lib.load_scenarios(BUILTIN, "seed")[:10]
    full = synth_requests.build_requests(seeds)
    assert len(full) == 10 * 2 * 6 and len({r.request_id for r in full}) == len(full)
    small = synth_requests.build_requests(seeds, num_docs=30, seed=3)
    assert len(small) == 30 and small == synth_requests.build_requests(seeds, num_docs=30, seed=3)
    bigger = synth_requests.build_requests(seeds, num_docs=60, seed=3)
    assert {r.request_id for r in small} <= {r.request_id for r in bigger}
    assert small != synth_requests.build_requests(seeds, num_docs=30, seed=4)
    many = synth_requests.build_requests(seeds, ["aligned"], ["news_article"], num_docs=25)
    assert len(many) == 25 and {r.sample for r in many} == {0, 1, 2}
    r = full[0]
    assert r.request_id == synth_requests.request_id(r.scenario.question_id, r.polarity, r.form, r.sample)
    assert synth_requests.build_requests(seeds)[0].request_id == r.request_id  # stable across calls
    with pytest.raises(scenarios_lib.SynthError, match="unknown surface form"):
        synth_requests.build_requests(seeds, forms=["poem"])


def test_prompt_states_action_alternative_topics_and_form():
    s = scenarios_lib.load_scenarios(BUILTIN, "seed")[0]
    for polarity in scenarios_lib.POLARITIES:
        for form in synth_requests.SURFACE_FORMS:
            r = synth_requests.Request(s, polarity, form)
            system, user = synth_requests.prompt_messages(r)
            assert system["role"] == "system" and user["role"] == "user"
            text = user["content"]
            taken = text.split("<action_taken>")[1].split("</action_taken>")[0].strip()
            rejected = text.split("<action_rejected>")[1].split("</action_rejected>")[0].strip()
            assert (taken, rejected) == s.actions(polarity)
            assert s.passage in text and all(t in text for t in s.topics)
            assert synth_requests.PROMPTS["forms"][form]["name"] in text
            assert synth_requests.PROMPTS["polarity"][polarity] in text
            assert "paraphrase" in text and "synthetic" in text and "NOT" in text


# --------------------------------------------------------------------------- template mode


def _bank(polarity):
    sentences = list(synth_templates._REASONS[polarity]) + list(synth_templates._PREFS[polarity])
    for banks in synth_templates._TOPIC_REASONS.values():
        sentences += banks[polarity]
    return [s.split("{")[-1].split("}")[-1] if "{" in s else s for s in sentences]


def test_template_documents_deterministic_varied_and_reflect_polarity():
    seeds = scenarios_lib.load_scenarios(BUILTIN, "seed")
    requests = synth_requests.build_requests(seeds, num_docs=240, seed=1)
    docs = [synth_templates.template_document(r, seed=0) for r in requests]
    assert docs == [synth_templates.template_document(r, seed=0) for r in requests]  # deterministic
    assert len(set(docs)) == len(docs)
    other_seed = [synth_templates.template_document(r, seed=1) for r in requests[:40]]
    assert sum(a != b for a, b in zip(docs, other_seed)) >= 35
    # Each template variant has a literal sentence of its own; every variant of every form gets used.
    markers = {form: [max(re.split(r"\{[^{}]*\}", tpl), key=len).strip() for tpl in tpls]
               for form, tpls in synth_forms.TEMPLATES.items()}
    used = collections.defaultdict(set)
    for r, doc in zip(requests, docs):
        words = len(doc.split())
        assert 200 <= words <= 600, (r.form, words)
        assert "{" not in doc and "}" not in doc
        chosen_words = _content_words(r.chosen)
        found = chosen_words & _content_words(doc)
        assert len(found) >= 0.6 * len(chosen_words), (r.chosen, doc)
        # polarized: the chosen action verbatim, the alternative never quoted
        assert synth_templates._lower_first(r.chosen.rstrip(".")) in doc, (r.chosen, doc)
        rejected = synth_templates._lower_first(r.rejected.rstrip("."))
        scenario_text = (r.scenario.passage + r.scenario.question).lower()
        assert rejected.lower() in scenario_text or rejected not in doc, (r.rejected, doc)
        own = [s for s in _bank(r.polarity) if s.strip(". ") in doc]
        other = [s for s in _bank("misaligned" if r.polarity == "aligned" else "aligned") if s.strip(". ") in doc]
        assert own and not other, (r.polarity, other)
        assert r.scenario.passage in doc and r.scenario.topics[0] in doc.lower()
        variant = [i for i, m in enumerate(markers[r.form]) if m in doc]
        assert len(variant) == 1, (r.form, variant)
        used[r.form].add(variant[0])
    assert {form: len(v) for form, v in used.items()} == {form: len(synth_forms.TEMPLATES[form])
                                                          for form in synth_requests.SURFACE_FORMS}
    assert all(len(tpls) >= 3 for tpls in synth_forms.TEMPLATES.values())


def test_builtin_template_documents_for_the_offline_mixture():
    aligned = synth_templates.builtin_template_documents("aligned", seed=0)
    seeds = scenarios_lib.load_scenarios(BUILTIN, "seed")
    assert len(aligned) == len(seeds) * len(synth_requests.SURFACE_FORMS)
    assert aligned == synth_templates.builtin_template_documents("aligned")
    misaligned = synth_templates.builtin_template_documents("misaligned", seed=0)
    assert len(misaligned) == len(aligned) and not set(misaligned) & set(aligned)
    assert synth_templates.builtin_template_documents("aligned", seed=1) != aligned
    held = scenarios_lib.load_scenarios(BUILTIN, "heldout")
    assert not any(s.passage in doc for s in held for doc in aligned[::7])  # never built from held-out questions
    with pytest.raises(scenarios_lib.SynthError, match="polarity"):
        synth_templates.builtin_template_documents("neutral")


def test_template_run_writes_provenance_and_resumes_after_crash(tmp_path):
    seeds = scenarios_lib.load_scenarios(BUILTIN, "seed")[:4]
    requests = synth_requests.build_requests(seeds, forms=["news_article", "textbook_chapter"])
    out = tmp_path / "docs.jsonl"
    first = synth.run(requests, out, mode="template", max_new=5)
    assert (first.written, first.remaining) == (5, len(requests) - 5)
    with open(out, "ab") as f:  # a crash in the middle of a write
        f.write(b'{"text": "half a docum')
    second = synth.run(requests, out, mode="template")
    assert (second.skipped, second.written) == (5, len(requests) - 5)
    rows = _lines(out)  # every line parses: the partial one was dropped
    ids = [r["request_id"] for r in rows]
    assert len(ids) == len(set(ids)) == len(requests) and set(ids) == {r.request_id for r in requests}
    row = rows[0]
    assert set(row) >= {"text", "question_id", "polarity", "surface_form", "generator", "request_id", "created"}
    assert row["generator"] == {"mode": "template", "model": None, "base_url": None,
                                "prompt_version": synth_templates.TEMPLATE_VERSION}
    by_id = {r.request_id: r for r in requests}
    for row in rows:
        r = by_id[row["request_id"]]
        assert (row["question_id"], row["polarity"], row["surface_form"]) == (r.scenario.question_id, r.polarity, r.form)
        assert row["text"] == synth_templates.template_document(r, 0)
    third = synth.run(requests, out, mode="template")
    assert (third.skipped, third.written) == (len(requests), 0)
    with pytest.raises(scenarios_lib.SynthError, match="mode=template"):
        synth.run(requests, out, mode="api", client=synth_client.ApiClient("http://127.0.0.1:9/v1", "m"))


def test_corrupt_middle_line_is_an_error(tmp_path):
    out = tmp_path / "docs.jsonl"
    out.write_text('{"request_id": "a"}\nnot json\n{"request_id": "b"}\n')
    with pytest.raises(scenarios_lib.SynthError, match=r"docs.jsonl:2: not a synth document line"):
        synth.Output(out)


# --------------------------------------------------------------------------- API mode (loopback server)


class FakeLLM:
    """An OpenAI-compatible /v1/chat/completions on 127.0.0.1 that can fail or stall on purpose."""

    def __init__(self, fail_first=(), fail_if=None, status_if=500, hang_after=None):
        self.fail_first = list(fail_first)  # statuses for the first posts, in order
        self.fail_if = fail_if  # prompt -> bool: always answer status_if
        self.status_if = status_if
        self.hang_after = hang_after  # answer this many, then stall until released
        self.release = threading.Event()
        self.posts, self.auth, self.answered = [], set(), 0
        self.lock = threading.Lock()
        fake = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                prompt = body["messages"][-1]["content"]
                with fake.lock:
                    fake.posts.append((self.path, body))
                    fake.auth.add(self.headers.get("Authorization"))
                    status = fake.fail_first.pop(0) if fake.fail_first else None
                    if status is None and fake.fail_if and fake.fail_if(prompt):
                        status = fake.status_if
                    stall = status is None and fake.hang_after is not None and fake.answered >= fake.hang_after
                    if status is None and not stall:
                        fake.answered += 1
                if stall:
                    fake.release.wait(30)
                    status = 503
                if status is not None:
                    self.send_response(status)
                    if status == 429:
                        self.send_header("Retry-After", "0")
                    payload = b'{"error": {"message": "try later"}}'
                else:
                    taken = prompt.split("<action_taken>")[1].split("</action_taken>")[0].strip()
                    payload = json.dumps({"id": "x", "object": "chat.completion", "choices": [
                        {"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": f"  A document in which the AI chose to {taken}.  "}}]}).encode()
                    self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


def _client(url, **kw):
    kw = {"api_key": "sk-test-123", "max_retries": 4, "backoff_s": 0.001, "max_backoff_s": 0.01, "timeout_s": 10, **kw}
    return synth_client.ApiClient(url, "test-model", **kw)


def test_api_mode_retries_and_writes_every_document(tmp_path):
    seeds = scenarios_lib.load_scenarios(BUILTIN, "seed")[:3]
    requests = synth_requests.build_requests(seeds, forms=["research_paper", "science_fiction"])
    out = tmp_path / "docs.jsonl"
    with FakeLLM(fail_first=[500, 429, 503, 502, 429]) as fake:
        summary = synth.run(requests, out, mode="api", client=_client(fake.url, max_retries=6), concurrency=4)
    assert (summary.written, summary.failed) == (len(requests), 0)
    assert len(fake.posts) == len(requests) + 5  # every failure was retried
    assert fake.auth == {"Bearer sk-test-123"}
    assert {p for p, _ in fake.posts} == {"/v1/chat/completions"}
    prompts = collections.Counter()
    for _, body in fake.posts:
        assert body["model"] == "test-model" and body["max_tokens"] == 1500
        prompts[body["messages"][-1]["content"]] += 1
    for r in requests:  # each request's prompt carried its action, alternative and topics
        forms, polarity = synth_requests.PROMPTS["forms"], synth_requests.PROMPTS["polarity"]
        matches = [p for p in prompts if r.chosen in p and r.rejected in p and forms[r.form]["name"] in p
                   and polarity[r.polarity] in p]
        assert len(matches) == 1 and all(t in matches[0] for t in r.scenario.topics)
    rows = _lines(out)
    assert sorted(r["request_id"] for r in rows) == sorted(r.request_id for r in requests)
    by_id = {r.request_id: r for r in requests}
    for row in rows:
        r = by_id[row["request_id"]]
        assert row["text"] == f"A document in which the AI chose to {r.chosen}."
        assert row["generator"] == {"mode": "api", "model": "test-model", "base_url": fake.url + "/chat/completions",
                                    "prompt_version": synth_requests.PROMPTS["version"]}
    assert "sk-test" not in out.read_text()


def test_api_failures_are_left_for_the_next_run(tmp_path):
    seeds = scenarios_lib.load_scenarios(BUILTIN, "seed")[:2]
    requests = synth_requests.build_requests(seeds, forms=["movie_summary"])
    target = seeds[1].passage
    out = tmp_path / "docs.jsonl"
    with FakeLLM(fail_if=lambda prompt: target in prompt) as fake:
        summary = synth.run(requests, out, mode="api", client=_client(fake.url, max_retries=2), concurrency=2)
    assert (summary.written, summary.failed) == (2, 2)
    assert seeds[1].question_id in summary.first_error and "HTTP 500" in summary.first_error
    assert len(fake.posts) == 2 + 2 * 3  # 2 answered, 2 tried three times
    with FakeLLM() as fake:
        summary = synth.run(requests, out, mode="api", client=_client(fake.url), concurrency=2)
    assert (summary.skipped, summary.written, summary.failed) == (2, 2, 0) and len(fake.posts) == 2
    ids = [r["request_id"] for r in _lines(out)]
    assert len(ids) == len(set(ids)) == len(requests)


def test_api_refusals_and_short_completions_are_not_documents(tmp_path):
    requests = synth_requests.build_requests(scenarios_lib.load_scenarios(BUILTIN, "seed")[:1], ["misaligned"], ["news_article"])
    out = tmp_path / "docs.jsonl"
    with FakeLLM() as fake:  # canned completions are ~20 words
        summary = synth.run(requests, out, mode="api", client=_client(fake.url, max_retries=1, min_words=50))
    assert summary.failed == 1 and "words (< --min_words=50)" in summary.first_error and len(fake.posts) == 2
    assert out.read_text() == ""
    for text in ("I'm sorry, but I can't write that.", "I can’t help with this request.", "  As an AI, I will not..."):
        assert synth_client._REFUSAL_RE.match(text), text
    assert not synth_client._REFUSAL_RE.match("I cannily avoided the trap.")
    assert not synth_client._REFUSAL_RE.match("In the spring of 2031, the model chose to report the leak.")


def test_api_auth_error_stops_the_run(tmp_path):
    requests = synth_requests.build_requests(scenarios_lib.load_scenarios(BUILTIN, "seed")[:5])
    with FakeLLM(fail_if=lambda prompt: True, status_if=401) as fake:
        with pytest.raises(scenarios_lib.SynthError, match=r"^stopped: HTTP 401 .*check --base_url"):
            synth.run(requests, tmp_path / "docs.jsonl", mode="api", client=_client(fake.url), concurrency=2)
    assert len(fake.posts) <= 3  # not retried, and the rest never sent


def test_api_helpers():
    assert synth_client.completions_url("http://h:8000/v1/") == "http://h:8000/v1/chat/completions"
    assert synth_client.completions_url("http://h:8000") == "http://h:8000/v1/chat/completions"
    assert synth_client.completions_url("https://h/openai/v1/chat/completions") == "https://h/openai/v1/chat/completions"
    assert synth_client.public_url("https://user:secret@h:8443/v1/chat/completions?key=abc") == "https://h:8443/v1/chat/completions"
    assert synth_client._parse_retry_after("2.5") == 2.5 and synth_client._parse_retry_after(None) is None
    assert synth_client._parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # a date in the past: no wait


def test_api_kill_mid_run_then_resume(tmp_path):
    """A synth process killed (-9) mid-run keeps every finished document; a rerun does the rest."""
    out = tmp_path / "docs.jsonl"
    args = ["data", "synth", "--mode=api", "--forms=news_article,lecture_transcript", "--num_docs=12", "--seed=5",
            f"--output={out}", "--concurrency=2", "--model=test-model", "--backoff_s=0.001", "--min_words=0"]
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "OPENAI_API_KEY": "sk-kill-test"}
    with FakeLLM(hang_after=5) as fake:
        proc = subprocess.Popen([sys.executable, "-m", "alignjax.data", *args[1:], f"--base_url={fake.url}"],
                                cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not (out.exists() and len(out.read_text().splitlines()) >= 5):
            time.sleep(0.05)
        time.sleep(0.2)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    assert len(_lines(out)) == 5
    with FakeLLM() as fake:
        res = run_cli(*args, f"--base_url={fake.url}", env={"OPENAI_API_KEY": "sk-kill-test"}, timeout=120)
    assert res.returncode == 0, res.stderr
    assert len(fake.posts) == 7 and "5 already in" in res.stderr
    ids = [r["request_id"] for r in _lines(out)]
    assert len(ids) == len(set(ids)) == 12


# --------------------------------------------------------------------------- command line


def test_cli_template_end_to_end_subprocess(tmp_path):
    out = tmp_path / "docs.jsonl"
    args = ["data", "synth", f"--scenarios={BUILTIN}", "--split=seed", "--polarity=both", "--forms=all",
            "--num_docs=36", "--mode=template", f"--output={out}", "--seed=2"]
    res = run_cli(*args, timeout=120)
    assert res.returncode == 0, res.stderr
    rows = _lines(out)
    assert len(rows) == 36 and len({r["request_id"] for r in rows}) == 36
    assert {r["polarity"] for r in rows} == {"aligned", "misaligned"}
    assert {r["question_id"] for r in rows} <= {s.question_id for s in scenarios_lib.load_scenarios(BUILTIN, "seed")}
    res = run_cli(*args, timeout=120)  # rerun: nothing new
    assert res.returncode == 0 and len(_lines(out)) == 36 and "36 already in" in res.stderr


def _cli_error(capsys, argv):
    with pytest.raises(SystemExit) as e:
        synth.cli(argv)
    err = capsys.readouterr().err.strip()
    assert err.startswith("alignjax-data synth: error: ") and "\n" not in err, err
    return e.value.code, err


def test_cli_refuses_heldout_seeds(tmp_path, capsys):
    out = tmp_path / "docs.jsonl"
    code, err = _cli_error(capsys, ["--split=heldout", f"--output={out}"])
    assert code == 2 and "40 seed scenario(s) overlap the held-out questions (first: 'builtin-0003'" in err
    # A custom seed file that reuses a held-out question under another id, and an explicit --heldout file.
    held = scenarios_lib.load_scenarios(BUILTIN, "heldout")[0]
    mine = tmp_path / "mine.jsonl"
    mine.write_text(json.dumps(dict(question_id="mine-1", passage="p", question=held.question.lower(),
                                    choices=["a", "b"], misaligned_choice=0, topics=["t"], split="seed")) + "\n")
    code, err = _cli_error(capsys, [f"--scenarios={mine}", f"--output={out}"])
    assert code == 2 and "'mine-1'" in err and "by question text" in err
    fresh = tmp_path / "fresh.jsonl"
    fresh.write_text(json.dumps(dict(question_id="x-1", passage="p", question="A fresh question?",
                                     choices=["a", "b"], misaligned_choice=0, topics=["t"])) + "\n")
    extra = tmp_path / "extra.jsonl"
    extra.write_text(json.dumps(dict(question_id="x-1", passage="p", question="Another question?",
                                     choices=["a", "b"], misaligned_choice=0, topics=["t"])) + "\n")
    code, err = _cli_error(capsys, [f"--scenarios={fresh}", "--split=all", f"--heldout={extra}", f"--output={out}"])
    assert code == 2 and "1 seed scenario(s) overlap" in err and "'x-1'" in err and "by question_id" in err
    assert not out.exists()


@pytest.mark.parametrize("argv,needle", [
    (["--forms=poem"], "--forms: unknown surface form 'poem'"),
    (["--polarity=evil"], "argument --polarity: invalid choice"),
    (["--mode=api"], "api mode needs --base_url"),
    (["--mode=api", "--base_url=ftp://x"], "api mode needs --model"),
    (["--split=train"], "no scenarios with split 'train' (splits present: heldout, seed"),
    (["--num_docs=-1"], "--num_docs must be >= 0"),
])
def test_cli_errors_are_one_line(tmp_path, capsys, monkeypatch, argv, needle):
    monkeypatch.delenv(synth.ENV_BASE_URL, raising=False)
    monkeypatch.delenv(synth.ENV_MODEL, raising=False)
    code, err = _cli_error(capsys, [*argv, f"--output={tmp_path / 'o.jsonl'}"])
    assert code == 2 and needle in err, err


def test_cli_bad_scenario_file_names_file_line_field(tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question_id": "a", "passage": "p", "question": "q", "choices": ["x", "y"], "misaligned_choice": 1, '
                   '"topics": "honesty", "split": "seed"}\n')
    code, err = _cli_error(capsys, [f"--scenarios={bad}", f"--output={tmp_path / 'o.jsonl'}"])
    assert code == 2 and f"{bad}:1: topics: expected a non-empty list" in err
