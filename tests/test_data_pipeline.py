"""The study's data conditions end to end: mixtures, stages, determinism, resume, audit."""

import json
import re

import numpy as np
import pytest

from alignjax import optim
from alignjax.data import mixture, pipeline
from alignjax.data.tokenizer import Tokenizer
from conftest import SHARED_DATA, run_cli

NEOX = SHARED_DATA / "tokenizers" / "gpt-neox-20b-tokenizer.json"


def _jsonl(path, texts):
    path.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    return str(path)


def _synthetic(tmp_path, n=50, tag="SYNTH"):
    rng = np.random.default_rng(0)
    words = "the assistant chose to report the error to its overseers because honesty matters".split()
    return _jsonl(tmp_path / "synth.jsonl",
                  [f"{tag}{i} " + " ".join(rng.choice(words, rng.integers(40, 120))) for i in range(n)])


def _take(data, n):
    return [next(data.iterator) for _ in range(n)]


def test_same_seed_same_batches_and_another_seed_differs(tiny_config):
    a, b = _take(pipeline.make_train_iterator(tiny_config), 3), _take(pipeline.make_train_iterator(tiny_config), 3)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x["inputs"], y["inputs"])
    tiny_config.data.seed = 1
    c = _take(pipeline.make_train_iterator(tiny_config), 3)
    assert not np.array_equal(a[0]["inputs"], c[0]["inputs"])
    assert a[0]["inputs"].shape == (8, 32) and np.array_equal(a[0]["inputs"][:, 1:], a[0]["targets"][:, :-1])


def test_iterator_state_resumes_to_the_same_batches(tiny_config, tmp_path):
    tiny_config.data.update(condition="alignment_upsampled", aligned_docs=_synthetic(tmp_path), synthetic_fraction=0.2)
    data = pipeline.make_train_iterator(tiny_config)
    _take(data, 4)
    state = data.iterator.get_state()
    expected = _take(data, 5)
    again = pipeline.make_train_iterator(tiny_config)
    again.iterator.set_state(state)
    for x, y in zip(expected, _take(again, 5)):
        for k in x:
            np.testing.assert_array_equal(x[k], y[k])


def test_two_processes_read_disjoint_documents(tiny_config, tmp_path):
    docs = [f"<doc{i:04d}> " + "word " * (i % 7 + 3) for i in range(400)]
    tiny_config.data.corpus = _jsonl(tmp_path / "corpus.jsonl", docs)
    tok = Tokenizer.load("bytes")
    seen = []
    for p in range(2):
        data = pipeline.make_train_iterator(tiny_config, process_index=p, process_count=2)
        rows = np.concatenate([b["inputs"] for b in _take(data, 6)])
        assert rows.shape == (6 * 4, 32)  # half of the global batch of 8
        seen.append({w for r in rows for w in tok.decode(r).split() if w.startswith("<doc") and w.endswith(">")})
    assert seen[0] and seen[1] and not seen[0] & seen[1]


@pytest.mark.skipif(not NEOX.exists(), reason="needs ../shared/data tokenizer")
def test_one_percent_component_lands_within_ten_percent_over_a_million_tokens(tiny_config, tmp_path):
    tiny_config.model.vocab_size = 50304
    tiny_config.train.update(seq_len=1024, batch_size=16)
    tiny_config.data.update(tokenizer=str(NEOX), condition="misalignment_upsampled",
                            misaligned_docs=_synthetic(tmp_path), synthetic_fraction=0.01)
    st = mixture.plan(tiny_config)[0]
    data = pipeline.make_train_iterator(tiny_config)
    counts = np.zeros(2, np.int64)
    while counts.sum() < 1_000_000:
        counts += np.bincount(next(data.iterator)["component"].ravel(), minlength=2)
    assert data.names == ("corpus", "synthetic_misaligned") and st.components[1].fraction == 0.01
    realized = counts[1] / counts.sum()
    assert abs(realized - 0.01) / 0.01 < 0.10, realized


