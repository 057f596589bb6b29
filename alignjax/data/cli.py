"""``alignjax-data <command>``: offline data preparation.

    alignjax-data tokenize         raw documents -> pre-tokenized ArrayRecord shards + manifest
    alignjax-data train-tokenizer  a BPE tokenizer trained on a corpus (small offline configs)
    alignjax-data filter           the AI-discourse blocklist: kept docs, flagged docs, report
    alignjax-data synth            synthetic aligned/misaligned scenario documents

Each command is a function ``cli(argv) -> int`` in the module that does the work.
"""

from __future__ import annotations

import importlib
import sys

from alignjax import config as config_lib

COMMANDS = {
    "tokenize": ("alignjax.data.shards", "raw documents -> pre-tokenized ArrayRecord shards + manifest"),
    "train-tokenizer": ("alignjax.data.tokenizer", "train a BPE tokenizer on a corpus"),
    "filter": ("alignjax.data.blocklist", "split documents by the AI-discourse blocklist, with a report"),
    "synth": ("alignjax.data.synth", "generate synthetic aligned/misaligned scenario documents"),
}


def main(argv: list[str] | None = None) -> int:
    config_lib.setup_logging()
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__.strip())
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        config_lib.cli_error("alignjax-data", f"unknown command {name!r}; valid: {', '.join(COMMANDS)}")
    # On use, not at the top: every command at once (grain, so jax) makes --help 3.5 s instead of 0.2 s.
    module = importlib.import_module(COMMANDS[name][0])
    fn = module.cli if name != "train-tokenizer" else module.cli_train
    return fn(rest)


if __name__ == "__main__":
    raise SystemExit(main())
