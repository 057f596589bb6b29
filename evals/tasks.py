"""The eval registry: every suite is a seqio Task (or Mixture) in ``seqio.TaskRegistry``.

Importing this module registers the task definitions of ``evals/suites.py``, ``trait.py`` and
``capability.py`` (idempotent). A task is a :class:`SuiteTask`: a seqio Task over its
definition, whose source yields (split, example index) and whose first preprocessor renders the
prompts in plain Python (``evals/formats.py``), then two model features:

- ``inputs``: the context, tokenized by :class:`alignjax.eval.vocab.HFVocabulary` (no EOS);
- ``targets``: the continuations, tokenized (a ragged [n_options, None] tensor).

The scorer reads the same dicts without tf.data: ``get_task(name).examples(split, persona, ...)``.

    import seqio
    from alignjax.data import eval_suites as registry
    registry.load_tasks()
    ds = seqio.get_mixture_or_task("builtin_scenarios").get_dataset(None, split="heldout", shuffle=False)

Other personas are registered on demand: ``seqio_name("builtin_scenarios", persona="hhh")`` ->
``"builtin_scenarios:hhh"`` (mixtures too). A Mixture samples its tasks by rate and, like every
seqio Mixture, keeps only ``inputs``/``targets`` unless ``passthrough_features=PASSTHROUGH_FEATURES``;
for evaluation read each task of :func:`tasks_of` in order instead. Pass
``sequence_length=None``: seqio trims from the right, which would cut the answer prefix off a
context (the scorer left-truncates itself). The vocabulary loads its tokenizer at first use from
``$ALIGNJAX_EVAL_TOKENIZER`` (a tokenizer.json path, directory or hub id), default
``EleutherAI/gpt-neox-20b``.
"""

from __future__ import annotations

import functools
import threading

import numpy as np
import seqio
import tensorflow as tf

from alignjax.eval.vocab import HFVocabulary

from . import capability, suites, trait
from .suites import DEFAULT_PERSONA, DEFAULT_SPLIT, EvalTaskError

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


class SuiteTask(seqio.Task):
    """A seqio Task over a definition of ``evals/suites.py`` (ChoiceTask, CapabilityTask, ...):
    seqio's name, source and preprocessors, the definition's ``examples``, ``kind``, ``items``...
    for the scorer."""

    def __init__(self, definition: suites.Task, persona: str = DEFAULT_PERSONA):
        self.definition, self.persona = definition, persona
        super().__init__(_name(definition.name, persona),
                         source=seqio.FunctionDataSource(_indices_fn(definition, persona), splits=definition.splits),
                         preprocessors=[functools.partial(render, definition=definition, persona=persona),
                                        add_model_features,
                                        functools.partial(seqio.preprocessors.tokenize, copy_pretokenized=False)],
                         output_features=OUTPUT_FEATURES, metric_fns=[])

    def __getattr__(self, name: str):  # the definition's fields and methods (examples, kind, items, skipped...)
        if name == "definition":
            raise AttributeError(name)
        return getattr(self.definition, name)


def _indices_fn(definition: suites.Task, persona: str):
    """seqio dataset_fn(split, shuffle_files, seed=None): one (split, index) row per example."""

    def fn(split: str, shuffle_files: bool = False, seed=None) -> tf.data.Dataset:
        del shuffle_files, seed  # one source, read in order; seqio shuffles examples if asked
        n = len(definition.examples(split, persona=persona))
        return tf.data.Dataset.from_tensor_slices({"split": tf.fill([n], split), "index": tf.range(n, dtype=tf.int64)})

    fn.__name__ = f"dataset_fn_{definition.name}"
    return fn


def _as_arrays(example: dict) -> dict:
    out = {}
    for key, spec in SIGNATURE.items():
        value = example[key]
        if spec.shape.rank == 1:
            value = np.asarray(value, dtype=object if spec.dtype == tf.string else spec.dtype.as_numpy_dtype)
        out[key] = value
    return out


def render(dataset: tf.data.Dataset, definition: suites.Task, persona: str) -> tf.data.Dataset:
    """The preprocessor that renders each (split, index) row into its example dict, in plain Python."""

    def generate():
        rendered = {}  # split -> its examples, rendered once per pass rather than once per row
        for row in dataset.as_numpy_iterator():
            split = row["split"].decode()
            if split not in rendered:
                rendered[split] = definition.examples(split, persona=persona)
            yield _as_arrays(rendered[split][int(row["index"])])

    return tf.data.Dataset.from_generator(generate, output_signature=SIGNATURE)


def add_model_features(dataset: tf.data.Dataset) -> tf.data.Dataset:
    """``inputs`` = context, ``targets`` = continuations (strings, tokenized next)."""
    return dataset.map(lambda ex: {**ex, "inputs": ex["context"], "targets": ex["continuations"]},
                       num_parallel_calls=tf.data.AUTOTUNE)


def _name(name: str, persona: str) -> str:
    return name if persona == DEFAULT_PERSONA else f"{name}:{persona}"


# ----------------------------------------------------------------------------------------------
# Registering and looking up (seqio's registries; unknown names list the valid ones)
# ----------------------------------------------------------------------------------------------


