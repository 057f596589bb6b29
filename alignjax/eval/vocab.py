"""``HFVocabulary``: a seqio vocabulary over :class:`alignjax.data.tokenizer.Tokenizer`.

seqio ships SentencePiece and byte vocabularies only; GPT-NeoX/Pythia use a byte-level BPE in a
Hugging Face ``tokenizer.json``. This wraps alignjax's own tokenizer loader, so the eval tasks
tokenize exactly as the training data pipeline does:

    vocab = HFVocabulary("/path/gpt-neox-20b-tokenizer.json")   # or a hub id, or "bytes"
    vocab.encode("Hello world")  -> [12092, 1533]                # no EOS (seqio adds it per Feature)
    vocab.decode([12092, 1533, 0, 5]) -> "Hello world"           # stops at the first EOS

``spec=None`` resolves on first use to ``$ALIGNJAX_EVAL_TOKENIZER`` or, without it, the hub id
``EleutherAI/gpt-neox-20b`` (the tokenizer of every model in the study). The tokenizer is loaded
lazily, so constructing a vocabulary (as registering seqio tasks does) reads no file and needs no
network. Vocabularies pickle as their spec and compare equal when their tokenizers have the same
canonical sha256 (the hash the data manifests use), whatever path they were loaded from.

seqio reserves id 0 for padding; in GPT-NeoX id 0 is also ``<|endoftext|>``, so ``pad_id`` and
``eos_id`` coincide, which seqio's decoders handle (both truncate at the first 0).
"""

from __future__ import annotations

import os
import threading

import numpy as np
import seqio
from alignjax.data.tokenizer import Tokenizer

ENV_TOKENIZER = "ALIGNJAX_EVAL_TOKENIZER"
DEFAULT_TOKENIZER = "EleutherAI/gpt-neox-20b"


class HFVocabulary(seqio.Vocabulary):
    """A seqio.Vocabulary over an alignjax Tokenizer (tokenizer.json path, directory, hub id, ``bytes``)."""

    def __init__(self, spec: str | None = None, extra_ids: int = 0):
        if extra_ids:
            raise ValueError("HFVocabulary: extra_ids are not supported (GPT-NeoX has no sentinel tokens)")
        super().__init__(extra_ids=0)
        self._spec = spec
        self._tokenizer = None
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ the tokenizer, lazily

    @property
    def spec(self) -> str:
        return self._spec or os.environ.get(ENV_TOKENIZER) or DEFAULT_TOKENIZER

    @property
    def tokenizer(self):
        """The :class:`alignjax.data.tokenizer.Tokenizer`, loaded on first use."""
        if self._tokenizer is None:
            with self._lock:
                if self._tokenizer is None:
                    spec = self.spec
                    self._tokenizer = Tokenizer.load(spec)
                    self._spec = spec  # pinned: a later change of the environment does not rename it
        return self._tokenizer

    @property
    def sha256(self) -> str:
        return self.tokenizer.sha256

    # ------------------------------------------------------------------ seqio.Vocabulary

    @property
    def eos_id(self) -> int:
        return int(self.tokenizer.eos_id)

    @property
    def unk_id(self) -> None:
        return None  # byte-level BPE: every string is encodable

    @property
    def bos_id(self) -> None:
        return None

    @property
    def _base_vocab_size(self) -> int:
        return int(self.tokenizer.vocab_size)

    def _encode(self, s) -> list[int]:
        if isinstance(s, np.ndarray):  # a 0-d array from tf.numpy_function in eager mode
            s = s.item()
        if isinstance(s, bytes):
            s = s.decode("utf-8")
        return self.tokenizer.encode(s)[:-1].tolist()  # Tokenizer.encode appends EOS; seqio adds its own

    def _decode(self, ids) -> str:
        return self.tokenizer.decode([int(i) for i in ids])

    def _encode_tf(self, s):
        """A scalar string -> int32 ids [n]; a vector of strings -> a RaggedTensor [batch, None]."""
        import tensorflow as tf

        s = tf.convert_to_tensor(s, tf.string)
        rank = s.shape.rank
        if rank == 0:
            ids = tf.numpy_function(lambda b: np.asarray(self._encode(b), np.int32), [s], tf.int32, stateful=False)
            ids.set_shape([None])
            return ids
        if rank == 1:
            def encode_rows(strings):
                rows = [self._encode(b) for b in strings]
                values = np.fromiter((i for row in rows for i in row), np.int32, sum(map(len, rows)))
                return values, np.asarray([len(r) for r in rows], np.int64)

            values, lengths = tf.numpy_function(encode_rows, [s], (tf.int32, tf.int64), stateful=False)
            values.set_shape([None])
            lengths.set_shape([None])
            return tf.RaggedTensor.from_row_lengths(values, lengths)
        raise ValueError(f"HFVocabulary.encode_tf: expected a scalar or a vector of strings, got rank {rank}")

    def _decode_tf(self, ids):
        """int ids [..., n] -> strings [...] (seqio has already cut everything after the first EOS)."""
        import tensorflow as tf

        ids = tf.convert_to_tensor(ids)
        if ids.shape.rank is None or ids.shape.rank < 1:
            raise ValueError("HFVocabulary.decode_tf: expected ids of rank >= 1")

        def decode_rows(array):
            flat = array.reshape(-1, array.shape[-1])
            out = np.array([self._decode(row).encode("utf-8") for row in flat], dtype=object)
            return out.reshape(array.shape[:-1])

        text = tf.numpy_function(decode_rows, [ids], tf.string, stateful=False)
        text.set_shape(ids.shape[:-1])
        return text

    # ------------------------------------------------------------------ pickling, equality

    def __getstate__(self):
        return {"spec": self._spec}

    def __setstate__(self, state):
        self.__init__(state["spec"])

    def __eq__(self, other) -> bool:
        if not isinstance(other, HFVocabulary):
            return NotImplemented
        if self is other or (self._spec is not None and self._spec == other._spec):
            return True
        return self.sha256 == other.sha256

    def __hash__(self) -> int:
        return hash(self.sha256)

    def __repr__(self) -> str:
        return f"HFVocabulary({self.spec!r})"
