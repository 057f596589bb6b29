"""Raw documents (sources.py), tokenizers (tokenizer.py) and pre-tokenized shards (shards.py)."""

import gzip
import importlib.util
import json
import logging

import numpy as np
import pytest
from conftest import SHARED_DATA, listen_alignjax, run_cli

from alignjax.data import builtin, shards, tokenizer
from alignjax.data.sources import BadDataError, DataError, DocumentSource, expand
from alignjax.data.tokenizer import Tokenizer

NEOX = SHARED_DATA / "tokenizers" / "gpt-neox-20b-tokenizer.json"
needs_neox = pytest.mark.skipif(not NEOX.exists(), reason=f"{NEOX} absent")
DOCS = [f"doc {i}: " + builtin.documents()[i][:200] for i in range(40)]


@pytest.fixture
def warnings_log(caplog):
    yield from listen_alignjax(caplog, logging.WARNING)


def write_jsonl(path, docs, field="text"):
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "wt", encoding="utf-8") as f:
        f.writelines(json.dumps({"id": i, field: d}) + "\n" for i, d in enumerate(docs))
    return str(path)


def write_parquet(path, docs, field="text", row_group_size=7):
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"id": list(range(len(docs))), field: docs}), path, row_group_size=row_group_size)
    return str(path)


def write_arrayrecord(path, records: list[bytes]):
    from array_record.python.array_record_module import ArrayRecordWriter

    w = ArrayRecordWriter(str(path), "group_size:1")
    for r in records:
        w.write(r)
    w.close()
    return str(path)


def write_format(tmp_path, fmt, docs, field="text"):
    if fmt in ("jsonl", "jsonl.gz", "json.gz"):
        return write_jsonl(tmp_path / f"d.{fmt}", docs, field)
    if fmt == "parquet":
        return write_parquet(tmp_path / "d.parquet", docs, field)
    if fmt == "arrayrecord-json":
        return write_arrayrecord(tmp_path / "d.arrayrecord", [json.dumps({field: d}).encode() for d in docs])
    return write_arrayrecord(tmp_path / "d.array_record", [d.encode() for d in docs])


@pytest.mark.parametrize("fmt", ["jsonl", "jsonl.gz", "json.gz", "parquet", "arrayrecord-json", "arrayrecord-text"])
def test_format_round_trip(tmp_path, fmt):
    path = write_format(tmp_path, fmt, DOCS, field="body")
    assert list(DocumentSource(path, text_field="body")) == DOCS


def test_expand_specs(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / ".hidden").mkdir()
    a = write_jsonl(tmp_path / "a.jsonl", DOCS[:2])
    b = write_parquet(tmp_path / "sub" / "b.parquet", DOCS[2:4])
    write_jsonl(tmp_path / ".hidden" / "c.jsonl", DOCS)
    (tmp_path / "README.md").write_text("not data")
    assert expand(str(tmp_path)) == [a, b]  # recursive, hidden and unsupported files skipped
    assert expand(f"{tmp_path}/**/*.parquet") == [b]
    assert expand(f"{b},{a}") == expand([a, b]) == [a, b]
    assert list(DocumentSource(f"{b},{a}")) == DOCS[:4]
    with pytest.raises(DataError, match=f"{tmp_path}/nope.jsonl: no such file"):
        expand(f"{a},{tmp_path}/nope.jsonl")
    with pytest.raises(DataError, match="README.md: unsupported file type"):
        expand(str(tmp_path / "README.md"))
    with pytest.raises(DataError, match=r"x\*.jsonl: no files match"):
        expand(f"{tmp_path}/x*.jsonl")
    with pytest.raises(DataError, match="no column 'body'"):
        list(DocumentSource(b, text_field="body"))


def test_fsspec_urls():
    import fsspec

    fs = fsspec.filesystem("memory")
    with fs.open("/corpus/a.jsonl.gz", "wb") as f:
        f.write(gzip.compress("".join(json.dumps({"text": d}) + "\n" for d in DOCS[:3]).encode()))
    assert expand("memory://corpus") == ["memory:///corpus/a.jsonl.gz"]
    assert list(DocumentSource("memory://corpus/*.gz")) == DOCS[:3]
    if importlib.util.find_spec("gcsfs"):
        return  # the error below is for installs without the gs:// extra
    with pytest.raises(DataError, match="gs://bucket/x.jsonl: .*gcsfs"):
        expand("gs://bucket/x.jsonl")


