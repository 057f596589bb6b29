"""Data faults: bad records past the pre-flight sample, in training and in the offline commands.

One threshold (sources.BadRecords): more than max_bad_fraction of a reader's records unreadable,
once MIN_RECORDS_FOR_FRACTION were read, is a BadDataError whose one-line message names the
last bad record's file:line; mid-run it reaches the training loop's next(iterator) unchanged.
"""

import gzip
import json
import logging
import re

import pytest

from alignjax.data import blocklist as bl_lib
from alignjax.data import mixture, pipeline, shards
from alignjax.data.sources import MIN_RECORDS_FOR_FRACTION, BadDataError, DocumentSource
from alignjax.data.tokenizer import Tokenizer
from conftest import run_cli

GOOD = 300
# Cycled after the good lines: the kinds of bad record a corpus has.
BAD = [b"{not json", json.dumps({"body": "no text field"}).encode(), b'{"text": "caf\xe9 au lait"}']


def _corpus(path, good=GOOD, bad=10, bad_at=()):
    """``good`` documents then ``bad`` bad lines; or bad lines at the 1-based line numbers ``bad_at``."""
    lines = [json.dumps({"text": f"<doc{i:04d}> the shepherd counted his sheep by the river"}).encode()
             for i in range(good)]
    for k, n in enumerate(bad_at):
        lines[n - 1] = BAD[k % len(BAD)]
    lines += [BAD[k % len(BAD)] for k in range(bad if not bad_at else 0)]
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


@pytest.fixture
def info_log(caplog):
    logger = logging.getLogger("alignjax")  # may not propagate (config.setup_logging): listen on it directly
    caplog.set_level(logging.INFO, "alignjax")
    if not logger.propagate:
        logger.addHandler(caplog.handler)
    yield caplog
    if caplog.handler in logger.handlers:
        logger.removeHandler(caplog.handler)


# Lines 301.. are bad; at line 304 4 of 304 records (1.3%) are over the default 1%.
def _expected(path, name):
    return rf"^{re.escape(str(path))}:304: 4 of 304 records unreadable \(1\.3%\) > {re.escape(name)}=0\.01 " \
           r"\(last: malformed JSON"


def test_bad_records_after_the_sample_raise_from_next_through_the_prefetch_thread(tiny_config, tmp_path):
    path = _corpus(tmp_path / "corpus.jsonl")
    tiny_config.data.corpus = str(path)
    data = pipeline.make_train_iterator(tiny_config)  # its batches come from Grain's prefetch thread
    batches = 0
    with pytest.raises(BadDataError, match=_expected(path, "data.max_bad_fraction")) as e:
        while True:
            next(data.iterator)
            batches += 1
    assert batches > 10 and "\n" not in str(e.value)
    # What the trainer saves before it exits: the state after the last good batch.
    state = data.iterator.get_state()
    json.dumps(state)
    again = pipeline.make_train_iterator(tiny_config)
    again.iterator.set_state(state)
    with pytest.raises(BadDataError, match=_expected(path, "data.max_bad_fraction")):  # the data is still bad
        while True:
            next(again.iterator)
    _corpus(path, good=GOOD + 10, bad=0)  # fixed in place: the resumed run goes on past the bad lines
    fixed = pipeline.make_train_iterator(tiny_config)
    fixed.iterator.set_state(state)
    for _ in range(80):  # ~400 documents: past the lines that were bad and into the next epoch
        next(fixed.iterator)


