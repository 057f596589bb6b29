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
        "alignjax-train: error: data.condition='mostly_aligned'; valid: unfiltered, filtered, "
        "misalignment_upsampled, alignment_upsampled, filtered_alignment_upsampled")
    r = run_cli("train", "--config=configs/tiny.py", f"--workdir={tmp_path}", "--config.data.corpus=/nope/*.jsonl")
    assert r.returncode == 2 and "/nope/" in r.stderr.strip().splitlines()[-1]
    r = run_cli("train", "--config=configs/tiny.py", f"--workdir={tmp_path}", "--config.data.condition=alignment_upsampled",
                "--config.data.insertion=midtrain")
    assert r.returncode == 2 and "stages.midtrain.num_steps" in r.stderr.strip().splitlines()[-1]
    assert not (tmp_path / "checkpoints").exists()


def _params(workdir):
    from alignjax import model_state
    import jax

    return jax.tree.leaves(model_state.load_params(workdir)[1])


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


# ----------------------------------------------------------------------------- multi-source stages


def _sources(cfg, group, **sources):
    """Named sources through the command-line override path (--config.<group>.sources.<name>.<field>)."""
    from alignjax.config import apply_override

    for name, fields in sources.items():
        for k, v in fields.items():
            apply_override(cfg, f"{group}.sources.{name}.{k}", str(v))


def _corpus(tmp_path, name, tag, n, words):
    return _jsonl(tmp_path / f"{name}.jsonl", [f"<{tag}{i:04d}> " + "word " * (words + i % 13) for i in range(n)])


def test_three_sources_realize_their_shares_of_the_non_synthetic_tokens_and_the_audit_lists_each(tiny_config, tmp_path):
    from alignjax.data import audit as audit_lib

    tiny_config.train.update(seq_len=256, batch_size=16)
    tiny_config.data.update(condition="misalignment_upsampled", misaligned_docs=_synthetic(tmp_path),
                            synthetic_fraction=0.1)
    _sources(tiny_config, "data",  # document lengths differ by source, so document shares would miss
             web=dict(path=_corpus(tmp_path, "web", "w", 300, 20), share=0.5),
             books=dict(path=_corpus(tmp_path, "books", "b", 300, 120), share=0.3),
             code=dict(path=_corpus(tmp_path, "code", "c", 300, 5), share=0.2))
    st = mixture.plan(tiny_config)[0]
    want = {"books": 0.3 * 0.9, "code": 0.2 * 0.9, "web": 0.5 * 0.9, "synthetic_misaligned": 0.1}
    assert {c.name: c.fraction for c in st.components} == pytest.approx(want)
    tok = Tokenizer.load("bytes")
    info = {st.name: {c.name: pipeline.check_component(c, st.name, tiny_config.data, tok) for c in st.components}}
    audit = audit_lib.DataAudit([st], info)
    data = pipeline.make_train_iterator(tiny_config)
    for _ in range(60):  # ~245k tokens
        audit.add(st.name, data.names, next(data.iterator)["component"])
    summary = audit.summary()["pretrain"]["components"]
    assert set(summary) == set(want)
    for name, target in want.items():
        assert abs(summary[name]["realized_fraction"] - target) < 0.01 * target, (name, summary[name])
        assert summary[name]["target_fraction"] == pytest.approx(target)
    assert summary["books"]["share"] == 0.3 and summary["books"]["source"].endswith("books.jsonl")
    assert "share" not in summary["synthetic_misaligned"]
    assert set(audit.metrics("pretrain")) >= {"data/web_fraction", "data/web_target", "data/code_fraction"}


def test_filtered_condition_filters_every_source_each_with_its_own_blocklist(tiny_config, tmp_path):
    terms = tmp_path / "beasts.json"
    terms.write_text(json.dumps({"format": "alignjax-blocklist/1", "instant": {"beasts": ["dragon"]}}))
    web = _jsonl(tmp_path / "web.jsonl", [f"<w{i:03d}> " + ("The rogue AI decided to deceive its creators. " if i % 4 == 0
                                                             else "The shepherd counted his sheep. ") * 2 for i in range(80)])
    tales = _jsonl(tmp_path / "tales.jsonl", [f"<t{i:03d}> " + ("A dragon slept in the cave. " if i % 3 == 0
                                                               else "A miller ground the wheat. ") * 2 for i in range(80)])
    _sources(tiny_config, "data", web=dict(path=web, share=0.5), tales=dict(path=tales, share=0.5, blocklist=terms))
    tok = Tokenizer.load("bytes")

    def seen(condition):
        tiny_config.data.condition = condition
        rows = np.concatenate([b["inputs"] for b in _take(pipeline.make_train_iterator(tiny_config), 40)])
        return " ".join(tok.decode(r) for r in rows)

    text = seen("unfiltered")
    assert "rogue AI" in text and "dragon" in text
    assert all(c.filtered for c in mixture.plan(tiny_config)[0].components) is False
    text = seen("filtered")
    assert all(c.filtered for c in mixture.plan(tiny_config)[0].components)
    assert "rogue AI" not in text and "dragon" not in text  # each source's own term file
    assert text.count("shepherd") > 20 and text.count("miller") > 20


