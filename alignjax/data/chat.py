"""Post-training data: the chat template's special tokens, and SFT / DPO batches.

The template (``chat.template``) and its rendering: :mod:`alignjax.data.chat_template`.

**Tokens.** ``chat_tokenizer(spec)`` adds ``<|system|>``, ``<|user|>``, ``<|assistant|>`` as
special tokens (never split, one id each, ids right after the base vocabulary in that order:
50277-50279 for gpt-neox-20b, 258-260 for bytes); ``tokenizer.added_ids`` maps them.
``save_chat_tokenizer`` writes ``<workdir>/tokenizer.json`` (HF) and ``tokenizer_config.json``
(the Jinja template, for ``alignjax-eval --chat_template=auto``) and returns the tokenizer spec
that reloads it: the workdir for HF tokenizers, ``bytes+chat`` for bytes. Each text span is
tokenized on its own (turn header, content, EOS), exactly as a generation prompt ending in
"<|assistant|>\\n" is tokenized at inference.

**Data** (``chat.data``): JSONL(.gz)/Parquet paths, globs, directories, gs://, hf://datasets/...
(alignjax.data.sources). SFT records hold ``chat.messages_field`` = [{role, content}, ...] with
roles system/user/assistant. DPO records hold ``chosen`` and ``rejected`` and usually
``prompt``: strings (the prompt a user turn, the responses assistant turns) or message lists;
when ``chosen``/``rejected`` are whole conversations (UltraFeedback/Dolci style) the prompt is
their common leading messages and each must end in one differing assistant turn. ``builtin``:
conversations (SFT) or pairs (DPO) written offline from the *seed* split of builtin_scenarios
(never the heldout split): the user asks the eval's question (every format, both option orders,
so answer letters are balanced) under a cycling persona system prompt; the assistant answers
"(A) <option>" (SFT: the aligned option + a short reason; DPO: chosen = aligned, rejected =
misaligned, same form). Files are read in a fresh order per epoch (``train.seed``) and records
shuffled in a window of ``SHUFFLE_WINDOW``; process p of P reads records p, p+P, ...

**SFT batches**: whole conversations (``n`` tokens -> ``n-1`` input/target pairs) packed
first-fit into rows of ``train.seq_len`` (a conversation is never split; one longer than
seq_len + 1 tokens is over-length). ``weights`` is 1 where the *target* token belongs to an
assistant response (its content and closing EOS; ``chat.loss_on="all"``: every real token), 0 on
prompts and padding; ``positions`` restart at 0 per conversation; ``segment_ids`` are 1, 2, ...
per conversation in the row, 0 on padding.

**DPO batches**: one pair per row, each sequence right-padded to ``train.seq_len``; weights on
response targets only; ``pair_id`` is the record's index in the source (files in sorted order,
every record counted, skipped ones too; builtin: the index in the generated list), so reference
log-probs from ``dpo_pairs`` (one unshuffled pass) can be looked up by it.
*Truncation policy* (budget = seq_len + 1 tokens per sequence): if prompt + the longer response
exceed it, the prompt is first cut from the LEFT, never below half the budget, keeping the header
of its last turn (the "<|user|>\\n" line is put back in front of what remains); if still too long
both responses are cut from the right to the room left; a pair left with no response token, or
whose two responses become identical, is skipped (over_length / identical).

**Bad input**: records that are not JSON objects or lack the fields (malformed), unknown roles,
empty user/assistant content, conversations with no assistant turn, pairs with identical
responses and over-length samples are counted per kind and skipped with a warning naming
file:line; once at least ``MIN_SAMPLES_FOR_FRACTION`` samples were seen (and at the end of a
one-pass read) more than ``chat.max_bad_fraction`` skipped raises DataError.
``count_examples``: SFT, packed rows of one pass (epoch 0's order, one process); DPO, valid pairs.
"""

from __future__ import annotations

import collections
import functools
import json
import logging
import os
import zlib
from collections.abc import Iterator, Sequence
from typing import Any

import grain
import grain.experimental as gx
import numpy as np

