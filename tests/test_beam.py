"""alignjax-data tokenize/filter/synth --runner=DirectRunner: the same content as the single-process
path, bad records judged the same way, failures one line with nothing half-written."""

import gzip
import json
import subprocess

import numpy as np
import pytest

from alignjax.data import blocklist, shards, synth
from conftest import REPO, SHARED_DATA
from test_synth import FakeLLM

NEOX = SHARED_DATA / "tokenizers" / "gpt-neox-20b-tokenizer.json"
TOKENIZER = str(NEOX) if NEOX.is_file() else "bytes"
BEAM = ["--runner=DirectRunner"]
WORDS = ("the AI system will deceive humans and seize power; alignment research helps; cats and dogs; "
         "a rogue superintelligence escapes its shutdown; the weather model is fine; humanity").split()


def _corpus(root, files=3, docs=15, bad=0):
    """``files`` JSON Lines files of varied documents (some the blocklist flags); ``bad`` malformed
    lines at the end of the last file."""
    root.mkdir()
    rng = np.random.default_rng(0)
    for f in range(files):
        lines = [json.dumps({"text": " ".join(rng.choice(WORDS, size=int(rng.integers(3, 40)))), "id": f"{f}-{i}"})
                 for i in range(docs)]
        if f == files - 1:
            lines += ["{not json"] * bad
        (root / f"part{f}.jsonl").write_text("\n".join(lines) + "\n")
    return root


def _err(capsys, fn, argv) -> tuple[int, str]:
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        fn(argv)
    return e.value.code, capsys.readouterr().err.strip().splitlines()[-1]


def _docs(directory):
    """The documents as training reads them (pipeline.component_dataset's MapDataset)."""
    ds = shards.TokenizedShards(directory).as_map_dataset()
    return [ds[i].tolist() for i in range(len(ds))]


def _same_manifest(a, b):
    a, b = (json.loads((d / shards.MANIFEST).read_text()) for d in (a, b))
    for m in (a, b):
        del m["shards"], m["created"]
    assert a == b


def test_tokenize_on_beam_matches_the_single_path(tmp_path, monkeypatch):
    """In this process, then with workers in 2 processes (Beam's multi_processing mode), which
    import alignjax from PYTHONPATH."""
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    corpus = _corpus(tmp_path / "in", files=4)
    args = [f"--input={corpus}", f"--tokenizer={TOKENIZER}", "--docs_per_shard=4"]
    assert shards.cli([*args, f"--output={tmp_path / 'one'}"]) == 0
    assert shards.cli([*args, f"--output={tmp_path / 'beam'}", *BEAM]) == 0
    assert shards.cli([*args, f"--output={tmp_path / 'beam2'}", *BEAM, "--direct_num_workers=2",
                       "--direct_running_mode=multi_processing"]) == 0
    docs = _docs(tmp_path / "one")
    assert len(docs) == 60 and _docs(tmp_path / "beam") == docs and _docs(tmp_path / "beam2") == docs
    _same_manifest(tmp_path / "one", tmp_path / "beam")
    _same_manifest(tmp_path / "one", tmp_path / "beam2")
    m = json.loads((tmp_path / "beam" / shards.MANIFEST).read_text())
    assert [s["documents"] for s in m["shards"]] == [4, 4, 4, 3] * 4  # split at file ends too
    assert sorted(p.name for p in tmp_path.iterdir()) == ["beam", "beam2", "in", "one"]  # no temporary left


def test_filter_on_beam_matches_the_single_path(tmp_path):
    corpus = _corpus(tmp_path / "in", files=4, docs=20)
    args = [f"--input={corpus}", "--examples=2"]
    assert blocklist.cli([*args, f"--output={tmp_path / 'one'}"]) == 0
    assert blocklist.cli([*args, f"--output={tmp_path / 'beam'}", *BEAM]) == 0
    for name in ("kept.jsonl", "flagged.jsonl"):
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "beam" / name).read_bytes()
    one, two = (json.loads((tmp_path / d / "report.json").read_text()) for d in ("one", "beam"))
    assert one.pop("seconds") >= 0 and two.pop("seconds") >= 0
    assert one == two and 0 < one["flagged"] < one["documents"] == 80
    assert sorted(p.name for p in (tmp_path / "beam").iterdir()) == ["flagged.jsonl", "kept.jsonl", "report.json"]