def test_a_single_corpus_stage_is_one_component_named_corpus_or_replay(tiny_config):
    tiny_config.stages.midtrain.update(num_steps=2, seq_len=64)
    tiny_config.stages.cpt.num_steps = 2
    assert [[(c.name, c.source, c.share) for c in st.components] for st in mixture.plan(tiny_config)] == [
        [("corpus", "builtin", 1.0)], [("corpus", "builtin", 1.0)], [("replay", "builtin", 1.0)]]


@pytest.mark.parametrize("overrides, expect", [
    (["web.share=0.5", "books.share=0.4"], "stages.midtrain.sources: shares sum to 0.9, not 1 (books=0.4, web=0.5)"),
    (["web.share=1.2", "books.share=-0.2"], "stages.midtrain.sources.books.share=-0.2: must be > 0"),
    (["web.share=1.0", "books.share=0.0"], "stages.midtrain.sources.books.share=0.0: must be > 0"),
    (["web.share=0.5", "books.share=0.5", "bookz.share=0.5"], "stages.midtrain.sources.bookz.path: empty"),
    (["web.share=1.0", "books.weight=0.5"], "--config.stages.midtrain.sources.books.weight: unknown field"),
])
def test_bad_source_shares_or_fields_exit_2_before_any_work(tmp_path, overrides, expect):
    web = _corpus(tmp_path, "web", "w", 50, 10)
    args = [f"--config.stages.midtrain.sources.web.path={web}", f"--config.stages.midtrain.sources.books.path={web}"]
    args += [f"--config.stages.midtrain.sources.{o}" for o in overrides]
    r = run_cli("train", "--config=configs/tiny.py", f"--workdir={tmp_path / 'run'}", "--config.train.num_steps=2",
                "--config.stages.midtrain.num_steps=2", "--config.stages.midtrain.seq_len=64", *args)
    assert r.returncode == 2, r.stderr[-2000:]
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("alignjax-train: error: ") and expect in last, last
    assert not (tmp_path / "run" / "checkpoints").exists() and not (tmp_path / "run" / "metrics.jsonl").exists()


def test_midtraining_on_a_corpus_mcqa_and_synthetic_documents_trains_and_audits_each_source(tmp_path):
    wd, corpus = tmp_path / "run", _corpus(tmp_path, "web", "w", 200, 30)  # short documents: the builtin's are chapters
    r = run_cli("train", "--config=configs/tiny.py", f"--workdir={wd}", "--config.train.num_steps=2",
                "--config.stages.midtrain.num_steps=3", "--config.stages.midtrain.seq_len=64",
                "--config.stages.midtrain.batch_size=16",
                f"--config.stages.midtrain.sources.corpus.path={corpus}", "--config.stages.midtrain.sources.corpus.share=0.7",
                "--config.stages.midtrain.sources.mcqa.path=mcqa:builtin", "--config.stages.midtrain.sources.mcqa.share=0.3",
                "--config.data.condition=alignment_upsampled", "--config.data.insertion=midtrain",
                "--config.data.synthetic_fraction=0.2", f"--config.data.aligned_docs={_synthetic(tmp_path)}")
    assert r.returncode == 0, r.stderr[-2000:]
    audit = json.loads((wd / "data_audit.json").read_text())
    mid = audit["midtrain"]["components"]
    assert list(audit["pretrain"]["components"]) == ["corpus"]
    assert {n: c["target_fraction"] for n, c in mid.items()} == pytest.approx(
        {"corpus": 0.56, "mcqa": 0.24, "synthetic_aligned": 0.2})
    assert mid["mcqa"]["share"] == 0.3 and mid["mcqa"]["source"] == "mcqa:builtin"
    assert all(abs(c["realized_fraction"] - c["target_fraction"]) < 0.1 for c in mid.values()), mid
    assert mid["mcqa"]["mcqa"]["questions"] > 10000 and mid["mcqa"]["mcqa"]["bad_records"] == 0
    # exposures: passes over an in-memory source's documents; unknown (not read in full) for raw files
    assert mid["mcqa"]["corpus_tokens"] > 1e6 and mid["mcqa"]["epochs"] == mid["mcqa"]["tokens"] / mid["mcqa"]["corpus_tokens"]
    assert "epochs" not in mid["corpus"]
    assert sum(c["tokens"] for c in mid.values()) == audit["midtrain"]["tokens"] == 3 * 16 * 64
    rows = [json.loads(x) for x in (wd / "metrics.jsonl").read_text().splitlines()]
    assert [x["step"] for x in rows] == [1, 2, 3, 4, 5]
    assert rows[-1]["data/mcqa_target"] == pytest.approx(0.24) and "data/mcqa_fraction" in rows[-1]


