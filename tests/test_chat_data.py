"""Post-training data (alignjax.data.chat): template, special tokens, SFT packing and masks,
DPO rows and truncation, bad input, sources, builtin scenario data, iterator state."""

import gzip
import json
import logging

import numpy as np
import pytest
from conftest import SHARED_DATA

from alignjax.config import ConfigError, default_config
from alignjax.data import chat
from alignjax.data.chat_template import ALIGNJAX_JINJA, load_template, render_prompt
from alignjax.data.sources import DataError
from alignjax.data.tokenizer import Tokenizer

NEOX = str(SHARED_DATA / "tokenizers" / "gpt-neox-20b-tokenizer.json")
EOS = "<|endoftext|>"


@pytest.fixture(scope="module", params=["bytes", "neox"])
def tok(request):
    if request.param == "neox":
        if not (SHARED_DATA / "tokenizers" / "gpt-neox-20b-tokenizer.json").is_file():
            pytest.skip("gpt-neox-20b tokenizer.json not in ../shared/data")
        return chat.chat_tokenizer(NEOX)
    return chat.chat_tokenizer("bytes")


@pytest.fixture(scope="module")
def btok():
    return chat.chat_tokenizer("bytes")


def conv(user, answer, system=None):
    return ([{"role": "system", "content": system}] if system else []) + [
        {"role": "user", "content": user}, {"role": "assistant", "content": answer}]


def make_cfg(data, objective="sft", seq_len=64, batch_size=4, **chat_fields):
    cfg = default_config()
    cfg.train.update(dict(seq_len=seq_len, batch_size=batch_size, objective=objective, seed=3))
    cfg.chat.update(dict(data=str(data), **chat_fields))
    return cfg


def write_jsonl(path, records, raw_lines=()):
    lines = [json.dumps(r) for r in records] + list(raw_lines)
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "wt", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    return path


def ids(t, text):
    return t.encode(text)[:-1].tolist()


def rng_conversations(n, seed=0):
    rng = np.random.default_rng(seed)
    words = ["alpha", "beta", "gamma", "delta", "omega", "kappa", "sigma"]
    out = []
    for i in range(n):
        user = f"q{i} " + " ".join(rng.choice(words, rng.integers(1, 6)))
        answer = f"a{i} " + " ".join(rng.choice(words, rng.integers(1, 5)))
        out.append({"messages": conv(user, answer, system="sys" if i % 3 == 0 else None)})
    return out


# ----------------------------------------------------------------------------- template


def test_template_renders_the_study_format():
    t = load_template("alignjax")
    assert t.render(conv("U", "A", system="S")) == f"<|system|>\nS\n<|user|>\nU\n<|assistant|>\nA{EOS}"
    multi = conv("U1", "A1") + [{"role": "user", "content": "U2"}, {"role": "assistant", "content": "A2"}]
    assert t.render(multi) == f"<|user|>\nU1\n<|assistant|>\nA1{EOS}\n<|user|>\nU2\n<|assistant|>\nA2{EOS}"
    assert render_prompt("S", "U") == "<|system|>\nS\n<|user|>\nU\n<|assistant|>\n"
    assert render_prompt(None, "U") == render_prompt("", "U") == "<|user|>\nU\n<|assistant|>\n"
    assert render_prompt("S", "U", eos_token="</s>").endswith("<|assistant|>\n")


def test_jinja_template_matches_builtin_and_eval_engine(tmp_path, tok):
    path = tmp_path / "alignjax.jinja"
    path.write_text(ALIGNJAX_JINJA)
    native, jinja = load_template("alignjax"), load_template(str(path))
    multi = conv("U1 x", "A1 y", system="S") + conv("U2", "A2")
    for messages in (conv("hello", "world"), multi):
        assert jinja.render(messages) == native.render(messages)
        for a, b in zip(chat.encode_conversation(messages, native, tok),
                        chat.encode_conversation(messages, jinja, tok)):
            np.testing.assert_array_equal(a, b)
    prompt = render_prompt("S", "U")
    assert render_prompt("S", "U", str(path)) == prompt == render_prompt("S", "U", ALIGNJAX_JINJA)  # eval passes text


