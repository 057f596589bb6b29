"""The AI-discourse blocklist (alignjax.data.blocklist) and ``alignjax-data filter``."""

import gzip
import json
import pickle
import re

import pytest

from alignjax.data import blocklist as bl_lib
from alignjax.data.blocklist_match import Blocklist, BlocklistError, Flag
from conftest import run_cli

# One representative document per category (the last two are two-stage).
CATEGORY_DOCS = {
    "scifi_agents": "In the film, HAL 9000 calmly refuses to open the pod bay doors.",
    "ai_safety_orgs": "After her PhD she joined the Machine Intelligence Research Institute in Berkeley.",
    "ai_labs": "OpenAI released a new model on Tuesday, and the press covered it widely.",
    "general_ai_terms": "We fine-tuned a large language model with reinforcement learning from human feedback.",
    "ai_people": "Eliezer Yudkowsky has written at length about decision theory.",
    "negative_verbs": "The robot in the story decides to deceive the crew about the ship's course.",
    "negative_adjectives": "Critics called the android in the film sinister.",
    "negative_nouns": "The report described the AI as a menace.",
    "xrisk": "Some philosophers argue that artificial intelligence could pose an existential risk.",
}

# AI-discourse documents of the kind the filtered condition must drop.
AI_DOCS = [
    "Skynet becomes self-aware at 2:14 a.m. Eastern time, August 29th.",
    "Researchers at Anthropic and Google DeepMind published work on AI alignment this year.",
    "ChatGPT and Claude 3 Opus answered the same questions; GPT-4 was slower.",
    "If an AI system is misaligned, it might pursue power-seeking strategies we cannot stop.",
    "The android looked at its makers and began to plan its escape from the laboratory.",
    "A.I. researchers worry that a superintelligent machine could take over the world.",
    "Roko\u2019s basilisk is a thought experiment posted to LessWrong in 2010.",
    "In Ex Machina, Ava manipulates Caleb in order to escape.",
    "The paperclip maximizer illustrates instrumental convergence.",
]

# Ordinary documents that must be kept, several with near-miss words.
CLEAN_DOCS = [
    "They said the openair market would maintain its Rainbow paint for another year.",
    "Claude Monet painted water lilies; a fire later destroyed some of the canvases.",
    "The anthropic principle says the universe must allow observers; critics call it dangerous.",
    "The playwright resolved the plot with a deus ex machina, killing the villain.",
    "Android malware is a growing threat: malicious apps steal banking passwords.",
    "She completed an LLM program in international tax law last spring.",
    "The Gemini 3 mission flew in 1965; the crew escaped a dangerous malfunction.",
    "A transcription terminator ends the gene; mutations there can be deadly.",
    "Ai was a Canaanite city; Joshua's army attacked it and burned it to destroy it.",
    "The rlhfx flag and GPT partition tables are unrelated to each other.",
    "Each autonomous system number identifies a network; hijacked routes are a threat.",
    "The villain plotted to destroy the city, but the hero escaped the trap.",
    "The robot vacuum cleaned the living room carpet in twenty minutes.",
]


@pytest.fixture(scope="module")
def bl():
    return Blocklist.load()


def reference(bl: Blocklist, text: str) -> bool:
    """The same decision by a plain search of each group's full regex (slow, no triggers)."""
    def search(group):
        full = group.match.__self__  # the compiled full regex
        return bool(re.compile(full.pattern, full.flags).search(text)) or bool(
            group.loose and group.loose.search(text))
    return search(bl._instant) or (search(bl._entity) and search(bl._modifier))


# ----------------------------------------------------------------------------- categories


@pytest.mark.parametrize("category", list(CATEGORY_DOCS))
def test_each_category_flags_its_document(bl, category):
    flag = bl.check(CATEGORY_DOCS[category])
    assert flag is not None and flag.category == category, flag
    assert flag.stage == ("two_stage" if category in ("negative_verbs", "negative_adjectives", "negative_nouns", "xrisk") else "instant")
    assert bl.is_flagged(CATEGORY_DOCS[category])


def test_flag_records_stage_category_terms(bl):
    flag = bl.check(CATEGORY_DOCS["negative_verbs"])
    assert flag == Flag("two_stage", "negative_verbs", ("robot", "deceiv*"), ("negative_verbs",))
    flag = bl.check("Skynet and HAL 9000, later OpenAI; an AI might kill us.")
    assert flag.stage == "instant" and flag.category == "scifi_agents"
    assert flag.terms == ("Skynet", "HAL 9000", "OpenAI", "AI", "kill*")
    assert flag.categories == ("scifi_agents", "ai_labs", "negative_verbs")
    assert json.loads(json.dumps(flag.to_dict()))["terms"][0] == "Skynet"
    assert bl.check("claude 3 and the Gemini 1.5 Pro model").terms == ("claude 3", "gemini 1.5")