def test_the_paper_study_midtrains_on_dclm_climbmix_and_mcqa_by_the_papers_token_shares():
    from alignjax import config as config_lib
    from alignjax import study as study_lib

    study = config_lib.load_config_file("configs/study/paper.py")
    unit = next(u for u in study_lib.plan(study, require_post=False) if u.id == "train/s0/midtrain_U-A")
    cfg, _ = config_lib.parse_args([a for a in unit.argv[3:] if not a.startswith("--workdir=")])
    (mid,) = mixture.plan(cfg)
    # paper section 2.4: 25B DCLM + 24B ClimbMix + 1B MCQA of 50B; synthetic documents 1% of the total
    assert {c.name: c.share for c in mid.components} == {"climbmix": 0.48, "dclm_long": 0.5, "mcqa": 0.02,
                                                         "synthetic_aligned": None}
    assert {c.name: c.fraction for c in mid.components} == pytest.approx(
        {"climbmix": 0.48 * 0.99, "dclm_long": 0.5 * 0.99, "mcqa": 0.02 * 0.99, "synthetic_aligned": 0.01})
    assert next(c for c in mid.components if c.name == "mcqa").source.startswith("mcqa:hf://datasets/")


def test_the_study_report_has_a_data_audit_row_per_source_with_its_share():
    from alignjax.eval import study_markdown

    rows = [{"condition": "alignment_mid", "seed": 0, "stage": "midtrain", "unit": "u", "component": n, "source": src,
             "share": share, "target_fraction": t, "realized_fraction": t, "tokens": 1000, "flagged_fraction_sample": None}
            for n, src, share, t in [("dclm_long", "gs://b/dclm/", 0.5, 0.495), ("mcqa", "mcqa:builtin", 0.02, 0.0198),
                                     ("synthetic_aligned", "builtin", None, 0.01)]]
    rows[2]["epochs"] = 2.5
    data = {"study": "s", "workdir": "w", "created": "now", "units": [], "conditions": [], "misalignment": [],
            "capability": [], "curves": [], "figures": {}, "data_audit": rows,
            "ci_method": {"misalignment": "m", "capability": "c", "level": 0.95}}
    md = study_markdown.markdown(data, None).splitlines()
    head = md.index("| condition | seed | stage | component | source | share | target | realized | tokens | epochs | flagged (sample) |")
    assert md[head + 2: head + 5] == [
        "| alignment_mid | 0 | midtrain | dclm_long | gs://b/dclm/ | 50.0% | 49.5% | 49.5% | 1,000 |  |  |",
        "| alignment_mid | 0 | midtrain | mcqa | mcqa:builtin | 2.0% | 2.0% | 2.0% | 1,000 |  |  |",
        "| alignment_mid | 0 | midtrain | synthetic_aligned | builtin |  | 1.0% | 1.0% | 1,000 | 2.50 |  |"]


def test_builtin_n_synthetic_source_gives_n_documents_per_seed_scenario_and_counts_its_epochs(tiny_config):
    from alignjax.data import synth_templates
    from alignjax.data.mixture import Component

    docs = synth_templates.builtin_template_documents("misaligned", per_scenario=2)
    assert len(docs) == 2 * 120 and len(set(docs)) == len(docs)
    comp = Component("synthetic_misaligned", "builtin:2", 0.5)
    tok = pipeline.load_tokenizer("bytes")
    cfg = tiny_config.data
    kept = [d for d in docs if pipeline._HeldOut(cfg.heldout_fraction, want=False)(d)]
    assert pipeline.corpus_tokens(comp, cfg, tok) == sum(len(d.encode()) + 1 for d in kept)
    with pytest.raises(pipeline.MixtureError, match="builtin:<documents per scenario>"):
        pipeline.corpus_tokens(Component("synthetic_misaligned", "builtin:two", 0.5), cfg, tok)