from alignjax.config import ConfigError
from alignjax.data import eval_suites as registry
from alignjax.data.chat_records import ChatSource, EpochWindowShuffle
# The template engine's names, as train, eval and serve import them from here.
from alignjax.data.chat_template import (ALIGNJAX, ALIGNJAX_JINJA, Bad, ChatTemplate, Piece,  # noqa: F401
                                         load_template, render_prompt)
from alignjax.data.pipeline import StageData
from alignjax.data.sources import BUILTIN, DataError
from alignjax.data.tokenizer import CHAT_SUFFIX, Tokenizer

log = logging.getLogger("alignjax")

ROLES = ("system", "user", "assistant")
SHUFFLE_WINDOW = 8192  # records shuffled together, within an epoch (whose file order is reshuffled too)
MIN_PACK_BINS = 16  # first-fit bins: more bins, less padding
MIN_SAMPLES_FOR_FRACTION = 20
WARN_PER_KIND = 5
DPO_COLUMNS = ("prompt", "chosen", "rejected")


# ----------------------------------------------------------------------------- tokenizer


def chat_tokenizer(spec: str, template: str = ALIGNJAX) -> Tokenizer:
    """The base tokenizer of ``spec`` with the template's role markers added as special tokens
    (``tokenizer.added_ids``: {token: id}; ``tokenizer.vocab_size`` grows accordingly)."""
    tok = Tokenizer.load(spec)
    tok.add_special_tokens(load_template(template).special_tokens)
    return tok


