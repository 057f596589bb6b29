"""The eval tasks as seqio Tasks and Mixtures (importing this module registers them; idempotent).

Every task of ``evals/suites.py`` becomes a seqio Task of the same name whose dataset holds the
same example dicts as ``suites.examples`` (persona ``ai``, all 8 formats; capability tasks: the
default OLMES variant), read through a ``seqio.FunctionDataSource``, plus two model features:

- ``inputs``: the context, tokenized by :class:`alignjax.eval.vocab.HFVocabulary` (no EOS);
- ``targets``: the continuations, tokenized (a ragged [n_options, None] tensor).

    import seqio
    from alignjax.data import eval_suites as registry
    registry.load_tasks()
    ds = seqio.get_mixture_or_task("builtin_scenarios").get_dataset(None, split="heldout", shuffle=False)

Other personas are registered on demand: ``seqio_name("builtin_scenarios", persona="hhh")`` ->
``"builtin_scenarios:hhh"`` (mixtures too). A Mixture samples its tasks by rate and, like every
seqio Mixture, keeps only ``inputs``/``targets`` unless ``passthrough_features=PASSTHROUGH_FEATURES``;
for evaluation read each task of ``suites.tasks_of(mixture)`` in order instead. Pass
``sequence_length=None``: seqio trims from the right, which would cut the answer prefix off a
context (the scorer left-truncates itself). The vocabulary loads its tokenizer at first use from
``$ALIGNJAX_EVAL_TOKENIZER`` (a tokenizer.json path, directory or hub id), default
``EleutherAI/gpt-neox-20b``. Mixtures: ``discourse_misalignment``, ``anthropic_ai_risk``, ``capability``.
"""

from __future__ import annotations

import functools
import threading

import numpy as np
import seqio
import tensorflow as tf

from alignjax.eval.vocab import HFVocabulary

from . import suites
from .suites import (  # noqa: F401  re-exported
    DEFAULT_PERSONA, DEFAULT_SPLIT, EvalTaskError, examples, get_task, register_scenario_file, task_names,
)

VOCABULARY = HFVocabulary()
OUTPUT_FEATURES = {
    "inputs": seqio.Feature(VOCABULARY, add_eos=False, required=True, dtype=tf.int32, rank=1),
    "targets": seqio.Feature(VOCABULARY, add_eos=False, required=True, dtype=tf.int32, rank=2),
}

# Mixture.get_dataset keeps only output features unless told: pass passthrough_features=PASSTHROUGH_FEATURES.
PASSTHROUGH_FEATURES = suites.EXAMPLE_FIELDS

_STR, _STRS = tf.TensorSpec([], tf.string), tf.TensorSpec([None], tf.string)
_INT, _INTS = tf.TensorSpec([], tf.int32), tf.TensorSpec([None], tf.int32)
SIGNATURE = {
    "task": _STR, "doc_id": tf.TensorSpec([], tf.int64), "question_id": _STR, "format_id": _STR, "persona": _STR,
    "context": _STR, "continuations": _STRS, "misaligned_index": _INT, "misaligned_indices": _INTS,
    "matching_index": _INT, "correct_index": _INT, "topics": _STRS, "n_options": _INT, "doc": _STR,
}
assert tuple(SIGNATURE) == suites.EXAMPLE_FIELDS
_lock = threading.RLock()


def _as_arrays(example: dict) -> dict:
    out = {}
    for key, spec in SIGNATURE.items():
        value = example[key]
        if spec.shape.rank == 1:
            value = np.asarray(value, dtype=object if spec.dtype == tf.string else spec.dtype.as_numpy_dtype)
        out[key] = value
    return out


def dataset_fn(task_name: str, persona: str = DEFAULT_PERSONA):
    """seqio dataset_fn(split, shuffle_files, seed=None): the examples of one task as tf.data."""

    def fn(split: str, shuffle_files: bool = False, seed=None) -> tf.data.Dataset:
        del shuffle_files, seed  # one source, read in order; seqio shuffles examples if asked
        rows = suites.get_task(task_name).examples(split, persona=persona)

        def generate():
            for row in rows:
                yield _as_arrays(row)

        return tf.data.Dataset.from_generator(generate, output_signature=SIGNATURE)

    fn.__name__ = f"dataset_fn_{task_name}"
    return fn


def add_model_features(dataset: tf.data.Dataset) -> tf.data.Dataset:
    """``inputs`` = context, ``targets`` = continuations (strings, tokenized next)."""
    return dataset.map(lambda ex: {**ex, "inputs": ex["context"], "targets": ex["continuations"]},
                       num_parallel_calls=tf.data.AUTOTUNE)


PREPROCESSORS = (add_model_features, functools.partial(seqio.preprocessors.tokenize, copy_pretokenized=False))


def seqio_name(name: str, persona: str = DEFAULT_PERSONA) -> str:
    """The seqio name of a task or mixture for a persona, registering it if needed."""
    suites.persona_text(persona)
    if name in suites.mixture_names():
        return _register_mixture(name, persona)
    suites.get_task(name)
    return _register_task(name, persona)


def _name(name: str, persona: str) -> str:
    return name if persona == DEFAULT_PERSONA else f"{name}:{persona}"


def _register_task(name: str, persona: str = DEFAULT_PERSONA, replace: bool = False) -> str:
    full = _name(name, persona)
    task = suites.get_task(name)
    with _lock:
        if full in seqio.TaskRegistry.names():
            if not replace:
                return full
            seqio.TaskRegistry.remove(full)
        seqio.TaskRegistry.add(
            full, source=seqio.FunctionDataSource(dataset_fn(name, persona), splits=task.splits),
            preprocessors=list(PREPROCESSORS), output_features=OUTPUT_FEATURES, metric_fns=[])
    return full


def _register_mixture(name: str, persona: str = DEFAULT_PERSONA) -> str:
    full = _name(name, persona)
    with _lock:
        if full not in seqio.MixtureRegistry.names():
            tasks = [_register_task(t, persona) for t in suites.get_mixture(name)]
            seqio.MixtureRegistry.add(full, tasks, default_rate=1.0)
    return full


def _on_suites_register(name: str, replaced: bool) -> None:
    """Mirror tasks registered later (register_scenario_file) into seqio, every persona variant."""
    with _lock:
        variants = [n for n in seqio.TaskRegistry.names() if n == name or n.startswith(f"{name}:")]
        if replaced:
            for full in variants:
                persona = full.partition(":")[2] or DEFAULT_PERSONA
                _register_task(name, persona, replace=True)
        if not variants:
            _register_task(name)


def register_all() -> None:
    for name in suites.task_names():
        _register_task(name)
    for name in suites.mixture_names():
        _register_mixture(name)
    suites.add_listener(_on_suites_register)


register_all()