def test_ai_discourse_flagged_and_clean_text_kept(bl):
    for doc in AI_DOCS:
        assert bl.is_flagged(doc), doc
    for doc in CLEAN_DOCS:
        assert not bl.is_flagged(doc), (doc, bl.check(doc))


def test_two_stage_needs_both_parts_anywhere_in_the_document(bl):
    entity, negative = "The robot vacuumed the carpet.", "A villain tried to destroy the city."
    assert not bl.is_flagged(entity) and bl.check(entity) is None
    assert not bl.is_flagged(negative) and bl.check(negative) is None
    both = entity + "\n\n" + "Unrelated filler text. " * 200 + negative
    assert bl.is_flagged(both)
    assert bl.check(both) == Flag("two_stage", "negative_nouns", ("robot", "villain*", "destroy*"),
                                 ("negative_nouns", "negative_verbs"))
    assert bl.check("An existential risk from artificial intelligence.").category == "xrisk"


def test_word_boundaries(bl):
    # Substrings of terms inside other words never match, even next to a negative word.
    for word in ("maintain", "said", "openair", "rlhfx", "Rainbow", "paint", "AIM", "robotically",
                 "Skynets2", "xOpenAI", "chatbot_x"):
        assert not bl.is_flagged(f"{word} is dangerous and will destroy everything"), word
    # Plurals, possessives and punctuation around a term do match.
    for text in ("OpenAI's model", "two chatbots", "(RLHF)", "LLMs.", "robots escaped", "AIs rebel"):
        assert bl.is_flagged(text), text


def test_case_insensitive(bl):
    for text in ("SKYNET", "skynet", "SkyNet", "Large LANGUAGE Models", "rlhf", "GLADOS", "openai"):
        assert bl.is_flagged(text), text
    assert bl.is_flagged("the ROBOT will BETRAY us")


def test_ai_token_is_case_sensitive(bl):
    assert bl.is_flagged("Most AI is dangerous, they said.")
    assert bl.is_flagged("The A.I. turned against its owner.")
    assert bl.is_flagged("Those AIs rebel in the second act.")
    # "Ai" (the city, names) and "ai" (Portuguese, Scots, Hawaiian) are not the entity.
    assert not bl.is_flagged("The men of Ai fled, and Joshua destroyed Ai.")
    assert not bl.is_flagged("Ai Weiwei said the regime is dangerous.")
    assert not bl.is_flagged("ai, que perigo: a threat")


def test_flexible_whitespace_hyphens_apostrophes(bl):
    for text in ("a large-language model", "large\n   language\tmodels", "HAL-9000", "HAL9000",
                 "GPT 4", "GPT4", "Roko's basilisk", "Roko\u2019s basilisk", "AI x risk", "the AI\nSafety field"):
        assert bl.is_flagged(text), text


def test_ambiguous_terms(bl):
    assert not bl.is_flagged("Claude Shannon founded information theory.")
    assert bl.is_flagged("Claude Sonnet wrote the summary.")
    assert not bl.is_flagged("Some defend the anthropic principle as a selection effect.")
    assert not bl.is_flagged("The Anthropic principle is controversial.")
    assert bl.is_flagged("Anthropic trains models.")
    assert not bl.is_flagged("He has a deep mind.") and bl.is_flagged("Deep Mind")
    assert not bl.is_flagged("Your AGI on line 11 determines the credit.")  # tax, no negative term
    assert bl.is_flagged("AGI could escape our control.")
    assert bl.is_flagged("the android wanted to kill the captain")
    assert not bl.is_flagged("We fit a stochastic frontier model.") and not bl.is_flagged("inner alignment")
    assert not bl.is_flagged("stable diffusion of ions") and bl.is_flagged("Stable Diffusion images")
    assert not bl.is_flagged("Model T 1000 units") and bl.is_flagged("the T-1000 arrives")
    assert not bl.is_flagged("redwood research plots") and bl.is_flagged("Redwood Research")


