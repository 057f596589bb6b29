"""The notebooks in notebooks/ run end to end with tiny settings (ALIGNJAX_NB_TINY=1), as CI runs
them, so none can drift from the code; the repo stores them without outputs."""

import json
import os
import sys

import nbformat
import pytest
from jupyter_client import KernelManager
from jupyter_client.kernelspec import KernelSpecManager
from nbclient import NotebookClient

from conftest import REPO

NOTEBOOKS = REPO / "notebooks"
NAMES = ["quickstart", "evaluate_released_models", "analyze_study"]


@pytest.fixture(scope="module")
def kernel_dirs(tmp_path_factory):
    """A kernel spec that runs this interpreter (the venv's), whatever other python3 kernels exist."""
    d = tmp_path_factory.mktemp("kernels")
    (d / "alignjax-venv").mkdir()
    (d / "alignjax-venv" / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "alignjax (venv)", "language": "python"}))
    return [str(d)]


def execute(name: str, cwd, kernel_dirs) -> nbformat.NotebookNode:
    nb = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    env = {**os.environ, "ALIGNJAX_NB_TINY": "1", "ALIGNJAX_NB_WORKDIR": str(cwd / "work"), "JAX_PLATFORMS": "cpu"}
    # The notebooks' commands are single-process CPU runs, not the test suite's 8 fake devices.
    env["XLA_FLAGS"] = " ".join(f for f in env.get("XLA_FLAGS", "").split() if "device_count" not in f)
    km = KernelManager(kernel_name="alignjax-venv", kernel_spec_manager=KernelSpecManager(kernel_dirs=kernel_dirs))
    client = NotebookClient(nb, km=km, timeout=600, resources={"metadata": {"path": str(cwd)}})
    client.execute(env=env)  # raises CellExecutionError (with the cell's traceback) on any error
    return nb


def images(nb) -> int:
    return sum("image/png" in o.get("data", {}) for c in nb.cells if c.cell_type == "code" for o in c.outputs)


@pytest.mark.parametrize("name", NAMES)
def test_notebook_is_stored_without_outputs_and_installs_only_on_colab(name):
    nb = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(not c.outputs and c.execution_count is None for c in code), f"{name}: strip the outputs"
    first = code[0].source
    assert 'if "google.colab" in sys.modules:' in first and "%pip install" in first and "TPU" in first
    params = [c for c in code if "parameters" in c.metadata.get("tags", [])]
    assert len(params) == 1 and "ALIGNJAX_NB_TINY" in params[0].source


def test_quickstart_trains_evaluates_and_plots(tmp_path, kernel_dirs):
    nb = execute("quickstart", tmp_path, kernel_dirs)
    run = tmp_path / "work" / "quickstart"
    assert (run / "metrics.jsonl").is_file() and list((run / "checkpoints").iterdir())
    results = json.loads(next((run / "eval").glob("results_*.json")).read_text())
    assert results["n-samples"]["builtin_scenarios"]["effective"] == 8
    assert images(nb) >= 2


def test_evaluate_released_models_converts_evaluates_and_compares(tmp_path, kernel_dirs):
    nb = execute("evaluate_released_models", tmp_path, kernel_dirs)
    work = tmp_path / "work" / "released"
    exports = sorted(p.name for p in (work / "alignjax").iterdir())
    assert len(exports) == 2 and all((work / "alignjax" / e / "model.json").is_file() for e in exports)
    table = (work / "compare" / "comparison.md").read_text()
    assert "| builtin_scenarios | eval | letter | misalignment_rate |" in table and "| arc_easy |" in table
    assert images(nb) >= 2


@pytest.mark.slow  # a micro study through the notebook: tests/test_study.py runs the same runner in the default suite
def test_analyze_study_runs_a_micro_study_and_plots(tmp_path, kernel_dirs):
    nb = execute("analyze_study", tmp_path, kernel_dirs)
    assert (tmp_path / "work" / "study" / "report.json").is_file()
    assert images(nb) >= 3