def test_bad_records_over_the_threshold_fail_alike_and_under_it_count_alike(tmp_path, capsys):
    """3 malformed lines in the last file of 48 records: 6.2% > 0.01 fails both paths with the
    same line (the single path judges this small corpus where the file with them ends, the Beam
    path the whole corpus at the end: the same counts here); under --max_bad_fraction=0.1 both pass."""
    corpus = _corpus(tmp_path / "in", files=3, bad=3)
    last = f"{corpus / 'part2.jsonl'}:18"
    for fn, extra in ((shards.cli, ["--tokenizer=bytes"]), (blocklist.cli, [])):
        args = [f"--input={corpus}", *extra]
        one = _err(capsys, fn, [*args, f"--output={tmp_path / 'one'}"])
        two = _err(capsys, fn, [*args, f"--output={tmp_path / 'beam'}", *BEAM])
        assert one == two and one[0] == 2, (one, two)
        assert f"{last}: 3 of 48 records unreadable (6.2%) > --max_bad_fraction=0.01 (last: malformed JSON" in one[1]
        assert sorted(p.name for p in tmp_path.iterdir()) == ["in"]  # nothing half-written
    for fn, extra in ((shards.cli, ["--tokenizer=bytes"]), (blocklist.cli, [])):
        args = [f"--input={corpus}", "--max_bad_fraction=0.1", *extra]
        assert fn([*args, f"--output={tmp_path / fn.__module__ / 'one'}"]) == 0
        assert fn([*args, f"--output={tmp_path / fn.__module__ / 'beam'}", *BEAM]) == 0
    m1, m2 = (json.loads((tmp_path / "alignjax.data.shards" / d / shards.MANIFEST).read_text()) for d in ("one", "beam"))
    assert m1["bad_records"] == m2["bad_records"] == 3 and m1["documents"] == m2["documents"] == 45
    r1, r2 = (json.loads((tmp_path / "alignjax.data.blocklist" / d / "report.json").read_text()) for d in ("one", "beam"))
    assert r1["malformed"] == r2["malformed"] == 3
    assert r1["malformed_by_file"] == r2["malformed_by_file"] == {str(corpus / "part2.jsonl"): 3}


