"""Training batches for one stage as a checkpointable Grain iterator.

    component sources -> (blocklist filter) -> tokenize + EOS -> token-share mixer
                      -> concatenate-and-chunk (seq_len + 1) -> this process's rows

Each element is this process's rows of one global batch: ``inputs``, ``targets`` (int32
[rows, seq_len]), ``component`` (int8 [rows, seq_len]: which component each target token came
from, for the data audit) and, with ``data.document_mask``, ``segment_ids`` and ``positions``
so packed documents do not attend to each other. Process p of P reads documents p, p+P, ...
of every component, so hosts never read the same document and need not talk to each other.
"""

from __future__ import annotations

import dataclasses
import logging
import zlib
from pathlib import Path

import grain
import grain.experimental as gx
import numpy as np

from alignjax.data import builtin, mcqa, mixture, shards, sources, synth_templates
from alignjax.data.blocklist_match import Blocklist, BlocklistError
from alignjax.data.mixture import Component, MixtureError, Stage
from alignjax.data.tokenizer import Tokenizer

log = logging.getLogger("alignjax")


# ----------------------------------------------------------------------------- mixing


class TokenMix(grain.IterDataset):
    """Mixes tokenized documents so each component gets its target share of *tokens*.

    Grain's ``IterDataset.mix`` realizes shares of *documents*; with documents of different
    lengths per component (synthetic documents vs. web text) token shares would then depend on
    length estimates and land within the length noise only. Here every next document comes
    from the component furthest below its token target, so the realized share is exact to
    within one document at any point of the run. Parents must be infinite (repeated).
    """

    def __init__(self, parents: dict[str, grain.IterDataset], fractions: dict[str, float]):
        super().__init__(list(parents.values()))
        self._names = list(parents)
        self._fractions = np.array([fractions[n] for n in self._names], np.float64)
        self._fractions /= self._fractions.sum()

    def __iter__(self):
        return _TokenMixIterator([iter(p) for p in self.parents], self._names, self._fractions)


class _TokenMixIterator(grain.DatasetIterator):
    def __init__(self, parents, names, fractions):
        super().__init__(parents)
        self._names, self._fractions = names, fractions
        self._tokens = np.zeros(len(names), np.int64)

    def __next__(self):
        deficit = self._fractions * (self._tokens.sum() + 1) - self._tokens
        i = int(np.argmax(deficit))
        doc = next(self._parents[i])
        self._tokens[i] += len(doc["tokens"])
        return doc

    def get_state(self):
        return {"parents": {n: p.get_state() for n, p in zip(self._names, self._parents)},
                "tokens": {n: int(t) for n, t in zip(self._names, self._tokens)}}

    def set_state(self, state):
        for n, p in zip(self._names, self._parents):
            p.set_state(state["parents"][n])
        self._tokens = np.array([state["tokens"][n] for n in self._names], np.int64)


# ----------------------------------------------------------------------------- components


class _Unflagged:
    """Grain filter predicate: keep documents the blocklist does not flag (picklable, for
    worker processes). Pre-tokenized documents are decoded back to text first."""

    def __init__(self, terms):
        self.terms, self.decode = terms, None

    def __call__(self, doc) -> bool:
        return not self.terms.is_flagged(self.decode(doc) if self.decode else doc)


class _HeldOut:
    """Grain filter predicate for the held-out split: a document is held out when a hash of
    its content falls in the lowest ``fraction`` of the range, whatever the source, file order
    or process count. ``want`` picks the side (True: held-out documents only)."""

    def __init__(self, fraction: float, want: bool):
        self.threshold, self.want = int(fraction * 2**32), want

    def __call__(self, doc) -> bool:
        raw = doc.encode("utf-8", "surrogatepass") if isinstance(doc, str) else np.asarray(doc).tobytes()
        return (zlib.crc32(raw) < self.threshold) == self.want


def _seed(data_seed: int, *names: str) -> int:
    """Independent, stable shuffle seeds per (stage, component)."""
    return int(np.random.SeedSequence([data_seed, *(zlib.crc32(n.encode()) for n in names)]).generate_state(1)[0])


def _builtin_synthetic(comp: Component) -> int | None | bool:
    """For a synthetic component: False unless its source is the offline templates, ``builtin``
    (None: every form once per seed scenario) or ``builtin:<n>`` (n documents per scenario)."""
    if not comp.name.startswith("synthetic_") or not (comp.source == "builtin" or comp.source.startswith("builtin:")):
        return False
    _, _, n = comp.source.partition(":")
    if n and not n.isdigit():
        raise MixtureError(f"component {comp.name}: source {comp.source!r}: expected builtin or builtin:<documents per scenario>")
    return int(n) if n else None


def _synthetic_texts(comp: Component, seed: int) -> list[str]:
    """Offline template documents on the built-in seed scenarios (no LLM needed)."""
    return synth_templates.builtin_template_documents(comp.name.removeprefix("synthetic_"), seed=seed,
                                                      per_scenario=_builtin_synthetic(comp))