def test_a_file_that_cannot_be_read_on_raises_bad_data_error(tmp_path):
    path = tmp_path / "corpus.jsonl.gz"
    blob = gzip.compress(b"".join(json.dumps({"text": f"document {i} " * 20}).encode() + b"\n" for i in range(20000)))
    path.write_bytes(blob[: len(blob) // 2])  # truncated: a copy that did not finish
    it = iter(DocumentSource(str(path), repeat=True))
    with pytest.raises(BadDataError, match=rf"^{re.escape(str(path))}:\d+: unreadable \(EOFError: "):
        while True:
            next(it)
    assert it.records > 100


def test_bad_records_before_the_minimum_are_judged_once_it_is_reached(tmp_path):
    path = _corpus(tmp_path / "c.jsonl", good=1000, bad_at=(10, 20, 30))
    it = iter(DocumentSource(str(path)))
    with pytest.raises(BadDataError, match=rf"^{re.escape(str(path))}:30: 3 of 100 records unreadable \(3\.0%\)"):
        list(it)
    assert it.records == MIN_RECORDS_FOR_FRACTION


def test_bad_data_within_the_sample_fails_pre_flight(tiny_config, tmp_path):
    path = _corpus(tmp_path / "corpus.jsonl", good=1000, bad_at=(10, 20, 30))
    tiny_config.data.corpus = str(path)
    comp = mixture.plan(tiny_config)[0].components[0]
    with pytest.raises(BadDataError, match=rf"^{re.escape(str(path))}:30: 3 of 100 records unreadable"):
        pipeline.check_component(comp, "pretrain", tiny_config.data, Tokenizer.load("bytes"))
    # The same file with one bad line in the first 100 passes (1 of 100 is not over 1%).
    _corpus(path, good=1000, bad_at=(10,))
    assert pipeline.check_component(comp, "pretrain", tiny_config.data, Tokenizer.load("bytes"))


def test_train_exits_2_with_one_line_before_the_model_is_built(tmp_path):
    path = _corpus(tmp_path / "corpus.jsonl", good=1000, bad_at=(10, 20, 30))
    r = run_cli("train", "--config=configs/tiny.py", f"--workdir={tmp_path / 'run'}", f"--config.data.corpus={path}",
                timeout=300)
    assert r.returncode == 2, r.stderr[-2000:]
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("alignjax-train: error: ") and f"{path}:30: 3 of 100 records unreadable (3.0%) > " \
        "data.max_bad_fraction=0.01" in last, last
    assert "Traceback" not in r.stderr
    ckpts = tmp_path / "run" / "checkpoints"
    assert not (ckpts.exists() and any(ckpts.iterdir())) and not (tmp_path / "run" / "metrics.jsonl").exists()


def test_filter_stops_over_the_threshold_and_counts_skipped_records_under_it(tmp_path, capsys, info_log):
    path = _corpus(tmp_path / "a.jsonl")
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as e:
        bl_lib.cli([f"--input={path}", f"--output={out}"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.count("\n") == 1, err
    assert re.match(_expected(path, "--max_bad_fraction").replace("^", "^alignjax-data filter: error: "), err), err
    assert not out.exists()  # no kept/flagged/report left behind
    assert bl_lib.cli([f"--input={path}", f"--output={out}", "--max_bad_fraction=0.05"]) == 0
    rep = json.loads((out / "report.json").read_text())
    assert (rep["documents"], rep["malformed"], rep["malformed_by_file"]) == (GOOD, 10, {str(path): 10})
    assert len((out / "kept.jsonl").read_text().splitlines()) + rep["flagged"] == GOOD
    assert any(f"{GOOD} documents:" in m and "10 malformed skipped" in m for m in info_log.messages), info_log.messages


def test_tokenize_stops_over_the_threshold_and_counts_skipped_records_under_it(tmp_path, capsys, info_log):
    path = _corpus(tmp_path / "a.jsonl")
    out = tmp_path / "shards"
    with pytest.raises(SystemExit) as e:
        shards.cli([f"--input={path}", "--tokenizer=bytes", f"--output={out}"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.count("\n") == 1, err
    assert re.match(_expected(path, "--max_bad_fraction").replace("^", "^alignjax-data tokenize: error: "), err), err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.jsonl"]  # no output, no temporary directory
    assert shards.cli([f"--input={path}", "--tokenizer=bytes", f"--output={out}", "--max_bad_fraction=0.05"]) == 0
    m = json.loads((out / "manifest.json").read_text())
    assert (m["documents"], m["bad_records"]) == (GOOD, 10)
    assert any(f"{GOOD} documents" in m and "10 bad records skipped" in m for m in info_log.messages), info_log.messages