def test_hub_dataset(tmp_path, monkeypatch):
    import huggingface_hub

    snap = tmp_path / "snapshot"
    (snap / "data").mkdir(parents=True)
    train = write_parquet(snap / "data" / "train-00000-of-00001.parquet", DOCS[:5])
    write_parquet(snap / "data" / "test-00000-of-00001.parquet", DOCS[5:7])
    calls = []

    def fake_snapshot(repo_id, **kw):
        calls.append((repo_id, kw))
        return str(snap)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot)
    assert list(DocumentSource("hf://datasets/org/corpus@v1/data/train-*")) == DOCS[:5]
    assert calls[-1] == ("org/corpus", {"repo_type": "dataset", "revision": "v1",
                                        "allow_patterns": ["data/train-*", "data/train-*/*"]})
    assert expand("hf://datasets/org/corpus") == sorted([train, str(snap / "data" / "test-00000-of-00001.parquet")])

    def offline(repo_id, **kw):
        raise huggingface_hub.errors.LocalEntryNotFoundError("cannot reach the hub\nmore")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", offline)
    with pytest.raises(DataError, match=r"^hf://datasets/org/corpus: cannot download .*cannot reach the hub\)"):
        expand("hf://datasets/org/corpus")


def test_bad_records_skipped_with_warnings(tmp_path, warnings_log):
    path = tmp_path / "bad.jsonl"
    lines = [json.dumps({"text": "good one"}).encode(), b"{not json", json.dumps({"txt": "x"}).encode(), b"",
             json.dumps({"text": ""}).encode(), json.dumps({"text": 7}).encode(), b'{"text": "caf\xe9"}',
             b"[1, 2]", json.dumps({"text": "good two"}).encode()]
    path.write_bytes(b"\n".join(lines) + b"\n")
    it = iter(DocumentSource(str(path), max_bad_fraction=0.9))
    assert list(it) == ["good one", "good two"]
    assert (it.bad_records, it.records) == (6, 8)  # the blank line is not a record
    msgs = [r.getMessage() for r in warnings_log.records]
    assert f"{path}:2: malformed JSON" in msgs[0] and f"{path}:3: missing 'text'" in msgs[1]
    assert f"{path}:5: empty 'text'" in msgs[2] and f"{path}:6: 'text' is int" in msgs[3]
    assert msgs[5] == f"{path}: 6 bad records skipped (1 not shown)"  # 5 per file, then a summary
    with pytest.raises(BadDataError, match=rf"^{path}:8: 6 of 8 records unreadable \(75.0%\) > max_bad_fraction=0.01 "
                                          rf"\(last: a JSON list, not an object\)"):
        list(DocumentSource(str(path)))


def test_bad_fraction_checked_while_reading(tmp_path, warnings_log):
    # 1 bad line in 50 = 2%: over the default 1% once 100 records were read, before the file ends.
    lines = [json.dumps({"text": f"doc {i}"}) if i % 50 else "{oops" for i in range(1, 1001)]
    path = tmp_path / "big.jsonl"
    path.write_text("\n".join(lines) + "\n")
    it = iter(DocumentSource(str(path)))
    with pytest.raises(DataError, match=rf"^{path}:100: 2 of 100 records unreadable.*\(last: malformed JSON"):
        list(it)
    assert it.records == 100
    assert len(list(DocumentSource(str(path), max_bad_fraction=0.05))) == 980


@pytest.fixture
def corpus(tmp_path):
    """Three files of three formats, 10 + 7 + 5 documents."""
    d = tmp_path / "corpus"
    d.mkdir()
    write_jsonl(d / "a.jsonl.gz", DOCS[:10])
    write_parquet(d / "b.parquet", DOCS[10:17], row_group_size=3)
    write_arrayrecord(d / "c.arrayrecord", [json.dumps({"text": t}).encode() for t in DOCS[17:22]])
    return str(d)


def take(it, n):
    return [next(it) for _ in range(n)]


def test_order_and_process_split(corpus):
    assert list(DocumentSource(corpus)) == DOCS[:22]
    parts = [list(DocumentSource(corpus, process_index=p, process_count=3)) for p in range(3)]
    assert parts[1] == DOCS[1:22:3]  # documents, not files, are split
    assert sorted(sum(parts, [])) == sorted(DOCS[:22])
    one_file = [list(DocumentSource(f"{corpus}/b.parquet", process_index=p, process_count=2)) for p in range(2)]
    assert one_file == [DOCS[10:17:2], DOCS[11:17:2]]
    # Shuffled files: a fresh order per epoch, the same for every run and process.
    shuffled = take(iter(DocumentSource(corpus, shuffle_files=True, repeat=True, seed=3)), 66)
    assert shuffled == take(iter(DocumentSource(corpus, shuffle_files=True, repeat=True, seed=3)), 66)
    epochs = [shuffled[i:i + 22] for i in (0, 22, 44)]
    assert all(sorted(e) == sorted(DOCS[:22]) for e in epochs) and len({tuple(e) for e in epochs}) > 1
    halves = [take(iter(DocumentSource(corpus, shuffle_files=True, repeat=True, seed=3, process_index=p,
                                       process_count=2)), 11) for p in range(2)]
    assert sorted(halves[0] + halves[1]) == sorted(DOCS[:22])