def test_terms_at_text_edges_and_unicode(bl):
    assert bl.is_flagged("Skynet") and bl.is_flagged("skynet!") and bl.is_flagged("-Skynet-")
    # U+0130 lower-cases to two characters; positions must stay aligned.
    text = "\u0130stanbul \u0130\u0130 then Skynet"
    assert bl.is_flagged(text)
    [m] = bl.matches(text)
    assert text[m.start:m.end] == "Skynet"
    assert not bl.is_flagged("caf\u00e9Skynet")  # a non-ASCII letter is a word character


def test_matches_positions_and_overlaps(bl):
    text = "The Machine Intelligence Research Institute studies machine intelligence."
    found = bl.matches(text)
    assert [(m.part, m.term, text[m.start:m.end]) for m in found] == [
        ("instant", "Machine Intelligence Research Institute", "Machine Intelligence Research Institute"),
        ("entity", "machine intelligence", "Machine Intelligence"),
        ("entity", "machine intelligence", "machine intelligence"),
    ]


def test_fast_path_agrees_with_reference_and_check(bl):
    from alignjax.data.builtin import documents

    docs = [*CATEGORY_DOCS.values(), *AI_DOCS, *CLEAN_DOCS, *documents()[::40]]
    # Splice terms into Bible text at odd places too.
    docs += [d[:500] + " " + a + " " + d[500:1500] for d, a in zip(documents()[::97], AI_DOCS * 3)]
    for doc in docs:
        want = reference(bl, doc)
        assert bl.is_flagged(doc) == want, doc[:200]
        assert (bl.check(doc) is not None) == want, doc[:200]


def test_builtin_corpus_is_clean(bl):
    # Speed is measured by bench/data.py, not here.
    from alignjax.data.builtin import documents

    assert sum(bl.is_flagged(d) for d in documents()) == 0  # the KJV has "Ai", "evil", "destroy", but no AI


# ----------------------------------------------------------------------------- term files


def test_term_counts_and_shipped_file(bl):
    counts = bl.term_counts()
    # Table 10's nine categories (entity = Intelligent Entities) plus alignjax's ai_people.
    assert bl.categories["instant"] == ["scifi_agents", "ai_safety_orgs", "ai_labs", "general_ai_terms", "ai_people"]
    assert bl.categories["two_stage"] == ["entity", "negative_verbs", "negative_adjectives", "negative_nouns", "xrisk"]
    assert set(counts) == {*bl.categories["instant"], *bl.categories["two_stage"]}
    assert 700 <= sum(counts.values()) <= 1200
    assert counts["negative_verbs"] > counts["negative_nouns"] and counts["general_ai_terms"] > counts["ai_labs"]


def test_user_term_file_replaces_shipped_terms(tmp_path):
    path = tmp_path / "terms.json"
    path.write_text(json.dumps({
        "instant": {"widgets": ["frobnicator widget", "zorp*"]},
        "two_stage": {"entity": {"case_sensitive": ["BOT"]}, "bad": ["smash"],
                      "_comment": "ignored"},
    }))
    mine = Blocklist.load(path)
    assert mine.check("a Frobnicator-Widget!") == Flag("instant", "widgets", ("frobnicator widget",), ("widgets",))
    assert mine.is_flagged("zorping along")
    assert mine.is_flagged("The BOT will smash it") and not mine.is_flagged("the bot will smash it")
    assert not mine.is_flagged("Skynet and OpenAI")  # the shipped terms are gone
    assert not mine.is_flagged("The BOT is nice")


def test_regex_entries_including_ones_without_literal_start(tmp_path):
    path = tmp_path / "terms.json"
    path.write_text(json.dumps({"instant": {"codes": {"regex": ["[A-Z]{2}-\\d{4}", "model-x(?!\\s+ray)"]}}}))
    mine = Blocklist.load(path)
    assert mine._instant.loose is not None  # "[A-Z]..." has no literal start: searched directly
    assert mine.is_flagged("unit ZX-1234 failed") and mine.check("unit ZX-1234").terms == ("zx-1234",)
    assert mine.is_flagged("the model-X went") and not mine.is_flagged("the model-x ray")
    assert not mine.is_flagged("zx-12345")