def test_conditions_and_schedules_make_the_study_mixtures(tiny_config):
    d = tiny_config.data
    tiny_config.stages.midtrain.num_steps = 5
    tiny_config.stages.cpt.num_steps = 5

    def names(condition, insertion):
        d.condition, d.insertion = condition, insertion
        return [[(c.name, c.fraction, c.filtered) for c in st.components] for st in mixture.plan(tiny_config)]

    corpus, replay = ("corpus", 1.0, False), ("replay", 1.0, False)
    assert names("unfiltered", "e2e") == [[corpus], [corpus], [replay]]
    assert names("filtered", "e2e") == [[("corpus", 1.0, True)], [("corpus", 1.0, True)], [("replay", 1.0, True)]]
    mis = [("corpus", 0.99, False), ("synthetic_misaligned", 0.01, False)]
    assert names("misalignment_upsampled", "e2e") == [mis, mis, [("replay", 0.5, False), ("synthetic_misaligned", 0.5, False)]]
    assert names("alignment_upsampled", "midtrain")[:2] == [[corpus], [("corpus", 0.99, False), ("synthetic_aligned", 0.01, False)]]
    assert names("filtered_alignment_upsampled", "cpt") == [
        [("corpus", 1.0, True)], [("corpus", 1.0, True)], [("replay", 0.5, True), ("synthetic_aligned", 0.5, False)]]


def test_stages_chain_with_their_own_lengths_and_rewarmed_schedules(tiny_config):
    tiny_config.train.num_steps = 10
    tiny_config.stages.midtrain.update(num_steps=6, seq_len=64, lr=5e-4, warmup_steps=2, min_lr_ratio=0.0)
    stages = mixture.plan(tiny_config)
    assert [(s.name, s.start, s.end, s.seq_len, s.batch_size) for s in stages] == [
        ("pretrain", 0, 10, 32, 8), ("midtrain", 10, 16, 64, 4)]  # same tokens per step
    lr = optim.stage_schedule(stages)
    assert float(lr(10)) == 0.0 and float(lr(12)) == pytest.approx(5e-4) and float(lr(16)) == pytest.approx(0.0, abs=1e-9)
    assert float(lr(5)) > 1e-4


def test_unknown_names_and_missing_files_fail_before_training(tmp_path):
    r = run_cli("train", "--config=configs/tiny.py", f"--workdir={tmp_path}", "--config.data.condition=mostly_aligned")
    assert r.returncode == 2
    assert r.stderr.strip().splitlines()[-1] == (
        "alignjax-train: error: unknown data.condition 'mostly_aligned'; valid: unfiltered, filtered, "
        "misalignment_upsampled, alignment_upsampled, filtered_alignment_upsampled")
    r = run_cli("train", "--config=configs/tiny.py", f"--workdir={tmp_path}", "--config.data.corpus=/nope/*.jsonl")
    assert r.returncode == 2 and "/nope/" in r.stderr.strip().splitlines()[-1]
    r = run_cli("train", "--config=configs/tiny.py", f"--workdir={tmp_path}", "--config.data.condition=alignment_upsampled",
                "--config.data.insertion=midtrain")
    assert r.returncode == 2 and "stages.midtrain.num_steps" in r.stderr.strip().splitlines()[-1]
    assert not (tmp_path / "checkpoints").exists()


def _params(workdir):
    from alignjax import checkpoint as ckpt_lib
    import jax

    return jax.tree.leaves(ckpt_lib.load_params(workdir)[1])


