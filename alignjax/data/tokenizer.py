"""Tokenizers: a Hugging Face ``tokenizer.json`` (local or from the hub) or UTF-8 bytes.

Every document is encoded without special tokens and followed by EOS, the GPT-NeoX/Pythia
convention (``<|endoftext|>``, id 0 in gpt-neox-20b). ``train_bpe`` trains a GPT-NeoX-style
byte-level BPE for small offline configs: ``alignjax-data train-tokenizer``.

``add_special_tokens`` adds tokens that are never split (the chat template's role markers, see
alignjax.data.chat); a spec ending in ``+chat`` (``bytes+chat``) loads a tokenizer with the chat
markers ``CHAT_TOKENS`` already added, so a post-trained bytes run can be reloaded by name.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import re
from collections.abc import Iterable, Sequence

import numpy as np

from alignjax import config as config_lib
from alignjax.data import builtin
from alignjax.cli import Parser
from alignjax.data.sources import BUILTIN, DataError, DocumentSource, first_line

log = logging.getLogger("alignjax")

EOS_TOKEN, PAD_TOKEN = "<|endoftext|>", "<|padding|>"
EOS_CANDIDATES = (EOS_TOKEN, "</s>", "<|end_of_text|>", "<eos>")  # GPT-NeoX first, then common ones
HUB_ID = re.compile(r"[\w.-]+/[\w.-]+(@[\w./-]+)?")
CHAT_TOKENS = ("<|system|>", "<|user|>", "<|assistant|>")  # the study's chat template role markers
CHAT_SUFFIX = "+chat"
HUB_FIX = "pass a local tokenizer.json instead"  # what a user does when a hub id cannot be fetched
TRAINED_PREFIX = "bpe:"  # bpe:<vocab size>:<source spec>: trained on first use, then cached
ENV_CACHE = "ALIGNJAX_CACHE"


class Tokenizer:
    """``load(spec)``: a tokenizer.json file, a directory holding one, a hub id
    (``EleutherAI/gpt-neox-20b[@revision]``) or ``bytes`` (UTF-8 bytes + 2, as builtin)."""

    def __init__(self, hf=None, spec: str = "bytes"):
        self.spec, self._hf = spec, hf  # hf: a tokenizers.Tokenizer, or None for bytes
        self.added_ids: dict[str, int] = {}  # add_special_tokens: token -> id
        self._split = None  # bytes with added tokens: regex splitting the special tokens out
        if hf is None:
            self._bytes = builtin.ByteTokenizer()
            self.eos_id, self.pad_id, self.vocab_size = self._bytes.eos_id, self._bytes.pad_id, self._bytes.vocab_size
            return
        ids = [hf.token_to_id(t) for t in EOS_CANDIDATES]
        eos = next((i for i in ids if i is not None), None)
        if eos is None:
            raise DataError(f"{spec}: no end-of-text token (looked for {', '.join(EOS_CANDIDATES)})")
        pad = next((hf.token_to_id(t) for t in (PAD_TOKEN, "<pad>") if hf.token_to_id(t) is not None), eos)
        self.eos_id, self.pad_id = eos, pad
        self.vocab_size = hf.get_vocab_size(with_added_tokens=True)

    @classmethod
    def load(cls, spec: str, fix: str = HUB_FIX) -> Tokenizer:
        """``fix``: how the user gets a tokenizer when a hub id cannot be fetched (the caller's flag)."""
        if spec.endswith(CHAT_SUFFIX):
            tok = cls.load(spec[: -len(CHAT_SUFFIX)], fix)
            tok.add_special_tokens(CHAT_TOKENS)
            tok.spec = spec
            return tok
        if spec == "bytes":
            return cls(None, spec)
        if spec.startswith(TRAINED_PREFIX):
            return trained_bpe(spec)
        path = os.path.expanduser(spec)
        if os.path.isdir(path):
            path = os.path.join(path, "tokenizer.json")
            if not os.path.isfile(path):
                raise DataError(f"{spec}: directory has no tokenizer.json")
        elif not os.path.exists(path):
            if not HUB_ID.fullmatch(spec):
                raise DataError(f"{spec}: no such file (expected tokenizer.json, a directory, a hub id or 'bytes')")
            path = _hub_tokenizer(spec, fix)
        import tokenizers

        try:
            hf = tokenizers.Tokenizer.from_file(path)
        except Exception as e:  # tokenizers raises a bare Exception on a bad file
            raise DataError(f"{path}: not a tokenizer.json ({first_line(e)})") from None
        return cls(hf, spec)

    @functools.cached_property
    def sha256(self) -> str:
        """Hash of the canonical tokenizer JSON (sorted keys, no whitespace): manifests
        compare it to refuse shards tokenized with another tokenizer."""
        if self._hf is None:
            desc = {"type": "bytes", "offset": self._bytes.offset, "eos_id": self.eos_id, "pad_id": self.pad_id}
            if self.added_ids:
                desc["added"] = self.added_ids
        else:
            desc = json.loads(self._hf.to_str())
        text = json.dumps(desc, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return hashlib.sha256(text.encode("utf-8")).hexdigest()

    @property
    def eos_token(self) -> str:
        return EOS_TOKEN if self._hf is None else self._hf.id_to_token(self.eos_id)

    def add_special_tokens(self, tokens: Sequence[str]) -> dict[str, int]:
        """Adds tokens that are never split and encode to one id each; new ids follow the
        vocabulary in the order given (deterministic), a token already there keeps its id.
        Returns {token: id}, also merged into ``self.added_ids``."""
        if self._hf is None:
            for t in tokens:
                if t not in self.added_ids:
                    self.added_ids[t] = self.vocab_size
                    self.vocab_size += 1
            # With added tokens the EOS and padding strings are special too, as in HF tokenizers.
            specials = sorted({**self.added_ids, EOS_TOKEN: 0, PAD_TOKEN: 0}, key=len, reverse=True)
            self._split = re.compile("(" + "|".join(map(re.escape, specials)) + ")")
            ids = {t: self.added_ids[t] for t in tokens}
        else:
            from tokenizers import AddedToken

            self._hf.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in tokens])
            self.vocab_size = self._hf.get_vocab_size(with_added_tokens=True)
            ids = {t: self._hf.token_to_id(t) for t in tokens}
            self.added_ids.update(ids)
        self.__dict__.pop("sha256", None)  # the cached hash described the old vocabulary
        return ids

    def _bytes_ids(self, text: str) -> np.ndarray:
        if self._split is None:
            return self._bytes.encode(text)
        special = {**self.added_ids, EOS_TOKEN: self.eos_id, PAD_TOKEN: self.pad_id}
        parts = [np.array([special[p]], np.int32) if i % 2 else self._bytes.encode(p)
                 for i, p in enumerate(self._split.split(text)) if p]
        return np.concatenate(parts) if parts else np.zeros(0, np.int32)

    def save(self, path: str | os.PathLike) -> None:
        """Writes the HF tokenizer.json (with any added tokens) atomically; bytes tokenizers have
        no file: they are reloaded by spec (``bytes`` / ``bytes+chat``)."""
        if self._hf is None:
            raise DataError(f"{self.spec}: a bytes tokenizer has no tokenizer.json (reload it by spec)")
        out = os.fspath(path)
        tmp = f"{out}.tmp-{os.getpid()}"
        self._hf.save(tmp)
        os.replace(tmp, out)

    def encode_batch(self, texts: Sequence[str]) -> list[np.ndarray]:
        """Each text -> int32 ids followed by EOS; the batch goes to the Rust encoder at once."""
        eos = [self.eos_id]
        if self._hf is None:
            return [np.concatenate([self._bytes_ids(t), eos]).astype(np.int32) for t in texts]
        encodings = self._hf.encode_batch_fast(list(texts), add_special_tokens=False)
        return [np.array(e.ids + eos, np.int32) for e in encodings]

    def encode(self, text: str) -> np.ndarray:
        """One text -> int32 ids followed by EOS (the single-text encoder: no batch overhead)."""
        if self._hf is None:
            return self.encode_batch([text])[0]
        return np.array(self._hf.encode(text, add_special_tokens=False).ids + [self.eos_id], np.int32)

    def decode(self, ids) -> str:
        """Text of ids; special tokens (EOS, padding, added tokens) are dropped."""
        if self._hf is None:
            ids = np.asarray(ids)
            return self._bytes.decode(ids[ids < self._bytes.vocab_size])
        return self._hf.decode([int(i) for i in np.asarray(ids).reshape(-1)])

    def __repr__(self) -> str:
        return f"Tokenizer({self.spec!r}, vocab_size={self.vocab_size}, eos_id={self.eos_id})"