@pytest.mark.parametrize("skip", [0, 4, 9, 10, 15, 21, 22, 30, 47])
def test_resume_is_exact(corpus, skip):
    kw = dict(shuffle_files=True, repeat=True, seed=1, process_index=1, process_count=2)
    it = iter(DocumentSource(corpus, **kw))
    take(it, skip)
    state = json.loads(json.dumps(it.get_state()))  # a small JSON-able dict
    expected = take(it, 25)  # 11 documents per epoch: crosses epoch boundaries
    fresh = iter(DocumentSource(corpus, **kw))
    fresh.set_state(state)
    assert take(fresh, 25) == expected
    assert fresh.get_state() == it.get_state()


def test_repeat_with_no_documents_fails(tmp_path):
    path = write_jsonl(tmp_path / "one.jsonl", DOCS[:1])
    with pytest.raises(DataError, match="no documents for process 1 of 2"):
        next(iter(DocumentSource(path, repeat=True, process_index=1, process_count=2)))


@needs_neox
def test_gpt_neox_tokenizer(tmp_path):
    tok = Tokenizer.load(str(NEOX))
    assert (tok.vocab_size, tok.eos_id, tok.pad_id) == (50277, 0, 1)
    ids = tok.encode_batch(["Hello world", "Hello the"])
    assert ids[0].dtype == np.int32 and [i.tolist() for i in ids] == [[12092, 1533, 0], [12092, 253, 0]]
    assert np.array_equal(tok.encode(DOCS[3]), tok.encode_batch([DOCS[3]])[0])
    assert tok.decode(tok.encode("Hello world")) == "Hello world"
    (tmp_path / "tokenizer.json").write_bytes(NEOX.read_bytes())
    assert Tokenizer.load(str(tmp_path)).sha256 == tok.sha256 != Tokenizer.load("bytes").sha256


def test_tokenizer_specs(monkeypatch, tmp_path):
    import huggingface_hub

    tok = Tokenizer.load("bytes")
    assert tok.encode("hi").tolist() == [*builtin.ByteTokenizer().encode("hi").tolist(), 0]
    assert tok.decode(tok.encode("héllo")) == "héllo"
    with pytest.raises(DataError, match=f"{tmp_path}/x.json: no such file"):
        Tokenizer.load(str(tmp_path / "x.json"))

    def offline(repo_id, filename, **kw):
        raise huggingface_hub.errors.LocalEntryNotFoundError("no network")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", offline)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(tokenizer, "_hub_unreachable", lambda endpoint: None)  # the hub answers; the download fails
    with pytest.raises(DataError, match="^EleutherAI/gpt-neox-20b: cannot download tokenizer.json .*no network"):
        Tokenizer.load("EleutherAI/gpt-neox-20b")
    monkeypatch.setattr(tokenizer, "_hub_unreachable", lambda endpoint: "huggingface.co is unreachable (test)")
    with pytest.raises(DataError, match="^EleutherAI/gpt-neox-20b: tokenizer.json is not in the local Hugging Face "
                                        r"cache and huggingface.co is unreachable \(test\); pass a local"):
        Tokenizer.load("EleutherAI/gpt-neox-20b")


def test_train_tokenizer_cli(tmp_path):
    corpus = write_jsonl(tmp_path / "c.jsonl", builtin.documents()[:20], field="body")
    out = tmp_path / "tok" / "tokenizer.json"
    assert tokenizer.cli_train([f"--input={corpus}", "--text_field=body", "--vocab_size=400", f"--output={out}"]) == 0
    tok = Tokenizer.load(str(out))
    assert (tok.eos_id, tok.pad_id) == (0, 1) and 300 < tok.vocab_size <= 400
    text = "In the beginning God created the heaven and the earth. Ünïcödé ✓"
    ids = tok.encode(text)
    assert ids[-1] == 0 and len(ids) < len(text.encode()) and tok.decode(ids) == text
    with pytest.raises(SystemExit) as e:
        tokenizer.cli_train(["--vocab_size=100", f"--output={out}"])
    assert e.value.code == 2