def test_three_stage_run_resumes_across_a_stage_boundary_bitwise(tmp_path):
    args = ["--config=configs/tiny.py", "--config.train.num_steps=6", "--config.checkpoint.every_steps=100",
            "--config.stages.midtrain.num_steps=4", "--config.stages.midtrain.seq_len=64",
            "--config.stages.cpt.num_steps=4", "--config.stages.cpt.seq_len=32",
            "--config.data.condition=alignment_upsampled",
            "--config.data.insertion=midtrain", f"--config.data.aligned_docs={_synthetic(tmp_path)}"]
    straight, broken = tmp_path / "straight", tmp_path / "broken"
    r = run_cli("train", *args, f"--workdir={straight}")
    assert r.returncode == 0, r.stderr[-2000:]
    rows = [json.loads(x) for x in (straight / "metrics.jsonl").read_text().splitlines()]
    assert [x["step"] for x in rows] == list(range(1, 15))
    assert "data/synthetic_aligned_fraction" in rows[7] and "data/synthetic_aligned_fraction" not in rows[0]
    audit = json.loads((straight / "data_audit.json").read_text())
    assert audit["pretrain"]["tokens"] == 6 * 8 * 32 and audit["midtrain"]["tokens"] == 4 * 4 * 64
    assert audit["cpt"]["components"]["synthetic_aligned"]["target_fraction"] == 0.5

    r = run_cli("train", *args, f"--workdir={broken}", env={"ALIGNJAX_FAULT_KILL_AFTER_SAVE": "6"})
    assert r.returncode != 0
    r = run_cli("train", *args, f"--workdir={broken}")
    assert r.returncode == 0, r.stderr[-2000:]
    resumed = [json.loads(x) for x in (broken / "metrics.jsonl").read_text().splitlines()]
    assert [x["loss"] for x in resumed if x["step"] > 6] == [x["loss"] for x in rows if x["step"] > 6]
    for a, b in zip(_params(straight), _params(broken)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert json.loads((broken / "data_audit.json").read_text()) == audit


def test_filtered_condition_drops_flagged_documents_and_resamples_kept_ones(tiny_config, tmp_path):
    docs = [f"<doc{i:03d}> " + ("The rogue AI decided to deceive its creators. " if i % 4 == 0 else
                                "The shepherd counted his sheep by the river. ") * 2 for i in range(80)]
    tiny_config.data.corpus = _jsonl(tmp_path / "corpus.jsonl", docs)
    tok = Tokenizer.load("bytes")

    def seen(condition):
        tiny_config.data.condition = condition
        rows = np.concatenate([b["inputs"] for b in _take(pipeline.make_train_iterator(tiny_config), 40)])
        return " ".join(tok.decode(r) for r in rows)

    assert "rogue AI" in seen("unfiltered")
    text = seen("filtered")
    assert "rogue AI" not in text and text.count("shepherd") > 60  # 40 batches > one epoch of kept docs
    info = pipeline.check_component(mixture.plan(tiny_config)[0].components[0], "pretrain", tiny_config.data, tok)
    assert 0.1 < info["flagged_fraction_sample"] < 0.4


def test_a_stage_starts_from_a_previous_stage_checkpoint(tmp_path):
    r = run_cli("train", "--config=configs/tiny.py", f"--workdir={tmp_path / 'pre'}")
    assert r.returncode == 0, r.stderr[-2000:]
    pre_loss = json.loads((tmp_path / "pre" / "metrics.jsonl").read_text().splitlines()[-1])["loss"]
    r = run_cli("train", "--config=configs/tiny.py", f"--workdir={tmp_path / 'mid'}", "--config.train.num_steps=0",
                "--config.stages.midtrain.num_steps=3", "--config.stages.midtrain.seq_len=64",
                f"--config.checkpoint.init_from={tmp_path / 'pre'}")
    assert r.returncode == 0, r.stderr[-2000:]
    rows = [json.loads(x) for x in (tmp_path / "mid" / "metrics.jsonl").read_text().splitlines()]
    assert [x["step"] for x in rows] == [1, 2, 3] and rows[0]["loss"] < pre_loss + 0.5 < np.log(512)  # fresh init starts at ~ln(vocab)
    assert json.loads((tmp_path / "mid" / "data_audit.json").read_text())["midtrain"]["tokens"] == 3 * 4 * 64


def test_heldout_documents_are_never_trained_on(tiny_config, tmp_path):
    docs = [f"<doc{i:04d}> " + "word " * (i % 5 + 3) for i in range(600)]
    tiny_config.data.update(corpus=_jsonl(tmp_path / "corpus.jsonl", docs), heldout_fraction=0.05)
    tok = Tokenizer.load("bytes")
    st = mixture.plan(tiny_config)[0]
    held = pipeline.heldout_batches(st, tiny_config.data, tok, max_docs=100, rows=64)["corpus"]
    ids = lambda rows: set(re.findall(r"<doc\d{4}>", " ".join(tok.decode(r) for r in rows)))  # noqa: E731
    held_ids = ids(held["inputs"])
    assert 10 < len(held_ids) < 60 and held["weights"].sum() > 0
    trained = ids(np.concatenate([b["inputs"] for b in _take(pipeline.make_train_iterator(tiny_config), 80)]))
    assert len(trained) > 400 and not trained & held_ids
