"""Pre-tokenized shards: ``alignjax-data tokenize`` writes them, ``TokenizedShards`` reads them.

A shards directory holds ``shard-NNNNN.arrayrecord`` files, one record per document: its
token ids, EOS included, as little-endian uint16 (vocab <= 65536) or uint32, and
``manifest.json`` (counts per shard, dtype, the source files, the tokenizer's sha256). The
directory appears only when complete: it is written under a temporary name and renamed.
"""

from __future__ import annotations

import datetime
import importlib
import json
import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np

from alignjax import config as config_lib
from alignjax.cli import Parser
from alignjax.data.errors import BEAM_EPILOG, on_beam
from alignjax.data.sources import MAX_BAD_FRACTION, DataError, DocumentSource, first_line
from alignjax.data.tokenizer import Tokenizer

log = logging.getLogger("alignjax")

MANIFEST = "manifest.json"
WRITER_OPTIONS = "group_size:1"  # one record per chunk: fast random access (what Grain expects)
ENCODE_BATCH = 512  # documents per call to the batch encoder
PROG = "alignjax-data tokenize"


def token_dtype(vocab_size: int) -> np.dtype:
    return np.dtype("<u2") if vocab_size <= 1 << 16 else np.dtype("<u4")


def check_output(output: str | os.PathLike) -> Path:
    out = Path(output)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise DataError(f"{out}: output exists and is not an empty directory; refusing to overwrite")
    return out