def _hub_tokenizer(spec: str, fix: str = HUB_FIX) -> str:
    """tokenizer.json of a hub repo (``owner/name[@revision]``): the local HF cache's copy, else a
    download. With no network (HF_HUB_OFFLINE=1, or the hub unreachable) a DataError at once,
    ending in ``fix``, instead of huggingface_hub's retries (~25 s)."""
    repo, _, revision = spec.partition("@")
    try:
        import huggingface_hub
        from huggingface_hub import constants
    except ImportError:
        raise DataError(f"{spec}: hub tokenizers need huggingface_hub (pip install alignjax[hub]); {fix}") from None
    cached = huggingface_hub.try_to_load_from_cache(repo, "tokenizer.json", revision=revision or None)
    if isinstance(cached, str):
        return cached
    why = "HF_HUB_OFFLINE is set" if constants.HF_HUB_OFFLINE else _hub_unreachable(constants.ENDPOINT)
    if why:
        raise DataError(f"{spec}: tokenizer.json is not in the local Hugging Face cache and {why}; {fix}")
    try:
        return huggingface_hub.hf_hub_download(repo, "tokenizer.json", revision=revision or None)
    except Exception as e:  # missing repo or file, gated, auth
        raise DataError(f"{spec}: cannot download tokenizer.json from the Hugging Face hub "
                        f"({type(e).__name__}: {first_line(e)}); {fix}") from None