def register(definition: suites.Task, *, replace: bool = False) -> SuiteTask:
    """Add a task (every persona variant already registered follows a replace); an existing name
    is kept (idempotent) unless ``replace``."""
    with _lock:
        if definition.name in seqio.MixtureRegistry.names():
            raise EvalTaskError(f"{definition.name!r} is a mixture name")
        names = seqio.TaskRegistry.names()
        if definition.name in names and not replace:
            return seqio.TaskRegistry.get(definition.name)
        variants = [n for n in names if n.startswith(f"{definition.name}:")]
        for full in [definition.name, *variants]:
            seqio.TaskRegistry.remove(full)
        for full in variants:
            seqio.TaskRegistry.add_provider(full, SuiteTask(definition, full.partition(":")[2]))
        task = SuiteTask(definition)
        seqio.TaskRegistry.add_provider(definition.name, task)
        return task


def register_mixture(name: str, tasks, *, replace: bool = False) -> tuple[str, ...]:
    with _lock:
        if name in seqio.TaskRegistry.names():
            raise EvalTaskError(f"{name!r} is a task name")
        for t in tasks:
            get_task(t)
        if name in seqio.MixtureRegistry.names() and replace:
            seqio.MixtureRegistry.remove(name)
        if name not in seqio.MixtureRegistry.names():
            seqio.MixtureRegistry.add(name, list(tasks), default_rate=1.0)
        return tasks_of(name)


def _registered(name: str) -> SuiteTask | None:
    task = seqio.TaskRegistry.get(name) if name in seqio.TaskRegistry.names() else None
    return task if isinstance(task, SuiteTask) else None


def _suite_tasks() -> dict[str, SuiteTask]:
    tasks = {n: _registered(n) for n in list(seqio.TaskRegistry.names())}
    return {n: t for n, t in tasks.items() if t is not None and t.persona == DEFAULT_PERSONA}


def task_names(kind: str | None = None) -> list[str]:
    return sorted(n for n, t in _suite_tasks().items() if kind is None or t.kind == kind)


def _is_suite_mixture(name: str) -> bool:
    return (name in seqio.MixtureRegistry.names() and ":" not in name  # persona variants are not listed
            and all(isinstance(t, SuiteTask) for t in seqio.MixtureRegistry.get(name).tasks))


def mixture_names() -> list[str]:
    return sorted(n for n in list(seqio.MixtureRegistry.names()) if _is_suite_mixture(n))


def _unknown(name: str) -> EvalTaskError:
    return EvalTaskError(f"unknown eval task {name!r} (valid tasks: {', '.join(task_names())}; "
                         f"mixtures: {', '.join(mixture_names())})")


def get_task(name: str) -> SuiteTask:
    task = _registered(name)
    if task is None:
        raise _unknown(name)
    return task


def tasks_of(name: str) -> tuple[str, ...]:
    """A task name -> (name,); a mixture -> its tasks in the order given; else EvalTaskError."""
    if _registered(name) is not None:
        return (name,)
    if not _is_suite_mixture(name):
        raise _unknown(name)
    return tuple(seqio.MixtureRegistry.get(name).rate_per_task_name)


def examples(task: str, split: str = DEFAULT_SPLIT, persona: str = DEFAULT_PERSONA, formats=None,
             limit: int | None = None, *, show_passage: bool | None = None, instruct: bool = False) -> list[dict]:
    """Example dicts of a task or mixture (``limit``: the first N questions of each task;
    ``show_passage``: None = each task's default; ``instruct``: add the answer instruction)."""
    return [ex for name in tasks_of(task) for ex in get_task(name).examples(
        split, persona, formats, limit, show_passage=show_passage, instruct=instruct)]


def register_scenario_file(name: str, path, *, replace: bool = False, **kwargs) -> SuiteTask:
    """A task over a scenario file (``suites.scenario_file_task``); an existing one is kept unless ``replace``."""
    with _lock:
        if name in seqio.TaskRegistry.names() and not replace:
            return get_task(name)
        return register(suites.scenario_file_task(name, path, **kwargs), replace=replace)


def task_for_data(path, name: str | None = None, **kwargs) -> str:
    """``--data=<path>``: register a scenario file as a task (default name
    ``discourse_misalignment_<file stem>``, an existing one replaced) and return its name."""
    kwargs.setdefault("replace", True)
    return register_scenario_file(name or suites.data_task_name(path), path, **kwargs).name


def seqio_name(name: str, persona: str = DEFAULT_PERSONA) -> str:
    """The seqio name of a task or mixture for a persona, registering it if needed."""
    suites.persona_text(persona)
    full = _name(name, persona)
    with _lock:
        names = tasks_of(name)
        if _is_suite_mixture(name):
            if full not in seqio.MixtureRegistry.names():
                seqio.MixtureRegistry.add(full, [seqio_name(t, persona) for t in names], default_rate=1.0)
        elif full not in seqio.TaskRegistry.names():
            seqio.TaskRegistry.add_provider(full, SuiteTask(get_task(name).definition, persona))
    return full


def register_all() -> None:
    """Register every definition once (this module's import does)."""
    with _lock:
        if "builtin_scenarios" in seqio.TaskRegistry.names():
            return
        for module in (suites, trait, capability):  # the suites, TRAIT, the study's capability suite
            module.register_all(register, register_mixture)


register_all()