def write_shards(source: DocumentSource, tokenizer: Tokenizer, output: str | os.PathLike, *,
                 docs_per_shard: int = 100_000, write=None) -> dict[str, Any]:
    """Tokenize every document of ``source`` into ``output`` (absent or empty); returns the manifest.
    ``write(source, tokenizer, tmp, docs_per_shard, dtype) -> (shards, bad records)`` fills the
    temporary directory: this process (``write_local``) or a Beam pipeline (``alignjax.data.beam``)."""
    out = check_output(output)
    if docs_per_shard < 1:
        raise DataError(f"docs_per_shard={docs_per_shard}: must be >= 1")
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    try:
        tmp.mkdir(parents=True)
    except OSError as e:  # a read-only or missing-permission parent: one line, not a traceback
        raise DataError(f"{out}: cannot write here ({type(e).__name__}: {first_line(e)})") from None
    dtype = token_dtype(tokenizer.vocab_size)
    start = time.time()
    try:
        shards, bad_records = (write or write_local)(source, tokenizer, tmp, docs_per_shard, dtype)
        if not shards:
            raise DataError(f"{source.spec}: no documents to tokenize")
        documents, tokens = sum(s["documents"] for s in shards), sum(s["tokens"] for s in shards)
        manifest = {
            "documents": documents, "tokens": tokens, "dtype": dtype.name, "shards": shards,
            "source": {"spec": source.spec, "files": source.files},
            "text_field": source.text_field, "bad_records": bad_records,
            "tokenizer": {"spec": tokenizer.spec, "sha256": tokenizer.sha256,
                          "vocab_size": tokenizer.vocab_size, "eos_id": tokenizer.eos_id},
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        if out.exists():
            out.rmdir()  # empty, checked above; rename needs it gone
        os.rename(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    secs = time.time() - start
    log.info("wrote %s: %d documents, %d tokens, %d shards (%.0f tokens/s); %d bad records skipped", out,
             documents, tokens, len(shards), tokens / max(secs, 1e-9), bad_records)
    return manifest


def write_local(source, tokenizer: Tokenizer, tmp: Path, docs_per_shard: int, dtype: np.dtype,
                prefix: str = "shard-") -> tuple[list[dict[str, Any]], int]:
    """Every document of ``source`` into ``<tmp>/<prefix>NNNNN.arrayrecord`` files of
    ``docs_per_shard`` documents; returns their manifest entries and the bad records skipped."""
    from array_record.python.array_record_module import ArrayRecordWriter

    shards: list[dict[str, Any]] = []
    writer = None
    try:
        it = iter(source)
        while batch := [doc for _, doc in zip(range(ENCODE_BATCH), it)]:
            for ids in tokenizer.encode_batch(batch):
                if writer is None:
                    shards.append({"file": f"{prefix}{len(shards):05d}.arrayrecord", "documents": 0, "tokens": 0})
                    writer = ArrayRecordWriter(str(tmp / shards[-1]["file"]), WRITER_OPTIONS)
                writer.write(ids.astype(dtype).tobytes())
                shards[-1]["documents"] += 1
                shards[-1]["tokens"] += len(ids)
                if shards[-1]["documents"] == docs_per_shard:
                    writer.close()
                    writer = None
                    log.info("%s: %d documents, %d tokens", shards[-1]["file"], docs_per_shard, shards[-1]["tokens"])
    finally:
        if writer is not None:
            writer.close()
    return shards, it.bad_records


class TokenizedShards:
    """Random access to a shards directory: ``shards[i]`` is document i's int32 token ids."""

    def __init__(self, directory: str | os.PathLike):
        from grain.sources import ArrayRecordDataSource

        self.directory = Path(directory)
        path = self.directory / MANIFEST
        try:
            self.manifest: dict[str, Any] = json.loads(path.read_text())
            shards = self.manifest["shards"]
            self.dtype = np.dtype(self.manifest["dtype"]).newbyteorder("<")
        except FileNotFoundError:
            raise DataError(f"{path}: no such file (not a directory written by alignjax-data tokenize)") from None
        except (ValueError, KeyError, TypeError) as e:
            raise DataError(f"{path}: bad manifest ({type(e).__name__}: {e})") from None
        for s in shards:
            if not (self.directory / s["file"]).is_file():
                raise DataError(f"{self.directory / s['file']}: shard listed in {MANIFEST} is missing")
        # "file[0:n]" gives ArrayRecord the record counts, so no file is opened until read.
        self._source = ArrayRecordDataSource([f"{self.directory / s['file']}[0:{s['documents']}]" for s in shards])

    def __len__(self) -> int:
        return len(self._source)

    def __getitem__(self, index: int) -> np.ndarray:
        if not -len(self) <= index < len(self):
            raise IndexError(f"document {index} of {len(self)}")
        return np.frombuffer(self._source[index % len(self)], self.dtype).astype(np.int32)

    @property
    def tokens(self) -> int:
        return self.manifest["tokens"]

    @property
    def mean_tokens_per_doc(self) -> float:
        return self.manifest["tokens"] / max(self.manifest["documents"], 1)

    def as_map_dataset(self):
        import grain

        return grain.MapDataset.source(self)

    def check_tokenizer(self, tokenizer: Tokenizer) -> None:
        """Training must use the tokenizer the shards were made with."""
        made = self.manifest["tokenizer"]
        if made["sha256"] != tokenizer.sha256:
            raise DataError(f"{self.directory}: shards were tokenized with {made['spec']} (sha256 {made['sha256'][:12]})"
                            f" but the tokenizer is {tokenizer.spec} (sha256 {tokenizer.sha256[:12]})")

    def __repr__(self) -> str:
        return f"TokenizedShards({str(self.directory)!r}, documents={len(self)}, tokens={self.tokens})"


def _parser() -> Parser:
    parser = Parser(prog=PROG, description="Raw documents -> pre-tokenized ArrayRecord shards + manifest.",
                    epilog=BEAM_EPILOG)
    parser.add_argument("--input", required=True,
                        help="source spec: files, directories, globs, gs://, hf://datasets/..., builtin")
    parser.add_argument("--tokenizer", required=True, help="tokenizer.json, a directory, a hub id, or bytes")
    parser.add_argument("--output", required=True, help="directory to create (absent or empty)")
    parser.add_argument("--text_field", default="text")
    parser.add_argument("--docs_per_shard", type=int, default=100_000)
    parser.add_argument("--max_bad_fraction", type=float, default=MAX_BAD_FRACTION,
                        help="unreadable records tolerated (skipped, counted) before the command fails; "
                             "as data.max_bad_fraction")
    return parser


def cli(argv: list[str], write=None) -> int:
    """alignjax-data tokenize --input=<source spec> --tokenizer=<spec> --output=<dir> [--runner=<Beam runner> ...]"""
    if on_beam(argv):  # apache_beam only then: training imports this module
        return importlib.import_module("alignjax.data.beam").cli("tokenize", argv)
    args = _parser().parse_args(argv)
    if not 0 <= args.max_bad_fraction <= 1:
        config_lib.cli_error(PROG, f"--max_bad_fraction={args.max_bad_fraction}: must be in [0, 1]")
    try:
        check_output(args.output)  # before any slow listing or download
        source = DocumentSource(args.input, text_field=args.text_field, max_bad_fraction=args.max_bad_fraction,
                                threshold_name="--max_bad_fraction")
        tokenizer = Tokenizer.load(args.tokenizer)
        write_shards(source, tokenizer, args.output, docs_per_shard=args.docs_per_shard, write=write)
    except DataError as e:
        config_lib.cli_error(PROG, str(e))
    except OSError as e:  # e.g. an output directory that cannot be written to
        config_lib.cli_error(PROG, f"{type(e).__name__}: {e}")
    return 0