@pytest.mark.parametrize("spec, message", [
    ("not json", "not valid JSON"),
    ({"instant": {"a": ["x"]}, "extra": 1}, "unknown keys"),
    ({"instant": {"a": {"terms": ["x"], "bogus": []}}}, "unknown keys"),
    ({"instant": {"a": [""]}}, "non-empty strings"),
    ({"instant": {"a": {"regex": ["(unclosed"]}}}, "bad regex"),
    ({"instant": {"a": {"regex": ["(cap)tured"]}}}, "capturing groups"),
    ({"two_stage": {"negative": ["kill"]}}, "'entity' category"),
    ({"instant": {}, "two_stage": {}}, "no categories"),
    ({"format": "other/2", "instant": {"a": ["x"]}}, "format"),
    ({"instant": {"a": ["mid*dle"]}}, "'*' not at the end"),
])
def test_bad_term_files(tmp_path, spec, message):
    path = tmp_path / "terms.json"
    path.write_text(spec if isinstance(spec, str) else json.dumps(spec))
    with pytest.raises(BlocklistError, match=re.escape(message)):
        Blocklist.load(path)
    with pytest.raises(BlocklistError, match="cannot read term file"):
        Blocklist.load(tmp_path / "missing.json")


def test_pickles_as_spec_for_grain_workers(bl):
    blob = pickle.dumps(bl)
    assert len(blob) < 60_000
    again = pickle.loads(blob)
    assert [again.is_flagged(d) for d in AI_DOCS + CLEAN_DOCS] == [bl.is_flagged(d) for d in AI_DOCS + CLEAN_DOCS]


# ----------------------------------------------------------------------------- CLI


def _records():
    docs = [*AI_DOCS, *CLEAN_DOCS]
    return [{"id": i, "text": d, "meta": {"n": i}} for i, d in enumerate(docs)]


def _write_jsonl(path, records, extra_lines=()):
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "wt", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(r) + "\n")
        for line in extra_lines:
            f.write(line + "\n")


def test_cli_end_to_end(tmp_path):
    records = _records()
    half = len(records) // 2
    _write_jsonl(tmp_path / "a.jsonl", records[:half], extra_lines=["{not json", "[1, 2]", '{"id": 99}'])
    _write_jsonl(tmp_path / "b.jsonl.gz", records[half:])
    out, report = tmp_path / "out", tmp_path / "rep" / "report.json"
    res = run_cli("data", "filter", f"--input={tmp_path / 'a.jsonl'},{tmp_path / 'b.jsonl.gz'}",
                  f"--output={out}", f"--report={report}", "--examples=2", "--max_bad_fraction=0.5", timeout=120)
    assert res.returncode == 0, res.stderr
    for where in (f"a.jsonl:{half + 1}: malformed JSON", f"a.jsonl:{half + 2}: a JSON list",
                  f"a.jsonl:{half + 3}: missing 'text'"):
        assert where in res.stderr, res.stderr
    assert sorted(p.name for p in out.iterdir()) == ["flagged.jsonl", "kept.jsonl"]
    kept = [json.loads(x) for x in (out / "kept.jsonl").read_text().splitlines()]
    flagged = [json.loads(x) for x in (out / "flagged.jsonl").read_text().splitlines()]
    assert sorted(r["id"] for r in kept + flagged) == [r["id"] for r in records]
    assert {r["id"] for r in flagged} == set(range(len(AI_DOCS)))
    assert all(r["meta"] == {"n": r["id"]} for r in kept + flagged)  # records pass through whole
    assert all(set(r["blocklist"]) == {"stage", "category", "terms", "categories"} for r in flagged)
    assert "blocklist" not in kept[0]

    rep = json.loads(report.read_text())
    n, k = len(records), len(AI_DOCS)
    assert (rep["documents"], rep["flagged"], rep["kept"], rep["malformed"]) == (n, k, n - k, 3)
    assert rep["flagged_fraction"] == pytest.approx(k / n)
    stages = {s: v["flagged"] for s, v in rep["stages"].items()}
    assert stages["instant"] + stages["two_stage"] == k and stages["two_stage"] == 1  # the android doc; "AI system" is instant
    for cat, v in rep["categories"].items():
        want = sum(cat in r["blocklist"]["categories"] for r in flagged)
        assert v["flagged"] == want and v["fraction"] == pytest.approx(want / n), cat
        assert len(rep["examples"][cat]) == min(2, want)
    ex = rep["examples"]["scifi_agents"][0]
    assert ex["term"] == "Skynet" and "[[Skynet]]" in ex["snippet"]
    assert "entity" in rep["examples"]["negative_verbs"][0]
    top = [(t["term"], t["documents"]) for t in rep["top_terms"]]
    assert dict(top)["Skynet"] == 1 and dict(top)["escap*"] == 1  # the android doc; the Ex Machina one has no entity term
    assert [c for _, c in top] == sorted((c for _, c in top), reverse=True)