def _hub_unreachable(endpoint: str) -> str | None:
    """Why the hub cannot be reached (DNS, connect; 3 s), or None. Behind a proxy: not probed."""
    import socket
    from urllib.parse import urlparse

    if any(os.environ.get(k) for k in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return None
    url = urlparse(endpoint)
    try:
        socket.create_connection((url.hostname, url.port or 443), timeout=3).close()
    except OSError as e:
        return f"{url.hostname} is unreachable ({e.strerror or type(e).__name__})"
    return None


def train_bpe(source: str | list[str] | Iterable[str], vocab_size: int, out_path: str | os.PathLike, *,
              text_field: str = "text") -> Tokenizer:
    """Byte-level BPE as GPT-NeoX's (NFC, ByteLevel pre-tokenizer and decoder,
    ``<|endoftext|>`` = 0, ``<|padding|>`` = 1) trained on ``source``: a source spec (a string
    or a list of file specs; see alignjax.data.sources) or any other iterable of texts.
    Written atomically to ``out_path``."""
    from tokenizers import Tokenizer as HFTokenizer
    from tokenizers import decoders, models, normalizers, pre_tokenizers, processors, trainers

    alphabet = pre_tokenizers.ByteLevel.alphabet()
    if vocab_size < len(alphabet) + 2:
        raise DataError(f"vocab_size={vocab_size}: byte-level BPE needs at least {len(alphabet) + 2} "
                        "(256 bytes + 2 special tokens)")
    if isinstance(source, (str, list, tuple)):
        texts = DocumentSource(source, text_field=text_field)
    else:
        texts = source
    hf = HFTokenizer(models.BPE())
    hf.normalizer = normalizers.NFC()
    hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    hf.post_processor = processors.ByteLevel(trim_offsets=False)
    hf.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[EOS_TOKEN, PAD_TOKEN],
                                  initial_alphabet=alphabet, show_progress=False)
    hf.train_from_iterator(texts, trainer)
    out = os.fspath(out_path)
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    tmp = f"{out}.tmp-{os.getpid()}"
    hf.save(tmp)
    os.replace(tmp, out)  # a reader never sees half a tokenizer
    return Tokenizer(hf, out)


def trained_bpe(spec: str) -> Tokenizer:
    """``bpe:<vocab size>:<source spec>`` (e.g. ``bpe:2048:builtin:wikipedia``): a BPE trained on
    that corpus the first time a process asks for it and cached under ``$ALIGNJAX_CACHE`` (default
    ``~/.cache/alignjax``), so a config names its tokenizer without a file to ship and every unit
    of a study loads the same vocabulary. Training is deterministic; concurrent first uses each
    write the same file atomically."""
    vocab, _, source = spec[len(TRAINED_PREFIX):].partition(":")
    if not vocab.isdigit() or not source:
        raise DataError(f"{spec}: expected {TRAINED_PREFIX}<vocab size>:<source spec>, e.g. bpe:2048:builtin:wikipedia")
    root = os.environ.get(ENV_CACHE) or os.path.join(os.path.expanduser("~"), ".cache", "alignjax")
    key = hashlib.sha256(f"train_bpe/1:{vocab}:{source}".encode()).hexdigest()[:16]
    path = os.path.join(root, "tokenizers", f"{key}.json")
    if not os.path.isfile(path):
        log.info("training tokenizer %s -> %s", spec, path)
        train_bpe(source, int(vocab), path)
    tok = Tokenizer.load(path)
    tok.spec = spec
    return tok


def cli_train(argv: list[str]) -> int:
    """alignjax-data train-tokenizer --input=<source spec> --vocab_size=N --output=<tokenizer.json>"""
    prog = "alignjax-data train-tokenizer"
    parser = Parser(prog=prog, description="Train a GPT-NeoX-style byte-level BPE tokenizer on a corpus.")
    parser.add_argument("--input", default=BUILTIN,
                        help="source spec: files, directories, globs, gs://, hf://datasets/...; "
                             "default: builtin (the King James Bible)")
    parser.add_argument("--text_field", default="text")
    parser.add_argument("--vocab_size", type=int, default=4096)
    parser.add_argument("--output", required=True, help="tokenizer.json to write")
    args = parser.parse_args(argv)
    try:
        tok = train_bpe(args.input, args.vocab_size, args.output, text_field=args.text_field)
    except DataError as e:
        config_lib.cli_error(prog, str(e))
    log.info("wrote %s: vocab_size=%d sha256=%s", args.output, tok.vocab_size, tok.sha256)
    return 0