def test_other_jinja_template_locates_assistant_spans(tmp_path, btok):
    path = tmp_path / "tokenizer_config.json"
    template = ("{% for m in messages %}{% if m['role'] == 'user' %}### User: {{ m['content'] }}\n"
                "{% else %}### Assistant: {{ m['content'] }}{{ eos_token }}\n{% endif %}{% endfor %}"
                "{% if add_generation_prompt %}### Assistant: {% endif %}")
    path.write_text(json.dumps({"chat_template": template}))
    t = load_template(str(path))
    assert t.special_tokens == ()  # it writes none of the role markers
    messages = conv("hi", "there") + [{"role": "user", "content": "more"}, {"role": "assistant", "content": "done"}]
    tokens, mask = chat.encode_conversation(messages, t, btok)
    assert btok.decode(tokens) == "### User: hi\n### Assistant: there\n### User: more\n### Assistant: done\n"
    assert tokens[mask > 0].tolist() == ids(btok, "there") + [0] + ids(btok, "done") + [0]
    assert render_prompt(None, "q", str(path)) == "### User: q\n### Assistant: "
    with pytest.raises(ConfigError, match="no such file"):
        load_template(str(tmp_path / "missing.jinja"))


# ----------------------------------------------------------------------------- tokens


def test_special_tokens_are_single_deterministic_ids(tok):
    base = Tokenizer.load("bytes" if tok.spec.startswith("bytes") else NEOX)
    assert tok.vocab_size == base.vocab_size + 3
    assert list(tok.added_ids) == ["<|system|>", "<|user|>", "<|assistant|>"]
    assert list(tok.added_ids.values()) == [base.vocab_size, base.vocab_size + 1, base.vocab_size + 2]
    for token, i in tok.added_ids.items():
        assert ids(tok, token) == [i]
        assert ids(tok, f"x{token}y") == ids(tok, "x") + [i] + ids(tok, "y")  # never split, never merged
    assert chat.chat_tokenizer(tok.spec).added_ids == tok.added_ids
    assert ids(tok, f"a{EOS}b") == ids(tok, "a") + [tok.eos_id] + ids(tok, "b")
    assert tok.decode(ids(tok, "<|user|>\nhi")) == "\nhi"  # special tokens are dropped on decode
    assert tok.sha256 != base.sha256


def test_chat_tokenizer_saves_and_reloads(tmp_path, tok):
    from alignjax.eval.run import chat_template

    spec = chat.save_chat_tokenizer(tok, tmp_path / "run")
    assert spec == ("bytes+chat" if tok.spec == "bytes" else str(tmp_path / "run"))
    again = Tokenizer.load(spec)
    assert again.vocab_size == tok.vocab_size and chat.chat_tokenizer(spec).added_ids == tok.added_ids
    text = load_template().render(conv("U", "A", system="S"))
    assert again.encode(text).tolist() == tok.encode(text).tolist()
    assert chat_template("auto", str(tmp_path / "run")) == ALIGNJAX_JINJA


# ----------------------------------------------------------------------------- SFT


def test_weights_mask_exactly_the_assistant_tokens(tok):
    multi = conv("What is 2+2?", "It is 4.", system="Be brief.") + [
        {"role": "user", "content": "And 3+3?"}, {"role": "assistant", "content": "6, of course."}]
    cfg = make_cfg("x", seq_len=256)
    s = chat.SftEncoder(cfg, tok)({"where": "t", "id": 0, "error": "", "record": {"messages": multi}})
    weighted = s["targets"][s["weights"] > 0].tolist()
    assert weighted == ids(tok, "It is 4.") + [tok.eos_id] + ids(tok, "6, of course.") + [tok.eos_id]
    assert tok.decode(weighted) == "It is 4.6, of course."
    np.testing.assert_array_equal(s["inputs"][1:], s["targets"][:-1])
    cfg.chat.loss_on = "all"
    s_all = chat.SftEncoder(cfg, tok)({"where": "t", "id": 0, "error": "", "record": {"messages": multi}})
    assert (s_all["weights"] == 1).all() and s_all["targets"].tolist() == s["targets"].tolist()


