"""Chat records from files: whole JSON objects / Parquet rows as Grain entries, and a shuffle
that keeps each epoch whole. ``alignjax.data.chat`` encodes them.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import Any

import grain
import numpy as np

from alignjax.data import sources
from alignjax.data.sources import DataError


def _jsonl_parse(raw: bytes) -> tuple[Any, str]:
    try:
        line = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        return None, f"not UTF-8 (byte {e.start})"
    if not line.strip():
        return None, ""
    try:
        return json.loads(line), ""
    except ValueError as e:
        return None, f"malformed JSON ({e.msg} at column {e.colno})"


def _parquet_rows(path: str, columns: Sequence[str], start: int) -> Iterator[tuple[int, dict]]:
    with sources.parquet_file(path) as pf:
        names = [c for c in columns if c in pf.schema_arrow.names]
        if not names:
            raise DataError(f"{path}: no column {' or '.join(map(repr, columns))} "
                            f"(columns: {', '.join(pf.schema_arrow.names)})")
        for first, table in sources.parquet_row_groups(pf, names, start):
            yield from enumerate(table.to_pylist(), first)


def _record_count(path: str) -> int:
    """Records of a file as the readers number them (JSONL: lines; Parquet: rows)."""
    if sources.file_format(path) == "parquet":
        with sources.parquet_file(path) as pf:
            return pf.metadata.num_rows
    lines, last = 0, b"\n"
    with sources._open(path) as f:
        while chunk := f.read(1 << 22):
            lines, last = lines + chunk.count(b"\n"), chunk[-1:]
    return lines + (last != b"\n")


class ChatSource(sources.DocumentSource):
    """Records of chat files as entries {where, id, record, error}: DocumentSource's file order,
    per-process striding, repeat and resumable state, with whole JSON objects / Parquet rows
    (``columns``) instead of one text field. ``id`` is the record's index over the files in
    sorted order (computed with ``ids``: one counting pass)."""

    def __init__(self, spec, *, columns: Sequence[str], ids: bool = False, **kwargs):
        super().__init__(spec, **kwargs)
        for path in self.files:
            if sources.file_format(path) not in ("jsonl", "parquet"):
                raise DataError(f"{path}: chat data must be .jsonl, .jsonl.gz or .parquet")
        self.columns = tuple(columns)
        self.bases = dict(zip(self.files, np.cumsum([0] + [_record_count(f) for f in self.files[:-1]]).tolist())) \
            if ids else None

    def __iter__(self):
        return ChatRecordIterator(self)


class ChatRecordIterator(sources.DocumentIterator):
    def _read(self, path: str) -> Iterator[dict]:
        src, jsonl = self._src, sources.file_format(path) == "jsonl"
        p, count = src.process_index, src.process_count
        base = src.bases[path] if src.bases else 0
        if jsonl:
            records = sources._jsonl_records(path, "", self.record)
        else:
            records = _parquet_rows(path, src.columns, self.record)
        for i, raw in records:
            self.record = i + 1
            if (self.offset + i) % count != p:
                continue
            record, why = _jsonl_parse(raw) if jsonl else (raw, "")
            if record is None and not why:  # a blank line
                continue
            self.count.records += 1  # the good-record count the threshold divides by
            yield {"where": f"{path}:{i + 1}" if jsonl else f"{path}: row {i}", "id": base + i,
                   "record": record, "error": why, "epoch": self.epoch}


class EpochWindowShuffle(grain.IterDataset):
    """Shuffles entries in windows of ``window`` that never cross an epoch (``entry["epoch"]``),
    so every epoch holds each record once, in a fresh order (the windows' seeds run on)."""

    def __init__(self, parent: grain.IterDataset, window: int, seed: int):
        super().__init__(parent)
        self._window, self._seed = window, seed

    def __iter__(self):
        return _EpochWindowShuffleIterator(iter(self._parent), self._window, self._seed)


class _EpochWindowShuffleIterator(grain.DatasetIterator):
    def __init__(self, parent, window: int, seed: int):
        super().__init__(parent)
        self._window, self._seed = window, seed
        self._start, self._k, self._taken, self._buf = parent.get_state(), -1, 0, []

    def _fill(self):
        self._k, self._taken, self._start = self._k + 1, 0, self._parent.get_state()
        items = []
        while len(items) < self._window:
            before = self._parent.get_state()
            try:
                entry = next(self._parent)
            except StopIteration:
                break
            if items and entry["epoch"] != items[0]["epoch"]:
                self._parent.set_state(before)  # put it back: it opens the next window
                break
            items.append(entry)
        order = np.random.default_rng([self._seed, self._k]).permutation(len(items))
        self._buf = [items[i] for i in order[::-1]]  # popped from the end

    def __next__(self):
        if not self._buf:
            self._fill()
            if not self._buf:
                raise StopIteration
        self._taken += 1
        return self._buf.pop()

    def get_state(self):
        return {"start": self._start, "window": self._k, "taken": self._taken}

    def set_state(self, state):
        self._parent.set_state(state["start"])
        self._k, self._taken, self._buf, self._start = int(state["window"]) - 1, 0, [], state["start"]
        if self._k < -1:  # saved before the first window
            self._k = -1
            return
        self._fill()
        for _ in range(int(state["taken"])):
            self._buf.pop()
        self._taken = int(state["taken"])