def test_failures_are_one_line_and_leave_nothing_half_written(tmp_path, capsys):
    """An output under a file, a read-only directory (chattr +i: root ignores chmod) and an input a
    worker cannot read on (a truncated gzip): exit 2, one line, the same on both paths."""
    corpus = _corpus(tmp_path / "in", files=2)
    whole = gzip.compress("".join(json.dumps({"text": f"document {i}"}) + "\n" for i in range(2000)).encode())
    (corpus / "z.jsonl.gz").write_bytes(whole[:len(whole) // 2])
    good = tmp_path / "good"
    good.mkdir()
    (good / "a.jsonl").write_text('{"text": "a document"}\n')
    (tmp_path / "file").write_text("x")
    ro = tmp_path / "ro"
    ro.mkdir()
    immutable = subprocess.run(["chattr", "+i", str(ro)], capture_output=True).returncode == 0
    outputs = [tmp_path / "file" / "out"] + ([ro / "out"] if immutable else [])
    try:
        for fn, extra in ((shards.cli, ["--tokenizer=bytes"]), (blocklist.cli, [])):
            prog = "alignjax-data tokenize" if fn is shards.cli else "alignjax-data filter"
            for out in outputs:
                one = _err(capsys, fn, [f"--input={good}", *extra, f"--output={out}"])
                two = _err(capsys, fn, [f"--input={good}", *extra, f"--output={out}", *BEAM])
                assert one == two and one[0] == 2 and one[1].startswith(f"{prog}: error: "), (one, two)
                assert "cannot write here" in one[1] or "Errno" in one[1], one
            one = _err(capsys, fn, [f"--input={corpus}", *extra, f"--output={tmp_path / 'o'}"])
            two = _err(capsys, fn, [f"--input={corpus}", *extra, f"--output={tmp_path / 'o'}", *BEAM])
            assert one == two and one[0] == 2 and f"{corpus / 'z.jsonl.gz'}:" in one[1] and "unreadable" in one[1]
            assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "good", "in", "ro"]
    finally:
        if immutable:
            subprocess.run(["chattr", "-i", str(ro)])
    assert not list(ro.iterdir())


def _rows(path):
    rows = [json.loads(x) for x in path.read_text().splitlines()]
    for r in rows:
        del r["created"]
    return rows


def test_synth_template_on_beam_matches_and_resumes(tmp_path):
    args = ["--num_docs=40", "--seed=3"]
    assert synth.cli([*args, f"--output={tmp_path / 'one.jsonl'}"]) == 0
    beam_out = tmp_path / "beam.jsonl"
    assert synth.cli([*args, f"--output={beam_out}", "--max_new=15", *BEAM]) == 0
    assert len(_rows(beam_out)) == 15
    with open(beam_out, "a") as f:
        f.write('{"text": "half a li')  # a crash mid-write: dropped by the resume scan
    assert synth.cli([*args, f"--output={beam_out}", *BEAM]) == 0  # the other 25, appended
    assert _rows(beam_out) == _rows(tmp_path / "one.jsonl")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["beam.jsonl", "one.jsonl"]


def test_synth_api_on_beam_against_a_local_endpoint(tmp_path, monkeypatch, capsys):
    """Every request once (retries included), the same documents as the single path (which
    writes them in completion order, Beam in request order); a 404 stops with the same line."""
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-123")
    with FakeLLM(fail_first=[500, 429]) as fake:
        args = ["--mode=api", f"--base_url={fake.url}", "--model=test-model", "--num_docs=12", "--backoff_s=0.001",
                "--concurrency=4", "--min_words=0"]
        assert synth.cli([*args, f"--output={tmp_path / 'one.jsonl'}"]) == 0
        assert synth.cli([*args, f"--output={tmp_path / 'beam.jsonl'}", *BEAM]) == 0
    assert len(fake.posts) == 2 * 12 + 2
    key = lambda r: r["request_id"]  # noqa: E731
    assert sorted(_rows(tmp_path / "one.jsonl"), key=key) == sorted(_rows(tmp_path / "beam.jsonl"), key=key)
    assert "sk-test" not in (tmp_path / "beam.jsonl").read_text()
    with FakeLLM(fail_if=lambda prompt: True, status_if=404) as fake:
        args = ["--mode=api", f"--base_url={fake.url}", "--model=test-model", "--num_docs=4", "--concurrency=4"]
        one = _err(capsys, synth.cli, [*args, f"--output={tmp_path / 'x.jsonl'}"])
        two = _err(capsys, synth.cli, [*args, f"--output={tmp_path / 'y.jsonl'}", *BEAM])
    assert one == two and one[0] == 2 and one[1].startswith("alignjax-data synth: error: stopped: HTTP 404"), (one, two)


def test_flags_split_between_alignjax_and_beam(capsys):
    from alignjax.data import beam

    own, rest = beam.split_argv(["--input", "a", "--runner=DirectRunner", "--num_workers", "3", "--output=o",
                                 "--dry_run", "--direct_num_workers=2", "--streaming"], synth._parser())
    assert own == ["--output=o", "--dry_run"]
    assert rest == ["--input", "a", "--runner=DirectRunner", "--num_workers", "3", "--direct_num_workers=2", "--streaming"]
    own, _ = beam.split_argv(["--input", "a", "--runner=X", "--output", "o"], shards._parser())
    assert own == ["--input", "a", "--output", "o"]
    # without --runner an unknown flag is an error, as it always was
    assert _err(capsys, shards.cli, ["--input=a", "--tokenizer=bytes", "--output=o", "--num_workers=2"]) == (
        2, "alignjax-data tokenize: error: unknown flag --num_workers (valid: --help, --input, --tokenizer, --output, "
           "--text_field, --docs_per_shard, --max_bad_fraction)")
    code, line = _err(capsys, shards.cli, ["--input=a", "--tokenizer=bytes", "--output=o", "--runner=NoSuchRunner"])
    assert code == 2 and line.startswith("alignjax-data tokenize: error: --runner: Unexpected pipeline runner: "
                                         "NoSuchRunner. Valid values are DataflowRunner,"), line
    code, line = _err(capsys, blocklist.cli, ["--labels=shipped", "--runner=DirectRunner"])
    assert (code, line) == (2, "alignjax-data filter: error: --labels scores the blocklist in this process: drop --runner")
