"""Training batches as a checkpointable Grain iterator.

Each element is this process's slice of one global batch: ``inputs``, ``targets`` (int32
[rows, seq_len]) and, with ``document_mask``, ``segment_ids`` and ``positions`` so packed
documents do not attend to each other. The order depends only on the seed, never on the
process count: global batch k is the same rows whatever the sharding.
"""

from __future__ import annotations

import grain
import numpy as np

from alignjax.data import builtin


def chunk_features(chunk: np.ndarray, eos_id: int, document_mask: bool) -> dict[str, np.ndarray]:
    """A window of seq_len+1 packed tokens -> next-token-prediction features."""
    out = {"inputs": chunk[..., :-1], "targets": chunk[..., 1:]}
    if document_mask:
        inputs = out["inputs"]
        # A new document starts after each EOS; positions restart with it.
        starts = np.zeros_like(inputs, dtype=bool)
        starts[..., 1:] = inputs[..., :-1] == eos_id
        seg = np.cumsum(starts, axis=-1).astype(np.int32)
        idx = np.broadcast_to(np.arange(inputs.shape[-1]), inputs.shape)
        first = np.maximum.accumulate(np.where(starts, idx, 0), axis=-1)
        out["segment_ids"], out["positions"] = seg, (idx - first).astype(np.int32)
    return out


def make_train_iterator(data_cfg, batch_size: int, seq_len: int, process_index: int = 0,
                        process_count: int = 1) -> grain.DatasetIterator:
    if data_cfg.source != "builtin":
        raise ValueError(f"data.source={data_cfg.source!r}; valid: builtin")
    if batch_size % process_count:
        raise ValueError(f"train.batch_size={batch_size} does not divide over {process_count} processes")
    stream = builtin.token_stream()
    eos = builtin.ByteTokenizer.eos_id
    num_chunks = (len(stream) - 1) // seq_len
    rows = batch_size // process_count
    lo = process_index * rows

    def load(chunk_ids: np.ndarray) -> dict[str, np.ndarray]:
        mine = chunk_ids[lo:lo + rows, None] * seq_len + np.arange(seq_len + 1)
        return chunk_features(stream[mine], eos, data_cfg.document_mask)

    ds = (grain.MapDataset.range(num_chunks)
          .shuffle(seed=data_cfg.seed)
          .repeat()
          .batch(batch_size, drop_remainder=True)  # global batch of chunk ids
          .map(load))
    return iter(ds.to_iter_dataset())