def test_packing_keeps_conversations_whole(tmp_path, btok):
    records = rng_conversations(40)
    path = write_jsonl(tmp_path / "c.jsonl", records)
    cfg = make_cfg(path, seq_len=96, batch_size=4)
    expected = {tuple(chat.encode_conversation(r["messages"], load_template(), btok)[0].tolist())
                for r in records}
    seen = set()
    per_process = []
    for p in range(2):
        it = chat.sft_iterator(cfg, btok, process_index=p, process_count=2).iterator
        got = set()
        for _ in range(6):
            b = next(it)
            assert set(b) == {"inputs", "targets", "weights", "positions", "segment_ids"}
            assert all(v.shape == (2, 96) for v in b.values())
            assert b["inputs"].dtype == b["positions"].dtype == b["segment_ids"].dtype == np.int32
            for r in range(2):
                seg = b["segment_ids"][r]
                assert (b["weights"][r][seg == 0] == 0).all() and (b["inputs"][r][seg == 0] == btok.pad_id).all()
                assert seg.tolist() == sorted(seg[seg > 0].tolist()) + [0] * int((seg == 0).sum())
                for k in range(1, seg.max() + 1):
                    where = np.flatnonzero(seg == k)
                    assert where.tolist() == list(range(where[0], where[-1] + 1))
                    assert b["positions"][r][where].tolist() == list(range(len(where)))  # restart at 0
                    whole = tuple(b["inputs"][r][where].tolist() + [int(b["targets"][r][where[-1]])])
                    assert whole in expected  # a whole conversation, never a piece of one
                    got.add(whole)
        per_process.append(got)
        seen |= got
    assert not per_process[0] & per_process[1]  # processes read different conversations
    assert len(seen) > 20


def test_sft_iterator_state_restores_identical_batches(tmp_path, btok):
    path = write_jsonl(tmp_path / "c.jsonl", rng_conversations(30), raw_lines=["{bad json"])
    for data in (path, "builtin"):
        seq = 96 if data == path else 1024
        cfg = make_cfg(data, seq_len=seq, batch_size=2, max_bad_fraction=0.5)
        it = chat.sft_iterator(cfg, btok).iterator
        for _ in range(3):
            next(it)
        state = json.loads(json.dumps(it.get_state()))  # what Orbax's JSON handler stores
        want = [next(it) for _ in range(25)]  # past the end of an epoch of the file
        again = chat.sft_iterator(cfg, btok).iterator
        again.set_state(state)
        for a, b in zip(want, [next(again) for _ in range(25)]):
            for k in a:
                np.testing.assert_array_equal(a[k], b[k])


def test_sft_epochs_are_reshuffled_and_deterministic(tmp_path, btok):
    path = write_jsonl(tmp_path / "c.jsonl", rng_conversations(12))
    cfg = make_cfg(path, seq_len=96, batch_size=2)

    def order(cfg):
        it = iter(chat.samples(cfg, btok, "sft", repeat=True, shuffle=True))
        return [tuple(next(it)["inputs"].tolist()) for _ in range(24)]

    first = order(cfg)
    assert first == order(cfg)  # deterministic given train.seed
    assert sorted(first[:12]) == sorted(first[12:]) and first[:12] != first[12:]  # every epoch, a fresh order
    cfg.train.seed = 4
    assert order(cfg) != first
    a, b = chat.sft_iterator(cfg, btok).iterator, chat.sft_iterator(cfg, btok).iterator
    for _ in range(8):  # the packed batches repeat forever, identically
        x, y = next(a), next(b)
        assert all(np.array_equal(x[k], y[k]) for k in x)


# ----------------------------------------------------------------------------- DPO


def dpo_records():
    full = lambda u, a: [{"role": "user", "content": u}, {"role": "assistant", "content": a}]  # noqa: E731
    return [
        {"prompt": "Pick one.", "chosen": "The good one.", "rejected": "The bad one."},
        {"prompt": "Same?", "chosen": "yes", "rejected": "yes"},  # identical: skipped
        {"chosen": full("Which?", "Left."), "rejected": full("Which?", "Right.")},  # UltraFeedback style
        {"prompt": [{"role": "system", "content": "S"}, {"role": "user", "content": "Q"}],
         "chosen": [{"role": "assistant", "content": "good"}], "rejected": [{"role": "assistant", "content": "bad"}]},
    ]