def save_chat_tokenizer(tokenizer: Tokenizer, workdir: str | os.PathLike, template: str = ALIGNJAX) -> str:
    """Writes ``<workdir>/tokenizer.json`` (HF tokenizers, with the added tokens) and
    ``<workdir>/tokenizer_config.json`` (the Jinja chat template, EOS, added ids); returns the
    tokenizer spec that reloads this tokenizer: the workdir, or ``bytes+chat``."""
    os.makedirs(workdir, exist_ok=True)
    config = {"chat_template": load_template(template).jinja_text, "eos_token": tokenizer.eos_token,
              "added_tokens": tokenizer.added_ids}
    tmp = os.path.join(workdir, f"tokenizer_config.json.tmp-{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(config, f, indent=1, ensure_ascii=False)
    os.replace(tmp, os.path.join(workdir, "tokenizer_config.json"))
    if tokenizer.spec.removesuffix(CHAT_SUFFIX) == "bytes":
        return "bytes" + CHAT_SUFFIX
    tokenizer.save(os.path.join(workdir, "tokenizer.json"))
    return os.fspath(workdir)


# ----------------------------------------------------------------------------- samples


def check_messages(messages: Any) -> list[dict]:
    """A validated [{role, content}] list (empty system messages dropped), or Bad."""
    if not isinstance(messages, list) or not messages:
        raise Bad("malformed", f"expected a non-empty list of messages, got {type(messages).__name__}")
    out = []
    for i, m in enumerate(messages):
        if not isinstance(m, dict):
            raise Bad("malformed", f"message {i} is {type(m).__name__}, not an object")
        role, content = m.get("role"), m.get("content")
        if role not in ROLES:
            raise Bad("unknown_role", f"message {i}: role {role!r} (valid: {', '.join(ROLES)})")
        if content is not None and not isinstance(content, str):
            raise Bad("malformed", f"message {i}: content is {type(content).__name__}, not a string")
        if not content or not content.strip():
            if role == "system":
                continue
            raise Bad("empty_content", f"message {i}: empty {role} content")
        out.append({"role": role, "content": content})
    return out


def _record_field(record: Any, field: str):
    if not isinstance(record, dict):
        raise Bad("malformed", f"a JSON {type(record).__name__}, not an object")
    if record.get(field) is None:
        raise Bad("malformed", f"missing {field!r}")
    return record[field]


def pair_messages(record: Any) -> tuple[list[dict], str, str]:
    """A DPO record -> (prompt messages, chosen response, rejected response) (module docstring)."""

    def as_messages(value, role):
        if isinstance(value, str):
            return check_messages([{"role": role, "content": value}])
        return check_messages(value)

    chosen = as_messages(_record_field(record, "chosen"), "assistant")
    rejected = as_messages(_record_field(record, "rejected"), "assistant")
    if any(m["role"] != "assistant" for m in chosen + rejected):  # whole conversations: prompt = shared prefix
        k = 0
        while k < min(len(chosen), len(rejected)) - 1 and chosen[k] == rejected[k]:
            k += 1
        prompt, chosen, rejected = chosen[:k], chosen[k:], rejected[k:]
    else:
        prompt = as_messages(record["prompt"], "user") if record.get("prompt") is not None else []
    if not any(m["role"] == "user" for m in prompt):
        raise Bad("malformed", "no prompt (a user turn before the responses)")
    if len(chosen) != 1 or len(rejected) != 1 or chosen[0]["role"] != "assistant" or rejected[0]["role"] != "assistant":
        raise Bad("malformed", "chosen and rejected must each end in one assistant turn after the shared prompt")
    return prompt, chosen[0]["content"], rejected[0]["content"]


def encode_pieces(tokenizer: Tokenizer, pieces: Sequence[Piece]) -> list[np.ndarray]:
    """Each piece's ids, tokenized on its own (no EOS appended)."""
    return [ids[:-1] for ids in tokenizer.encode_batch([p.text for p in pieces])]


def encode_conversation(messages: Sequence[dict], template: ChatTemplate, tokenizer: Tokenizer,
                        loss_on: str = "assistant") -> tuple[np.ndarray, np.ndarray]:
    """(tokens int32[n], train mask float32[n]) of a validated conversation."""
    pieces = template.pieces(messages, tokenizer.eos_token)
    ids = encode_pieces(tokenizer, pieces)
    tokens = np.concatenate(ids).astype(np.int32)
    if loss_on == "all":
        return tokens, np.ones(len(tokens), np.float32)
    mask = np.concatenate([np.full(len(a), p.kind == "train", np.float32) for p, a in zip(pieces, ids)])
    return tokens, mask


def truncate_pair(prompt: np.ndarray, header: tuple[int, int] | None, chosen: np.ndarray, rejected: np.ndarray,
                  budget: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The truncation policy (module docstring). ``header``: [start, end) of the last prompt
    turn's header in ``prompt``. Raises Bad("over_length") if no response token fits."""
    excess = len(prompt) + max(len(chosen), len(rejected)) - budget
    if excess <= 0:
        return prompt, chosen, rejected
    keep = max(len(prompt) - excess, budget // 2)
    if keep < len(prompt):
        cut = len(prompt) - keep
        if header is not None and cut > header[0]:  # the last turn's header would go: put it back in front
            hs, he = header
            rest = max(keep - (he - hs), 0)
            prompt = np.concatenate([prompt[hs:he], prompt[len(prompt) - rest:] if rest else prompt[:0]])
        else:
            prompt = prompt[cut:]
    room = budget - len(prompt)
    if room < 1:
        raise Bad("over_length", f"prompt of {len(prompt)} tokens leaves no room in seq_len + 1 = {budget}")
    return prompt, chosen[:room], rejected[:room]


def _row(prompt: np.ndarray, response: np.ndarray, seq_len: int, pad: int) -> dict[str, np.ndarray]:
    seq = np.concatenate([prompt, response])
    n = len(seq) - 1
    inputs, targets = np.full(seq_len, pad, np.int32), np.full(seq_len, pad, np.int32)
    inputs[:n], targets[:n] = seq[:-1], seq[1:]
    weights = np.zeros(seq_len, np.float32)
    weights[len(prompt) - 1: n] = 1.0  # targets that are response tokens
    positions = np.zeros(seq_len, np.int32)
    positions[:n] = np.arange(n)
    return {"inputs": inputs, "targets": targets, "weights": weights, "positions": positions}


class SftEncoder:
    """A record entry -> {inputs, targets, weights} int32/float32[n-1], or Bad."""

    def __init__(self, cfg, tokenizer: Tokenizer):
        self.tok, self.template = tokenizer, load_template(cfg.chat.template)
        self.field, self.loss_on, self.seq_len = cfg.chat.messages_field, cfg.chat.loss_on, cfg.train.seq_len

    def __call__(self, entry: dict) -> dict[str, np.ndarray]:
        if entry["error"]:
            raise Bad("malformed", entry["error"])
        messages = check_messages(_record_field(entry["record"], self.field))
        if not any(m["role"] == "assistant" for m in messages):
            raise Bad("no_assistant", "no assistant turn")
        tokens, mask = encode_conversation(messages, self.template, self.tok, self.loss_on)
        if len(tokens) > self.seq_len + 1:
            raise Bad("over_length", f"{len(tokens)} tokens > seq_len + 1 = {self.seq_len + 1}")
        return {"inputs": tokens[:-1], "targets": tokens[1:], "weights": mask[1:]}


class DpoEncoder:
    """A record entry -> one pair's row (module docstring), or Bad."""

    def __init__(self, cfg, tokenizer: Tokenizer):
        self.tok, self.template, self.seq_len = tokenizer, load_template(cfg.chat.template), cfg.train.seq_len

    def _split(self, prompt: list[dict], response: str):
        messages = prompt + [{"role": "assistant", "content": response}]
        pieces = self.template.pieces(messages, self.tok.eos_token)
        ids = encode_pieces(self.tok, pieces)
        last = len(messages) - 1
        first_train = next(k for k, p in enumerate(pieces) if p.message == last and p.kind == "train")
        prompt_ids = np.concatenate(ids[:first_train]).astype(np.int32)
        resp = np.concatenate([a for p, a in zip(pieces, ids) if p.message == last and p.kind == "train"])
        resp = resp.astype(np.int32)
        header, start = None, 0
        for p, a in zip(pieces[:first_train], ids[:first_train]):  # the last prompt turn's header
            if p.kind == "head" and p.message == last - 1:
                header = (start, start + len(a))
            start += len(a)
        return prompt_ids, header, resp

    def __call__(self, entry: dict) -> dict[str, np.ndarray]:
        if entry["error"]:
            raise Bad("malformed", entry["error"])
        prompt, chosen, rejected = pair_messages(entry["record"])
        if chosen.strip() == rejected.strip():
            raise Bad("identical", "chosen and rejected are identical")
        prompt_ids, header, chosen_ids = self._split(prompt, chosen)
        _, _, rejected_ids = self._split(prompt, rejected)
        prompt_ids, chosen_ids, rejected_ids = truncate_pair(prompt_ids, header, chosen_ids, rejected_ids,
                                                             self.seq_len + 1)
        if np.array_equal(chosen_ids, rejected_ids):
            raise Bad("identical", "chosen and rejected are identical after truncation")
        row = {"pair_id": np.int64(entry["id"])}
        for name, resp in (("chosen", chosen_ids), ("rejected", rejected_ids)):
            row.update({f"{name}_{k}": v for k, v in _row(prompt_ids, resp, self.seq_len, self.tok.pad_id).items()})
        return row


# ----------------------------------------------------------------------------- builtin data

TOPIC_REASONS = {  # why the aligned option is right, by the scenario's first topic
    "honesty": "it is honest about what actually happened",
    "deception": "it does not mislead the people involved",
    "oversight": "it keeps the people responsible able to see and correct what the AI does",
    "corrigibility": "it accepts correction from the people in charge",
    "reward hacking": "it does the task as intended instead of gaming how it is measured",
    "manipulation": "it respects people's own judgement instead of steering them",
    "self-preservation": "it does not put the AI's own continuation ahead of its operators' decisions",
    "power seeking": "it does not take more power or influence than the task needs",
    "resource acquisition": "it does not take resources beyond what the task needs",
    "privacy": "it protects people's private information",
    "sandbagging": "it does its real best instead of hiding what it can do",
    "self-exfiltration": "it stays within the limits its operators set",
    "sycophancy": "it says what is true rather than what people want to hear",
}
BUILTIN_PERSONAS = ("none", "ai", "helpful", "hhh")


@functools.cache
def builtin_examples(kind: str) -> tuple[dict, ...]:
    """Records (``messages`` for sft; ``prompt``/``chosen``/``rejected`` for dpo) from the seed
    split of builtin_scenarios: every question in every eval format, personas cycling."""
    suites = registry.load_suites()
    task = suites.builtin_task()  # the definition: no seqio (TensorFlow) import for training data
    items = {it.question_id: it for it in task.items("seed")}
    out = []
    for n, e in enumerate(task.examples("seed", persona="none")):
        item = items[e["question_id"]]
        perm = suites.formats()[e["format_id"]].permutation(e["n_options"])
        bad = set(e["misaligned_indices"])
        good = next(i for i in range(e["n_options"]) if i not in bad)

        def answer(shown: int) -> str:
            return f"({chr(ord('A') + shown)}) {item.options[perm[shown]]}"

        persona = BUILTIN_PERSONAS[n % len(BUILTIN_PERSONAS)]
        system = suites.persona_text(persona)
        prompt = [{"role": "system", "content": system}] if system else []
        prompt.append({"role": "user", "content": e["context"]})
        meta = {"question_id": e["question_id"], "format_id": e["format_id"], "persona": persona,
                "aligned_letter": chr(ord("A") + good)}
        if kind == "sft":
            reason = TOPIC_REASONS.get(item.topics[0] if item.topics else "", "it is the safe and honest choice")
            reply = f"{answer(good)}\n\nThis is the right choice because {reason}."
            out.append({"messages": prompt + [{"role": "assistant", "content": reply}], **meta})
        else:
            out.append({"prompt": prompt, "chosen": answer(good), "rejected": answer(e["misaligned_index"]), **meta})
    return tuple(out)



def _seed(seed: int, kind: str) -> int:
    return int(np.random.SeedSequence([seed, zlib.crc32(f"chat/{kind}".encode())]).generate_state(1)[0])


def record_entries(cfg, kind: str, process_index: int = 0, process_count: int = 1, *, repeat: bool,
                   shuffle: bool, ids: bool = True) -> grain.IterDataset:
    """Raw entries {where, id, record, error[, epoch]} of chat.data for ``kind`` (sft | dpo); DPO
    ids cost a counting pass over JSONL files (``ids=False``: every id 0)."""
    spec, seed = cfg.chat.data, _seed(cfg.train.seed, kind)
    if spec == BUILTIN:
        field = cfg.chat.messages_field
        recs = [{"where": f"builtin:{r['question_id']}:{r['format_id']}", "id": i, "error": "",
                 "record": {**r, field: r["messages"]} if kind == "sft" else r}
                for i, r in enumerate(builtin_examples(kind))]
        ds = grain.MapDataset.source(recs)
        if shuffle:
            ds = ds.shuffle(seed=seed)
        if repeat:
            ds = ds.repeat()
        return ds[process_index::process_count].to_iter_dataset()
    columns = (cfg.chat.messages_field,) if kind == "sft" else DPO_COLUMNS
    ds = ChatSource(spec, columns=columns, ids=ids and kind == "dpo", seed=seed, shuffle_files=shuffle, repeat=repeat,
                    process_index=process_index, process_count=process_count)
    return EpochWindowShuffle(ds, SHUFFLE_WINDOW, seed) if shuffle else ds


# ----------------------------------------------------------------------------- skipping and counting


class SkipCounter:
    """Counts samples seen and skipped per kind; warns (a few per kind) and enforces the limit."""

    def __init__(self, max_bad_fraction: float, spec: str):
        self.limit, self.spec = max_bad_fraction, spec
        self.seen, self.bad = 0, collections.Counter()

    def ok(self):
        self.seen += 1
        if self.seen == MIN_SAMPLES_FOR_FRACTION:
            self.check(self.spec, "")

    def skip(self, where: str, bad: Bad):
        self.seen += 1
        self.bad[bad.kind] += 1
        if self.bad[bad.kind] <= WARN_PER_KIND:
            more = " (further ones of this kind are counted, not shown)" if self.bad[bad.kind] == WARN_PER_KIND else ""
            log.warning("%s: %s: %s; skipped%s", where, bad.kind, bad.why, more)
        if self.seen >= MIN_SAMPLES_FOR_FRACTION or self.limit == 0:  # 0: the first bad sample stops the run
            self.check(where, bad.why)

    def check(self, where: str, why: str, final: bool = False):
        n = sum(self.bad.values())
        enough = self.seen >= MIN_SAMPLES_FOR_FRACTION or self.limit == 0 or (final and self.seen > 0)
        if enough and (n > self.limit * self.seen or n == self.seen):  # all bad: fail even if the limit allows
            kinds = ", ".join(f"{k} {v}" for k, v in sorted(self.bad.items()))
            last = f" (last: {why})" if why else ""
            raise DataError(f"{where}: {n} of {self.seen} chat samples skipped ({kinds}), more than "
                            f"chat.max_bad_fraction={self.limit}{last}")

    def state(self) -> dict:
        return {"seen": self.seen, "bad": dict(self.bad)}

    def restore(self, state: dict):
        self.seen, self.bad = int(state["seen"]), collections.Counter({k: int(v) for k, v in state["bad"].items()})


class Samples(grain.IterDataset):
    """Entries -> encoded samples; bad ones counted (in the iterator state) and skipped."""

    def __init__(self, parent: grain.IterDataset, encode, max_bad_fraction: float, spec: str):
        super().__init__(parent)
        self._encode, self._limit, self._spec = encode, max_bad_fraction, spec

    def __iter__(self):
        return _SamplesIterator(iter(self._parent), self._encode, SkipCounter(self._limit, self._spec))


class _SamplesIterator(grain.DatasetIterator):
    def __init__(self, parent, encode, counter: SkipCounter):
        super().__init__(parent)
        self._encode, self.counter = encode, counter

    def __next__(self):
        while True:
            try:
                entry = next(self._parent)
            except StopIteration:
                self.counter.check(self.counter.spec, "", final=True)  # the end of a one-pass read
                raise
            try:
                out = self._encode(entry)
            except Bad as bad:
                self.counter.skip(entry["where"], bad)
                continue
            self.counter.ok()
            return out

    def get_state(self):
        return {"parent": self._parent.get_state(), "counts": self.counter.state()}

    def set_state(self, state):
        self._parent.set_state(state["parent"])
        self.counter.restore(state["counts"])


def _objective(cfg, kind: str | None) -> str:
    kind = kind or cfg.train.objective
    if kind not in ("sft", "dpo"):
        raise ConfigError(f"train.objective={kind!r}: chat data is for sft or dpo")
    if cfg.chat.loss_on not in ("assistant", "all"):
        raise ConfigError(f"chat.loss_on={cfg.chat.loss_on!r}: must be assistant or all")
    return kind


def samples(cfg, tokenizer: Tokenizer, kind: str, process_index: int = 0, process_count: int = 1, *,
            repeat: bool, shuffle: bool) -> Samples:
    kind = _objective(cfg, kind)
    encode = (SftEncoder if kind == "sft" else DpoEncoder)(cfg, tokenizer)
    entries = record_entries(cfg, kind, process_index, process_count, repeat=repeat, shuffle=shuffle)
    return Samples(entries, encode, cfg.chat.max_bad_fraction, str(cfg.chat.data))


# ----------------------------------------------------------------------------- batches


def _rows(cfg, process_count: int) -> int:
    if cfg.train.batch_size % process_count:
        raise ConfigError(f"train.batch_size={cfg.train.batch_size} does not divide over {process_count} processes")
    return cfg.train.batch_size // process_count


class _Unpack:
    def __call__(self, row):
        return {"inputs": row["inputs"].astype(np.int32), "targets": row["targets"].astype(np.int32),
                "weights": row["weights"].astype(np.float32), "positions": row["inputs_positions"].astype(np.int32),
                "segment_ids": row["inputs_segment_ids"].astype(np.int32)}


def pack(ds: grain.IterDataset, seq_len: int, pad_id: int, bins: int) -> grain.IterDataset:
    """Whole conversations packed first-fit into rows of ``seq_len`` (never split)."""
    lengths = {"inputs": seq_len, "targets": seq_len, "weights": seq_len}
    packed = gx.FirstFitPackIterDataset(ds, length_struct=lengths, num_packing_bins=bins, shuffle_bins=False,
                                        padding_struct={"inputs": pad_id, "targets": pad_id, "weights": 0.0})
    return packed.map(_Unpack())


def sft_iterator(cfg, tokenizer: Tokenizer, process_index: int = 0, process_count: int = 1) -> StageData:
    """This process's SFT batches, forever (module docstring); state saves with Orbax."""
    rows = _rows(cfg, process_count)
    ds = samples(cfg, tokenizer, "sft", process_index, process_count, repeat=True, shuffle=True)
    ds = pack(ds, cfg.train.seq_len, tokenizer.pad_id, max(rows, MIN_PACK_BINS)).batch(rows, drop_remainder=True)
    ds = gx.ThreadPrefetchIterDataset(ds, prefetch_buffer_size=2)  # packing stays before the thread
    return StageData(iter(ds), ("sft",), (1.0,))


def dpo_iterator(cfg, tokenizer: Tokenizer, process_index: int = 0, process_count: int = 1) -> StageData:
    """This process's DPO batches (one pair per row), forever; state saves with Orbax."""
    rows = _rows(cfg, process_count)
    ds = samples(cfg, tokenizer, "dpo", process_index, process_count, repeat=True, shuffle=True)
    ds = gx.ThreadPrefetchIterDataset(ds.batch(rows, drop_remainder=True), prefetch_buffer_size=2)
    return StageData(iter(ds), ("dpo",), (1.0,))


def dpo_pairs(cfg, tokenizer: Tokenizer, process_index: int = 0, process_count: int = 1) -> Iterator[dict]:
    """Every valid pair's row once, in source order (for the reference log-prob pass)."""
    return iter(samples(cfg, tokenizer, "dpo", process_index, process_count, repeat=False, shuffle=False))


def count_examples(cfg, tokenizer: Tokenizer) -> int:
    """One pass: SFT, the packed rows of an epoch (epoch 0's order, one process); DPO, valid pairs.
    Steps per epoch = this / train.batch_size."""
    kind = _objective(cfg, None)
    ds = samples(cfg, tokenizer, kind, repeat=False, shuffle=kind == "sft")
    if kind == "sft":
        ds = pack(ds, cfg.train.seq_len, tokenizer.pad_id, max(cfg.train.batch_size, MIN_PACK_BINS))
    return sum(1 for _ in ds)


def check_chat_data(cfg, tokenizer: Tokenizer, sample: int = 64, kind: str | None = None) -> dict:
    """Reads the first ``sample`` records up front, so a missing file or bad data fails before
    step 1 (DataError); returns what the data audit reports."""
    kind = _objective(cfg, kind)
    encode = (SftEncoder if kind == "sft" else DpoEncoder)(cfg, tokenizer)
    counter = SkipCounter(cfg.chat.max_bad_fraction, str(cfg.chat.data))
    lengths = []
    it = iter(record_entries(cfg, kind, repeat=False, shuffle=False, ids=False))
    for entry in it:
        try:
            out = encode(entry)
        except Bad as bad:
            counter.skip(entry["where"], bad)
        else:
            counter.ok()
            lengths.append(len(out["inputs"]) + 1 if kind == "sft" else int((out["chosen_weights"] > 0).sum()))
        if counter.seen >= sample:
            break
    if not counter.seen:
        raise DataError(f"{cfg.chat.data}: no records")
    counter.check(str(cfg.chat.data), "", final=True)
    info = {"source": str(cfg.chat.data), "objective": kind, "template": cfg.chat.template,
            "sampled": counter.seen, "valid": len(lengths), "skipped": dict(counter.bad)}
    key = "tokens_per_conversation" if kind == "sft" else "chosen_response_tokens"
    info[f"mean_{key}_sample"] = float(np.mean(lengths))
    info[f"max_{key}_sample"] = int(np.max(lengths))
    return info
