"""The one-way layers (README, Layout) as tests: `lint-imports` keeps the import-linter contract in
setup.cfg, and no module imports one of alignjax's own modules inside a function beyond the list
below, which only shrinks."""

import ast
import subprocess
import sys
from pathlib import Path

from conftest import REPO

# module:function -> imported module, with the reason beside it: none are left. A new entry is a
# layering mistake, not an exception. Heavy optional third-party imports are not listed (allowed).
KNOWN_FUNCTION_LEVEL: set[str] = set()


def _module(package: str, name: str) -> str:
    """``from package import name``: the module it names (``alignjax.eval.run``), else ``package``."""
    path = REPO.joinpath(*package.split("."), name)
    return f"{package}.{name}" if path.with_suffix(".py").is_file() or path.is_dir() else package


def _function_level_imports() -> set[str]:
    found = set()
    for path in sorted((REPO / "alignjax").rglob("*.py")):
        module = ".".join(path.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")
        for fn in ast.walk(ast.parse(path.read_text())):
            if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for node in ast.walk(fn):
                if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("alignjax"):
                    found.update(f"{module}:{fn.name} -> {_module(node.module, a.name)}" for a in node.names)
                elif isinstance(node, ast.Import):
                    found.update(f"{module}:{fn.name} -> {a.name}" for a in node.names if a.name.startswith("alignjax"))
    return found


def test_no_new_function_level_imports_of_alignjax_modules():
    found = _function_level_imports()
    assert not found - KNOWN_FUNCTION_LEVEL, "import these at module top (or fix the layer): " + ", ".join(
        sorted(found - KNOWN_FUNCTION_LEVEL))
    # an entry that is gone must leave the list, so the list only shrinks
    assert not KNOWN_FUNCTION_LEVEL - found, sorted(KNOWN_FUNCTION_LEVEL - found)


def test_import_linter_contract_is_kept():
    lint = Path(sys.executable).with_name("lint-imports")
    r = subprocess.run([str(lint), "--no-cache"], cwd=REPO, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    assert "ignored" not in r.stdout  # no upward import is let through by an ignore_imports entry