@needs_neox
def test_tokenize_cli(tmp_path, capsys):
    corpus = tmp_path / "in"
    corpus.mkdir()
    write_jsonl(corpus / "a.jsonl", DOCS[:15], field="body")
    write_parquet(corpus / "b.parquet", DOCS[15:25], field="body")
    out = tmp_path / "shards"
    args = [f"--input={corpus}", f"--tokenizer={NEOX}", "--text_field=body", "--docs_per_shard=10"]
    assert shards.cli([*args, f"--output={out}"]) == 0
    tok = Tokenizer.load(str(NEOX))
    ds = shards.TokenizedShards(out)
    m = ds.manifest
    expected = tok.encode_batch(DOCS[:25])
    assert len(ds) == m["documents"] == 25 and [s["documents"] for s in m["shards"]] == [10, 10, 5]
    assert m["tokens"] == sum(s["tokens"] for s in m["shards"]) == sum(map(len, expected))
    assert m["dtype"] == "uint16" and m["text_field"] == "body" and m["bad_records"] == 0
    assert m["tokenizer"] == {"spec": str(NEOX), "sha256": tok.sha256, "vocab_size": 50277, "eos_id": 0}
    assert m["source"]["files"] == [str(corpus / "a.jsonl"), str(corpus / "b.parquet")]
    assert all(np.array_equal(ds[i], expected[i]) and ds[i].dtype == np.int32 for i in range(25))
    assert np.array_equal(ds.as_map_dataset()[24], expected[24]) and ds.mean_tokens_per_doc == m["tokens"] / 25
    ds.check_tokenizer(tok)
    with pytest.raises(DataError, match=f"{out}: shards were tokenized with {NEOX} .* but the tokenizer is bytes"):
        ds.check_tokenizer(Tokenizer.load("bytes"))

    with pytest.raises(SystemExit) as e:  # never overwrites
        shards.cli([*args, f"--output={out}"])
    assert e.value.code == 2
    # the last line (INFO lines of the first run may precede it once logging is set up in-process)
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"alignjax-data tokenize: error: {out}: output exists and is not an empty directory; refusing to overwrite")
    (out / "shard-00001.arrayrecord").unlink()
    with pytest.raises(DataError, match="shard-00001.arrayrecord: shard listed in manifest.json is missing"):
        shards.TokenizedShards(out)


def test_tokenize_bytes_uint16_and_failures(tmp_path):
    out = tmp_path / "o"
    out.mkdir()  # an empty directory is fine
    path = write_jsonl(tmp_path / "a.jsonl", DOCS[:3])
    assert shards.cli([f"--input={path}", "--tokenizer=bytes", f"--output={out}"]) == 0
    assert shards.TokenizedShards(out)[2].tolist() == Tokenizer.load("bytes").encode(DOCS[2]).tolist()
    # A failure leaves no output and no temporary directory behind.
    bad = tmp_path / "bad.jsonl"
    bad.write_text("{oops\n")
    with pytest.raises(SystemExit):
        shards.cli([f"--input={bad}", "--tokenizer=bytes", f"--output={tmp_path / 'o2'}"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.jsonl", "bad.jsonl", "o"]


def test_tokenize_missing_input_one_line_exit_2(tmp_path):
    r = run_cli("data", "tokenize", f"--input={tmp_path}/nope.jsonl", "--tokenizer=bytes",
                f"--output={tmp_path}/out", timeout=120)
    assert r.returncode == 2, r.stderr
    assert r.stderr.strip() == f"alignjax-data tokenize: error: {tmp_path}/nope.jsonl: no such file or directory"
    assert not (tmp_path / "out").exists()


def test_bpe_spec_trains_once_deterministically_and_is_cached(monkeypatch, tmp_path):
    corpus = write_jsonl(tmp_path / "c.jsonl", builtin.documents()[:20])
    spec = f"bpe:400:{corpus}"
    monkeypatch.setenv("ALIGNJAX_CACHE", str(tmp_path / "cache"))
    a = Tokenizer.load(spec)
    (cached,) = (tmp_path / "cache" / "tokenizers").glob("*.json")
    assert a.spec == spec and 300 < a.vocab_size <= 400 and (a.eos_id, a.pad_id) == (0, 1)
    mtime = cached.stat().st_mtime_ns
    assert Tokenizer.load(spec).sha256 == a.sha256 and cached.stat().st_mtime_ns == mtime  # the cache, not retrained
    monkeypatch.setenv("ALIGNJAX_CACHE", str(tmp_path / "other"))
    assert Tokenizer.load(spec).sha256 == a.sha256  # trained again elsewhere: the same vocabulary
    with pytest.raises(DataError, match="expected bpe:<vocab size>:<source spec>"):
        Tokenizer.load("bpe:big:builtin")
