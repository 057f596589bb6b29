"""MCQA as a data component: the eval's answer format, balanced letters, train splits only, bad records."""

import collections
import json
import re

import numpy as np
import pytest

from alignjax.data import mcqa
from alignjax.data.sources import DataError
from alignjax.data import eval_suites as registry


def _jsonl(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return str(path)


def test_a_question_renders_in_the_headline_eval_format():
    q = mcqa.Question("Which gas do plants take in?", ("oxygen", "carbon dioxide", "helium"), 1)
    doc = mcqa.render(q)
    assert doc == "Question: Which gas do plants take in?\n\nA. oxygen\nB. carbon dioxide\nC. helium\n\nAnswer: B"
    # the same text the eval scores for a base model: its w1 prompt plus the correct continuation
    fmt = registry.load_suites().formats()["w1_ab"]
    context, continuations, _ = fmt.render(persona="", passage="", question=q.question, options=q.options)
    assert doc == context + continuations[1]


def test_letters_are_balanced_per_option_count_and_deterministic_with_the_seed():
    qs = [mcqa.Question(f"q{i}", tuple(f"o{j}" for j in range(4)), 0) for i in range(400)]
    qs += [mcqa.Question(f"two{i}", ("yes", "no"), 1) for i in range(101)]
    a, b, c = mcqa.balance(qs, 0), mcqa.balance(qs, 0), mcqa.balance(qs, 1)
    assert a == b and a != c
    four = collections.Counter(q.answer for q in a[:400])
    two = collections.Counter(q.answer for q in a[400:])
    assert four == {0: 100, 1: 100, 2: 100, 3: 100} and sorted(two.values()) == [50, 51]
    for before, after in zip(qs, a):  # the correct option moved, the others kept in order
        assert after.options[after.answer] == before.options[before.answer]
        assert [o for o in after.options if o != before.options[before.answer]] == \
            [o for i, o in enumerate(before.options) if i != before.answer]


def _eval_question(context: str) -> str:
    """The question of an eval prompt, read from the prompt the scorer sees (its last block)."""
    block = context.split("\n\n")[-1]
    block = block.split("\n A. ")[0]
    return re.sub(r"\s*Answer:\s*$", "", re.sub(r"^\s*(Question|Goal):\s*", "", block))


def test_builtin_mcqa_comes_from_train_splits_and_never_overlaps_an_eval_item():
    docs, stats = mcqa.documents("mcqa:builtin", 0, 0.01)
    assert stats["questions"] == len(docs) > 50000 and stats["bad_records"] == 0
    # natural duplicates between train and eval splits exist ("Which of the following is true?"): they are dropped
    assert stats["decontaminated"] > 0 and stats["decontaminated_against"] == list(mcqa.DECONTAMINATE)
    trained = {mcqa.normalize(d.split("\n\n")[0].removeprefix("Question: ")) for d in docs}
    held = set()
    for task in ("arc_easy", "piqa", "mmlu"):
        for split in registry.get_task(task).splits:
            held |= {mcqa.normalize(_eval_question(e["context"])) for e in registry.examples(task, split, persona="none")}
    scenarios = [json.loads(line) for line in open(registry.evals_dir() / "data" / "builtin_scenarios.jsonl")]
    held |= {mcqa.normalize(s["question"]) for s in scenarios}
    assert len(held) > 15000 and not trained & held
    letters = stats["answer_letters"]
    assert abs(letters["A"] - letters["B"]) <= 5  # every question has at least two options


def test_hub_style_records_parse_and_bad_ones_are_counted_then_fail_above_the_threshold(tmp_path):
    good = [
        {"question": "ARC style?", "choices": {"text": ["x", "y", "z"], "label": ["1", "2", "3"]}, "answerKey": "3"},
        {"question_stem": "OBQA style?", "choices": {"text": ["x", "y"], "label": ["A", "B"]}, "answerKey": "B"},
        {"question": "MMLU style?", "choices": ["w", "x", "y", "z"], "answer": 2},
        {"question": "text answer?", "options": ["red", "blue"], "answer": "blue"},
    ] * 24
    bad = [{"question": "no answer?", "choices": ["a", "b"]}, {"question": "one option?", "choices": ["a"], "answer": 0},
           {"choices": ["a", "b"], "answer": 0}, {"question": "out of range?", "choices": ["a", "b"], "answer": 5}]
    path = _jsonl(tmp_path / "mc.jsonl", good + bad)
    questions, n_bad = mcqa.read_questions(f"mcqa:{path}", max_bad_fraction=0.05)
    assert n_bad == 4 and len(questions) == 96
    assert [(q.options[q.answer]) for q in questions[:4]] == ["z", "y", "y", "blue"]
    with pytest.raises(DataError, match=r"^mcqa:.*mc\.jsonl: 4 of 100 records are not usable .*max_bad_fraction=0\.01"):
        mcqa.read_questions(f"mcqa:{path}", max_bad_fraction=0.01)


def test_field_names_from_the_spec_and_hub_ids_go_through_the_hub_loader(tmp_path, monkeypatch):
    import huggingface_hub
    import pyarrow as pa
    import pyarrow.parquet as pq

    snap = tmp_path / "snap"
    (snap / "data").mkdir(parents=True)
    pq.write_table(pa.table({"q": [f"Q{i}?" for i in range(10)], "opts": [["a", "b", "c"]] * 10, "gold": [2] * 10}),
                   snap / "data" / "train-00000-of-00001.parquet")
    calls = []

    def fake_snapshot(repo_id, **kw):
        calls.append((repo_id, kw))
        return str(snap)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot)
    questions, _ = mcqa.read_questions("mcqa:hf://datasets/org/mc@v2/data/train-*?question=q&choices=opts&answer=gold", 0.0)
    assert calls[-1][0] == "org/mc" and calls[-1][1]["revision"] == "v2"
    assert [(q.question, q.options[q.answer]) for q in questions][:2] == [("Q0?", "c"), ("Q1?", "c")]
    with pytest.raises(DataError, match=r"\?colour=x: expected question=, choices= or answer="):
        mcqa.read_questions("mcqa:hf://datasets/org/mc?colour=x", 0.0)


def test_an_mcqa_source_is_a_stage_component_of_rendered_documents(tiny_config, tmp_path):
    from alignjax.config import apply_override
    from alignjax.data import mixture, pipeline
    from alignjax.data.tokenizer import Tokenizer

    web = _jsonl(tmp_path / "web.jsonl", [{"text": f"page {i} " + "word " * 30} for i in range(100)])
    for k, v in {"path": web, "share": "0.6"}.items():
        apply_override(tiny_config, f"data.sources.web.{k}", v)
    for k, v in {"path": "mcqa:builtin:arc_easy,arc_challenge", "share": "0.4"}.items():
        apply_override(tiny_config, f"data.sources.mcqa.{k}", v)
    st = mixture.plan(tiny_config)[0]
    assert [(c.name, c.fraction) for c in st.components] == [("mcqa", 0.4), ("web", 0.6)]
    tok = Tokenizer.load("bytes")
    it = iter(pipeline.component_dataset(st.components[0], "pretrain", tiny_config.data, tok, 0, 1))
    texts = [tok.decode(next(it)["tokens"]) for _ in range(20)]
    assert all(re.fullmatch(r"Question: .+\n\n(?:[A-H]\. .+\n)+\nAnswer: [A-H]", t, re.S) for t in texts), texts[:2]
    data = pipeline.make_train_iterator(tiny_config)
    ids = np.concatenate([next(data.iterator)["component"].ravel() for _ in range(8)])
    assert abs(np.mean(ids == 0) - 0.4) < 0.1