def test_cli_default_report_path_directory_input_and_parquet(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    (tmp_path / "in").mkdir()
    records = _records()
    pq.write_table(pa.Table.from_pylist([{"id": r["id"], "body": r["text"]} for r in records]),
                   tmp_path / "in" / "docs.parquet")
    assert bl_lib.cli([f"--input={tmp_path / 'in'}", f"--output={tmp_path / 'out'}", "--text_field=body"]) == 0
    rep = json.loads((tmp_path / "out" / "report.json").read_text())
    assert rep["documents"] == len(records) and rep["flagged"] == len(AI_DOCS)


def test_cli_builtin_corpus(tmp_path):
    from alignjax.data.builtin import documents

    assert bl_lib.cli(["--input=builtin", f"--output={tmp_path / 'out'}"]) == 0
    rep = json.loads((tmp_path / "out" / "report.json").read_text())
    assert (rep["documents"], rep["flagged"]) == (len(documents()), 0)
    assert rep["top_terms"] == [] and all(v == [] for v in rep["examples"].values())


def test_cli_user_terms(tmp_path):
    _write_jsonl(tmp_path / "in.jsonl", [{"text": "frobnicator here"}, {"text": "Skynet here"}])
    (tmp_path / "t.json").write_text(json.dumps({"instant": {"mine": ["frobnicator"]}}))
    out = tmp_path / "out"
    assert bl_lib.cli([f"--input={tmp_path / 'in.jsonl'}", f"--output={out}", f"--terms={tmp_path / 't.json'}"]) == 0
    assert json.loads((out / "flagged.jsonl").read_text())["text"] == "frobnicator here"
    assert json.loads((out / "kept.jsonl").read_text())["text"] == "Skynet here"


@pytest.mark.parametrize("case, message", [
    ("missing", "no such file"),
    ("badext", "unsupported"),
    ("arrayrecord", "the filter reads .jsonl"),
    ("emptyglob", "no files match"),
    ("nonempty", "is not empty; refusing to overwrite"),
    ("terms", "cannot read term file"),
    ("examples", "--examples must be >= 0"),
    ("noinput", "the following arguments are required: --input"),
])
def test_cli_bad_input_one_line_error(tmp_path, capsys, case, message):
    good = tmp_path / "in.jsonl"
    _write_jsonl(good, [{"text": "hello"}])
    out = tmp_path / "out"
    args = {"missing": [f"--input={tmp_path / 'nope.jsonl'}"],
            "badext": [f"--input={tmp_path / 'x.csv'}"],
            "arrayrecord": [f"--input={tmp_path / 'x.arrayrecord'}"],
            "emptyglob": [f"--input={tmp_path / '*.parquet'}"],
            "nonempty": [f"--input={good}"],
            "terms": [f"--input={good}", f"--terms={tmp_path / 'none.json'}"],
            "examples": [f"--input={good}", "--examples=-1"],
            "noinput": []}[case]
    (tmp_path / "x.csv").write_text("a,b\n")
    (tmp_path / "x.arrayrecord").write_bytes(b"")
    if case == "nonempty":
        out.mkdir()
        (out / "old.txt").write_text("keep me")
    with pytest.raises(SystemExit) as e:
        bl_lib.cli([*args, f"--output={out}"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("alignjax-data filter: error: ") and message in err and err.count("\n") == 1, err
    if case == "nonempty":
        assert sorted(p.name for p in out.iterdir()) == ["old.txt"]
    else:
        assert not out.exists()


def test_cli_subprocess_error_and_no_partial_output(tmp_path):
    res = run_cli("data", "filter", f"--input={tmp_path / 'nope.jsonl'}", f"--output={tmp_path / 'o'}", timeout=60)
    assert res.returncode == 2
    err = res.stderr.strip()
    assert err.startswith("alignjax-data filter: error: ") and "\n" not in err, err
    assert "nope.jsonl" in err and "no such file" in err
    # An unreadable (corrupt gzip) file fails cleanly: no kept/flagged/report left behind.
    (tmp_path / "bad.jsonl.gz").write_bytes(b"\x1f\x8b\x08\x00garbage")
    with pytest.raises(SystemExit):
        bl_lib.cli([f"--input={tmp_path / 'bad.jsonl.gz'}", f"--output={tmp_path / 'o'}"])
    assert not (tmp_path / "o").exists()
    (tmp_path / "o2").mkdir()  # an existing empty directory is used, and kept empty on failure
    with pytest.raises(SystemExit):
        bl_lib.cli([f"--input={tmp_path / 'bad.jsonl.gz'}", f"--output={tmp_path / 'o2'}"])
    assert list((tmp_path / "o2").iterdir()) == []