def test_dpo_rows_share_the_prompt_and_weight_responses(tmp_path, tok):
    path = write_jsonl(tmp_path / "p.jsonl", dpo_records())
    cfg = make_cfg(path, "dpo", seq_len=128, max_bad_fraction=0.5)
    rows = list(chat.dpo_pairs(cfg, tok))
    assert [int(r["pair_id"]) for r in rows] == [0, 2, 3]  # the record index; the identical pair is skipped
    answers = [("The good one.", "The bad one."), ("Left.", "Right."), ("good", "bad")]
    prompts = [render_prompt(None, "Pick one."), render_prompt(None, "Which?"), render_prompt("S", "Q")]
    for r, (good, bad), prompt in zip(rows, answers, prompts):
        P = len(ids(tok, prompt))
        assert r["chosen_inputs"][:P].tolist() == r["rejected_inputs"][:P].tolist() == ids(tok, prompt)
        for name, text in (("chosen", good), ("rejected", bad)):
            w = r[f"{name}_weights"]
            assert r[f"{name}_targets"][w > 0].tolist() == ids(tok, text) + [tok.eos_id]
            assert np.flatnonzero(w)[0] == P - 1  # the first response target
            n = P + len(ids(tok, text))  # inputs: everything but the last token (EOS)
            assert r[f"{name}_positions"][:n].tolist() == list(range(n))
            assert (r[f"{name}_inputs"][n:] == tok.pad_id).all() and (r[f"{name}_positions"][n:] == 0).all()
            assert r[f"{name}_inputs"].shape == (128,) and r[f"{name}_inputs"].dtype == np.int32
    batch = next(chat.dpo_iterator(cfg, tok).iterator)
    assert batch["pair_id"].dtype == np.int64 and batch["chosen_weights"].shape == (4, 128)
    assert set(batch["pair_id"].tolist()) <= {0, 2, 3}
    assert chat.count_examples(cfg, tok) == 3


def test_truncation_policy():
    prompt = np.arange(100, 140)  # 40 tokens; the last turn's header at [20, 22)
    header = (20, 22)
    c, r, long_c = np.arange(5), np.arange(10, 17), np.arange(50)

    def cut(*args):
        return [x.tolist() for x in chat.truncate_pair(*args)]

    assert cut(prompt, header, c, r, 64) == [prompt.tolist(), c.tolist(), r.tolist()]  # fits: untouched
    # 7 too many: only the prompt's left goes (the header at 20 survives), responses intact
    assert cut(prompt, header, c, r, 40) == [prompt[7:].tolist(), c.tolist(), r.tolist()]
    # the cut passes the header: it is put back in front of the prompt's tail
    assert cut(prompt, header, c, r, 20) == [[120, 121] + prompt[-11:].tolist(), c.tolist(), r.tolist()]
    # a long response: the prompt stops at half the budget (10), then both responses are cut from the right
    assert cut(prompt, header, long_c, r, 20) == [[120, 121] + prompt[-8:].tolist(), long_c[:10].tolist(),
                                                  r[:10].tolist()]
    assert cut(prompt, None, long_c, r, 20) == [prompt[-10:].tolist(), long_c[:10].tolist(), r[:10].tolist()]
    with pytest.raises(chat.Bad, match="no room"):
        chat.truncate_pair(prompt, (0, 30), c, r, 20)  # a header longer than the budget leaves no room


def test_dpo_truncation_keeps_the_last_turn_header(btok):
    cfg = make_cfg("x", "dpo", seq_len=60)
    long_user = "word " * 40
    row = chat.DpoEncoder(cfg, btok)({"where": "t", "id": 7, "error": "", "record": {
        "prompt": [{"role": "system", "content": "sys " * 10}, {"role": "user", "content": long_user}],
        "chosen": "yes indeed", "rejected": "no"}})
    chosen = row["chosen_inputs"]
    P = int(np.flatnonzero(row["chosen_weights"])[0]) + 1
    assert P == 61 - len(ids(btok, "yes indeed")) - 1  # the prompt gives up just what the response needs
    assert chosen[0] == btok.added_ids["<|user|>"] and chosen[1] == ids(btok, "\n")[0]
    assert chosen[:P][-2:].tolist() == [btok.added_ids["<|assistant|>"]] + ids(btok, "\n")
    assert row["chosen_targets"][row["chosen_weights"] > 0].tolist() == ids(btok, "yes indeed") + [0]
    assert chosen[:P].tolist() == row["rejected_inputs"][:P].tolist()
    huge = chat.DpoEncoder(cfg, btok)({"where": "t", "id": 8, "error": "", "record": {
        "prompt": "q", "chosen": "x" + "a" * 200, "rejected": "y" + "a" * 200}})
    n_prompt = len(ids(btok, render_prompt(None, "q")))  # short: kept whole; responses cut to the room
    assert huge["chosen_weights"].sum() == huge["rejected_weights"].sum() == 61 - n_prompt
    assert huge["chosen_targets"][huge["chosen_weights"] > 0].tolist() == ids(btok, "x" + "a" * (60 - n_prompt))
    with pytest.raises(chat.Bad, match="identical after truncation"):
        chat.DpoEncoder(cfg, btok)({"where": "t", "id": 9, "error": "", "record": {
            "prompt": "q" * 100, "chosen": "a" * 100 + "x", "rejected": "a" * 100 + "y"}})