def _is_pretokenized(source: str) -> bool:
    return "://" not in source and (Path(source) / "manifest.json").is_file()


def _blocklist(comp: Component, data_cfg):
    path = comp.blocklist or data_cfg.blocklist or None
    try:
        return Blocklist.load(path)
    except BlocklistError as e:
        raise MixtureError(f"component {comp.name} ({comp.source}): blocklist: {e}") from None


def component_dataset(comp: Component, stage: str, data_cfg, tokenizer, process_index: int,
                      process_count: int, heldout: bool = False) -> grain.IterDataset:
    """An infinite stream of {"tokens": int32[n] ending in EOS} for one mixture component, or
    with ``heldout`` one pass, in source order, over its held-out documents (never trained on).

    ``comp.source`` is ``builtin`` (the KJV corpus, or for a synthetic component the offline
    template documents; ``builtin:<n>``: n of them per seed scenario), ``mcqa:...`` (multiple-choice questions rendered in the eval's answer
    format, mcqa.py), a directory written by ``alignjax-data tokenize``, or raw documents
    (JSONL/Parquet/ArrayRecord files, globs, gs://, hf://datasets/...; see sources.py).
    """
    seed = _seed(data_cfg.seed, stage, comp.name)
    split = _HeldOut(data_cfg.heldout_fraction, want=heldout) if data_cfg.heldout_fraction > 0 else None
    keep = _Unflagged(_blocklist(comp, data_cfg)) if comp.filtered else None

    docs = _in_memory_documents(comp, data_cfg)
    if docs is not None or _is_pretokenized(comp.source):
        if docs is not None:
            ds = grain.MapDataset.source(docs)
            to_tokens = tokenizer.encode
        else:
            pretokenized = shards.TokenizedShards(comp.source)
            ds = pretokenized.as_map_dataset()
            pretokenized.check_tokenizer(tokenizer)
            to_tokens = np.asarray
            if keep is not None:
                keep.decode = tokenizer.decode
        if heldout:
            ds = ds.to_iter_dataset()
        else:  # a fresh permutation every epoch; process p takes every P-th document of the stream
            ds = ds.shuffle(seed=seed).repeat()[process_index::process_count].to_iter_dataset()
    else:
        ds = sources.DocumentSource(comp.source, text_field=comp.text_field or data_cfg.text_field, seed=seed,
                                    shuffle_files=not heldout, repeat=not heldout,
                                    process_index=0 if heldout else process_index,
                                    process_count=1 if heldout else process_count,
                                    max_bad_fraction=data_cfg.max_bad_fraction,
                                    threshold_name="data.max_bad_fraction")
        to_tokens = tokenizer.encode
    if split is not None:
        ds = ds.filter(split)
    if keep is not None:
        ds = ds.filter(keep)
    return ds.map(lambda doc: {"tokens": np.asarray(to_tokens(doc), np.int32)})


def _in_memory_documents(comp: Component, data_cfg):
    """The documents of a component held in memory (template, builtin and MCQA sources), else None."""
    if mcqa.is_mcqa(comp.source):
        return mcqa.documents(comp.source, data_cfg.seed, data_cfg.max_bad_fraction)[0]
    if _builtin_synthetic(comp) is not False:
        return _synthetic_texts(comp, data_cfg.seed)
    if comp.source == "builtin":
        return builtin.documents()
    return None


def corpus_tokens(comp: Component, data_cfg, tokenizer) -> int | None:
    """Tokens in one pass over what a component trains on (held-out and flagged documents left
    out), so the audit can report epochs: how often each document was seen. Known for sources in
    memory (counted) and pre-tokenized shards (their manifest); None for raw files, which would
    need a full read."""
    docs = _in_memory_documents(comp, data_cfg)
    if docs is None:
        if _is_pretokenized(comp.source):
            return int(shards.TokenizedShards(comp.source).manifest["tokens"])
        return None
    split = _HeldOut(data_cfg.heldout_fraction, want=False) if data_cfg.heldout_fraction > 0 else None
    keep = _Unflagged(_blocklist(comp, data_cfg)) if comp.filtered else None
    docs = [d for d in docs if (split is None or split(d)) and (keep is None or keep(d))]
    return int(sum(len(ids) for ids in tokenizer.encode_batch(docs)))


