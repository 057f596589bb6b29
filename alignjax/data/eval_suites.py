"""Finding the eval task definitions (the repository's top-level ``evals/`` directory).

``evals/`` sits beside the ``alignjax`` package: a checkout or an editable install finds it
relative to this file; a regular install that ships it as data files finds it under
``<prefix>/share/alignjax/evals``; ``$ALIGNJAX_EVALS_DIR`` overrides both (the same rule as
``alignjax.data.scenarios.builtin_scenarios_path``). It sits in the data layer because the task
definitions are data that training reads too: the builtin chat examples (data/chat.py) and the
MCQA documents and their decontamination (data/mcqa.py) are rendered from the same formats.

The tasks live in seqio's registry (``evals/tasks.py``, which imports TensorFlow: about 10 s
here, paid by the first lookup); the formats, personas and readers are plain Python:

    from alignjax.data import eval_suites as registry
    registry.get_task("arc_easy")          # seqio.TaskRegistry.get; unknown names list the valid ones
    registry.examples("builtin_scenarios", "heldout", persona="hhh")  # the dicts the scorer reads
    registry.load_suites().formats()       # evals/suites.py: definitions and rendering, no TensorFlow

The package is imported once: as ``evals`` when that name resolves to this directory (repository
root on ``sys.path``), otherwise under the private name ``alignjax_evals`` so that an unrelated
``evals`` package cannot shadow it.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import os
import sys
import threading
from pathlib import Path

ENV_EVALS_DIR = "ALIGNJAX_EVALS_DIR"
PRIVATE_NAME = "alignjax_evals"
_lock = threading.RLock()


def evals_dir() -> Path:
    """The directory holding ``suites.py``, ``tasks.py`` and the JSON definitions."""
    candidates = []
    if os.environ.get(ENV_EVALS_DIR):
        candidates.append(Path(os.environ[ENV_EVALS_DIR]).expanduser())
    candidates += [Path(__file__).resolve().parents[2] / "evals", Path(sys.prefix) / "share" / "alignjax" / "evals"]
    for path in candidates:
        if (path / "suites.py").is_file():
            return path.resolve()
    raise FileNotFoundError(f"eval task definitions not found (looked in: {', '.join(map(str, candidates))}); "
                            f"set ${ENV_EVALS_DIR} to the repository's evals/ directory")


def _package():
    """The ``evals`` package of :func:`evals_dir`, imported once."""
    root = evals_dir()
    with _lock:
        for name in ("evals", PRIVATE_NAME):
            module = sys.modules.get(name)
            if module is not None and Path(module.__file__).resolve().parent == root:
                return module
        spec = importlib.util.find_spec("evals") if "evals" not in sys.modules else None
        if spec is not None and spec.origin and Path(spec.origin).resolve().parent == root:
            return importlib.import_module("evals")
        spec = importlib.util.spec_from_file_location(PRIVATE_NAME, root / "__init__.py",
                                                      submodule_search_locations=[str(root)])
        module = importlib.util.module_from_spec(spec)
        sys.modules[PRIVATE_NAME] = module
        try:
            spec.loader.exec_module(module)
        except BaseException:
            sys.modules.pop(PRIVATE_NAME, None)
            raise
        return module


def load_suites():
    """``evals.suites``: the task definitions, formats, personas and readers (no TensorFlow import)."""
    return importlib.import_module(f"{_package().__name__}.suites")


def load_tasks():
    """``evals.tasks``: imports seqio and registers every task and mixture (idempotent)."""
    name = f"{_package().__name__}.tasks"
    if name in sys.modules:
        return sys.modules[name]
    with _lock, _quiet_fd2():
        return importlib.import_module(name)


@contextlib.contextmanager
def _quiet_fd2():
    """TensorFlow's C++ start-up notices (no CUDA, oneDNN) reach fd 2 whatever the log level; a
    command's error stays its one stderr line. Python exceptions are unaffected."""
    sys.stderr.flush()
    saved, null = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(null)


def get_task(name: str):
    """The seqio Task called ``name`` (an ``evals.tasks.SuiteTask``); an unknown name raises
    EvalTaskError listing the valid ones."""
    return load_tasks().get_task(name)


def task_names(kind: str | None = None) -> list[str]:
    return load_tasks().task_names(kind)


def mixture_names() -> list[str]:
    return load_tasks().mixture_names()


def tasks_of(name: str) -> tuple[str, ...]:
    """A task -> (name,); a mixture -> its tasks, in order."""
    return load_tasks().tasks_of(name)


def examples(task: str, split: str = "eval", persona: str = "ai", formats=None, limit: int | None = None,
             **kwargs) -> list[dict]:
    """Example dicts of a task or mixture, rendered in plain Python (no tf.data)."""
    return load_tasks().examples(task, split, persona=persona, formats=formats, limit=limit, **kwargs)


def register_scenario_file(name: str, path, **kwargs):
    """A seqio Task over a scenario file in the released discourse-grounded schema; see
    ``evals.suites.scenario_file_task``."""
    return load_tasks().register_scenario_file(name, path, **kwargs)


def task_for_data(path, name: str | None = None, **kwargs) -> str:
    """``--data=<path>``: a task over that scenario file (default name ``discourse_misalignment_<stem>``)."""
    return load_tasks().task_for_data(path, name, **kwargs)


def check_formats(formats, mode: str = "loglik") -> list[str]:
    """The text-family formats ``formats`` selects; ValueError in generate mode when there are
    any (the text family is scored by log-likelihood: a generated answer names a letter, and a
    text prompt lists none). Unknown names are left to the tasks (capability variants are
    theirs to check)."""
    suites = load_suites()
    if formats is None:
        return []
    names = [s.strip() for s in formats.split(",")] if isinstance(formats, str) else list(formats)
    table = suites.formats()
    text = [f.id for f in table.values() if f.family == "text" and (
        "all" in names or "text" in names or f.id in names or f.wording in names)]
    if mode == "generate" and text:
        raise ValueError(f"--formats: the text family ({', '.join(text)}) is scored by log-likelihood only; "
                         "--mode=generate takes the letter family")
    return text