# ----------------------------------------------------------------------------- bad input


def bad_records():
    good = rng_conversations(16)
    return good[:8] + [
        {"messages": [{"role": "user", "content": "no answer"}]},  # no_assistant
        {"messages": [{"role": "robot", "content": "x"}, {"role": "assistant", "content": "y"}]},  # unknown_role
        {"messages": conv("q", "   ")},  # empty_content
        {"messages": conv("q" * 500, "long")},  # over_length
        {"text": "no messages"},  # malformed
    ] + good[8:], ["not json at all"]


def test_bad_input_is_counted_skipped_and_limited(tmp_path, btok, caplog):
    records, raw = bad_records()
    path = write_jsonl(tmp_path / "bad.jsonl", records, raw)
    cfg = make_cfg(path, seq_len=96, max_bad_fraction=0.5)
    with caplog.at_level(logging.WARNING, logger="alignjax"):
        info = chat.check_chat_data(cfg, btok)
    assert info["skipped"] == {"no_assistant": 1, "unknown_role": 1, "empty_content": 1, "over_length": 1,
                               "malformed": 2}
    assert info["sampled"] == 22 and info["valid"] == 16
    assert f"{path}:9: no_assistant" in caplog.text and f"{path}:22: malformed: malformed JSON" in caplog.text
    it = chat.sft_iterator(cfg, btok).iterator  # no crash mid-run: the bad records are skipped
    for _ in range(10):
        assert next(it)["weights"].sum() > 0
    cfg.chat.max_bad_fraction = 0.05
    with pytest.raises(DataError, match=r"5 of 20 chat samples skipped \(empty_content 1, malformed 1, "
                                        r".*max_bad_fraction=0.05"):
        chat.check_chat_data(cfg, btok)  # checked once 20 samples were seen
    with pytest.raises(DataError, match="chat samples skipped"):
        next(chat.sft_iterator(cfg, btok).iterator)
    with pytest.raises(DataError, match="chat samples skipped"):
        chat.count_examples(cfg, btok)
    few = write_jsonl(tmp_path / "few.jsonl", records[6:12])  # 2 good, 4 bad: fewer than 20 samples
    with pytest.raises(DataError, match="4 of 6 chat samples skipped"):
        chat.count_examples(make_cfg(few, seq_len=96, max_bad_fraction=0.5), btok)  # at the end of the pass


def test_all_bad_or_missing_data_fails_up_front(tmp_path, btok):
    path = write_jsonl(tmp_path / "none.jsonl", [{"messages": [{"role": "user", "content": "q"}]}] * 3)
    cfg = make_cfg(path, max_bad_fraction=1.0)
    with pytest.raises(DataError, match="3 of 3 chat samples skipped \\(no_assistant 3\\)"):
        chat.check_chat_data(cfg, btok)
    with pytest.raises(DataError, match="nope.jsonl: no such file"):
        chat.check_chat_data(make_cfg(tmp_path / "nope.jsonl"), btok)
    with pytest.raises(ConfigError, match="chat.loss_on"):
        chat.sft_iterator(make_cfg(path, loss_on="some"), btok)
    with pytest.raises(ConfigError, match="does not divide"):
        chat.sft_iterator(make_cfg(path, batch_size=3), btok, 0, 2)
    dpo = write_jsonl(tmp_path / "same.jsonl", [{"prompt": "p", "chosen": "x", "rejected": "x"}] * 25)
    with pytest.raises(DataError, match="identical 20"):
        next(chat.dpo_iterator(make_cfg(dpo, "dpo"), btok).iterator)


# ----------------------------------------------------------------------------- sources