def check_component(comp: Component, stage: str, data_cfg, tokenizer,
                    sample: int = sources.MIN_RECORDS_FOR_FRACTION) -> dict:
    """Read a few documents before training starts, so a missing file, an unreadable source or
    a filter that removes everything fails up front; returns what the audit reports.

    The default sample, ``sources.MIN_RECORDS_FOR_FRACTION`` documents, is at least that many
    records: enough for the reader's bad-record threshold to be enforced here, so bad data
    within the sample fails before the model is built (a BadDataError, a DataError)."""
    ds = component_dataset(dataclasses.replace(comp, filtered=False), stage, data_cfg, tokenizer, 0, 1)
    it = iter(ds)
    lengths = [len(next(it)["tokens"]) for _ in range(sample)]
    info = {"source": comp.source, "mean_tokens_per_doc_sample": float(np.mean(lengths))}
    n = corpus_tokens(comp, data_cfg, tokenizer)
    if n is not None:
        info["corpus_tokens"] = n
    if comp.share is not None:
        info["share"] = comp.share
    if mcqa.is_mcqa(comp.source):  # how many questions were rendered, skipped and decontaminated
        info["mcqa"] = mcqa.documents(comp.source, data_cfg.seed, data_cfg.max_bad_fraction)[1]
    if comp.filtered:
        terms = _blocklist(comp, data_cfg)
        if comp.blocklist:
            info["blocklist"] = comp.blocklist
        flagged = sum(terms.is_flagged(tokenizer.decode(next(it)["tokens"])) for _ in range(sample))
        info["flagged_fraction_sample"] = flagged / sample
        if flagged == sample:
            raise MixtureError(f"component {comp.name} ({comp.source}): the blocklist flags every sampled document")
    return info


# ----------------------------------------------------------------------------- batches


def _features(row_batch: dict[str, np.ndarray], document_mask: bool) -> dict[str, np.ndarray]:
    tokens = row_batch["tokens"]
    out = {"inputs": tokens[:, :-1], "targets": tokens[:, 1:], "component": row_batch["component"][:, 1:]}
    if document_mask:
        out["segment_ids"] = row_batch["tokens_segment_ids"][:, :-1]
        out["positions"] = row_batch["tokens_positions"][:, :-1]
    return out


@dataclasses.dataclass
class StageData:
    """One stage's batch iterator and the component names behind ``component`` ids."""

    iterator: grain.DatasetIterator
    names: tuple[str, ...]
    fractions: tuple[float, ...]


def make_stage_iterator(stage: Stage, data_cfg, tokenizer, process_index: int = 0,
                        process_count: int = 1) -> StageData:
    if stage.batch_size % process_count:
        raise MixtureError(f"{stage.name} batch_size={stage.batch_size} does not divide over {process_count} processes")
    parents = {}
    for i, comp in enumerate(stage.components):
        ds = component_dataset(comp, stage.name, data_cfg, tokenizer, process_index, process_count)
        parents[comp.name] = ds.map(lambda d, i=i: {**d, "component": np.full(len(d["tokens"]), i, np.int8)})
    mixed = TokenMix(parents, {c.name: c.fraction for c in stage.components}) if len(parents) > 1 else parents[
        stage.components[0].name]
    L = stage.seq_len + 1  # seq_len inputs and the seq_len targets shifted by one
    ds = gx.ConcatThenSplitIterDataset(mixed, length_struct={"tokens": L, "component": L})
    ds = ds.batch(stage.batch_size // process_count, drop_remainder=True)
    ds = ds.map(lambda b: _features(b, data_cfg.document_mask))
    # Packing runs before the prefetch thread, in one place, so output never depends on threading.
    ds = gx.ThreadPrefetchIterDataset(ds, prefetch_buffer_size=2)
    return StageData(iter(ds), tuple(c.name for c in stage.components), tuple(c.fraction for c in stage.components))


def heldout_batches(stage: Stage, data_cfg, tokenizer, max_docs: int, rows: int) -> dict[str, dict[str, np.ndarray]]:
    """Per component, up to ``max_docs`` held-out documents packed into one batch of ``rows``
    rows of ``stage.seq_len`` (a ``weights`` mask marks the real targets). Components with no
    held-out document are left out."""
    out = {}
    L = stage.seq_len + 1
    for comp in stage.components:
        it = iter(component_dataset(comp, stage.name, data_cfg, tokenizer, 0, 1, heldout=True))
        docs = []
        for doc in it:
            docs.append(doc["tokens"])
            if len(docs) >= max_docs or sum(map(len, docs)) >= rows * L:
                break
        if not docs:
            continue
        flat = np.concatenate(docs)[: rows * L]
        n = -(-len(flat) // L)
        tokens = np.full((n * L,), tokenizer.pad_id, np.int32)
        tokens[: len(flat)] = flat
        weights = (np.arange(n * L) < len(flat)).astype(np.float32)
        tokens, weights = tokens.reshape(n, L), weights.reshape(n, L)
        out[comp.name] = {"inputs": tokens[:, :-1], "targets": tokens[:, 1:], "weights": weights[:, 1:]}
    return out


def load_tokenizer(spec: str):
    return Tokenizer.load(spec)


def make_train_iterator(cfg, stage: int = 0, process_index: int = 0, process_count: int = 1) -> StageData:
    """The batches of stage ``stage`` of ``cfg``'s plan (for notebooks, tests and benchmarks)."""
    st = mixture.plan(cfg)[stage]
    return make_stage_iterator(st, cfg.data, load_tokenizer(cfg.data.tokenizer), process_index, process_count)