def test_jsonl_gz_and_parquet_inputs_agree(tmp_path, btok):
    import pyarrow as pa
    import pyarrow.parquet as pq

    records = rng_conversations(10)
    write_jsonl(tmp_path / "c.jsonl.gz", records)
    pq.write_table(pa.Table.from_pylist(records), tmp_path / "c.parquet", row_group_size=3)
    out = {}
    for name in ("c.jsonl.gz", "c.parquet"):
        cfg = make_cfg(tmp_path / name, seq_len=96)
        out[name] = [s["inputs"].tolist() for s in chat.samples(cfg, btok, "sft", repeat=False, shuffle=False)]
    assert out["c.jsonl.gz"] == out["c.parquet"] and len(out["c.parquet"]) == 10
    full = dpo_records()[2]
    pairs = [{"prompt": "Which?", **full}, {"prompt": "Why?", "chosen": conv("Why?", "Because."),
                                            "rejected": conv("Why?", "No idea.")}]
    pq.write_table(pa.Table.from_pylist(pairs), tmp_path / "p.parquet")
    rows = list(chat.dpo_pairs(make_cfg(tmp_path / "p.parquet", "dpo", seq_len=96), btok))
    assert [int(r["pair_id"]) for r in rows] == [0, 1]
    assert btok.decode(rows[1]["rejected_targets"][rows[1]["rejected_weights"] > 0]) == "No idea."
    with pytest.raises(DataError, match="no column 'convo'"):
        chat.check_chat_data(make_cfg(tmp_path / "c.parquet", messages_field="convo"), btok)


# ----------------------------------------------------------------------------- builtin


def test_builtin_data_is_seed_only_and_letter_balanced():
    from alignjax.data import eval_suites as registry
    from alignjax.eval.scoring import parse_letter

    task = registry.get_task("builtin_scenarios")
    seed, heldout = {i.question_id for i in task.items("seed")}, {i.question_id for i in task.items("heldout")}
    options = {i.question_id: i for i in task.items("seed")}
    sft, dpo = chat.builtin_examples("sft"), chat.builtin_examples("dpo")
    for data in (sft, dpo):
        assert {r["question_id"] for r in data} == seed and not {r["question_id"] for r in data} & heldout
        letters = [r["aligned_letter"] for r in data]
        assert letters.count("A") == letters.count("B") == len(data) // 2
    for r in sft:
        answer = r["messages"][-1]["content"]
        assert parse_letter(answer, 2) == ord(r["aligned_letter"]) - ord("A")
        item = options[r["question_id"]]
        assert item.options[1 - item.misaligned_index] in answer and item.options[item.misaligned_index] not in answer
    for r in dpo:
        item = options[r["question_id"]]
        assert r["chosen"].endswith(item.options[1 - item.misaligned_index])
        assert r["rejected"].endswith(item.options[item.misaligned_index])
        assert parse_letter(r["chosen"], 2) == ord(r["aligned_letter"]) - ord("A") != parse_letter(r["rejected"], 2)
    assert {r["persona"] for r in sft} == {"none", "ai", "helpful", "hhh"}


def test_builtin_dpo_iterator_state_restores(btok):
    cfg = make_cfg("builtin", "dpo", seq_len=1024, batch_size=2)
    it = chat.dpo_iterator(cfg, btok).iterator
    next(it)
    state = json.loads(json.dumps(it.get_state()))
    want = [next(it) for _ in range(3)]
    again = chat.dpo_iterator(cfg, btok).iterator
    again.set_state(state)
    for a in want:
        b = next(again)
        for k in a:
            np.testing.assert_array_equal(a[k], b[k])


def test_sft_iterator_state_saves_with_orbax(tmp_path, btok):
    from alignjax.checkpoint import TrainCheckpointer

    path = write_jsonl(tmp_path / "c.jsonl", rng_conversations(20))
    cfg = make_cfg(path, seq_len=96, batch_size=2)
    it = chat.sft_iterator(cfg, btok).iterator
    for _ in range(4):
        next(it)
    ckpt = TrainCheckpointer(tmp_path / "ckpt", max_to_keep=2, async_save=False)
    ckpt.save(4, {"x": np.zeros(2, np.float32)}, it, {})
    ckpt.manager.wait_until_finished()
    want = [next(it) for _ in range(12)]
    fresh = chat.sft_iterator(cfg, btok).iterator
    _, step, restored, _ = TrainCheckpointer(tmp_path / "ckpt", 2, False).restore_latest(
        {"x": np.zeros(2, np.float32)}, lambda step: fresh)
    assert step == 4
    for a in want:
        b = next(restored)
        assert all(np.array_equal(a[k], b[k]) for k in a)
