"""The command line of every alignjax command: one convention, ml_collections' ``config_flags``.

    --config=<path.py>[:<arg>]   a config file's get_config(arg) (commands that take a config)
    --config.<a.b>=<value>       one field of it, typed by the default's field (config.apply_override)
    --workdir=<dir>              the run directory
    --<name>=<value>, --<name> <value>   the command's own flags
    --<flag>                     a boolean flag: true (``--<flag>=false`` turns it off); ``-`` = ``_``
    -h, --help                   the command's usage, exit 0

Errors are one line, ``<command>: error: <message>``, exit 2. Commands that take a config read
argv with read_flags() (config.parse_args); the others are argparse programs built on Parser.
The stdlib only: config.py sits on top of this module.
"""

from __future__ import annotations

import argparse
import sys


class ConfigError(Exception):
    """A flag, config file, field or value is wrong. The message is one line for the user."""


def cli_error(command: str, message: str, code: int = 2):
    print(f"{command}: error: {message}", file=sys.stderr)
    raise SystemExit(code)


class Parser(argparse.ArgumentParser):
    """argparse whose errors are one line and exit 2 (no usage block): every argparse command's
    parser. Flags are exact (no abbreviations, as read_flags), and an unknown one is named before
    any missing required one."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, allow_abbrev=False, **kwargs)

    def error(self, message):
        cli_error(self.prog, message)

    def parse_args(self, args=None, namespace=None):
        args = sys.argv[1:] if args is None else list(args)
        own = args[:args.index("--")] if "--" in args else args
        known = [s for a in self._actions for s in a.option_strings if s.startswith("--")]
        unknown = [a.partition("=")[0] for a in own if a.startswith("--") and a.partition("=")[0] not in known]
        if unknown:  # read_flags' words
            self.error(f"unknown flag {unknown[0]} (valid: {', '.join(known)})")
        return super().parse_args(args, namespace)


def parse_bool(name: str, text: str) -> bool:
    """``--<name>=<text>`` as a bool (true/1/yes, false/0/no)."""
    low = text.lower()
    if low in ("true", "1", "yes"):
        return True
    if low in ("false", "0", "no"):
        return False
    raise ConfigError(f"--{name}={text}: expected a bool (true/false)")


def read_flags(argv: list[str], flags: dict[str, object], bools: tuple[str, ...] = (),
               usage: str = "") -> tuple[dict, str | None, list[tuple[str, str]]]:
    """Read ``argv`` of a config command: ``flags`` (name -> default; values come as strings),
    ``bools`` (name -> True/False, default False). Returns (flags, the --config spec or None,
    [(dotted field, value text)] of the --config.<field> overrides, in order). ``-h``/``--help``
    prints ``usage`` and exits 0."""
    if any(a in ("-h", "--help") for a in argv):
        print(usage.strip())
        raise SystemExit(0)
    out = {**flags, **{b: False for b in bools}}
    spec, overrides, i = None, [], 0
    while i < len(argv):
        arg, i = argv[i], i + 1
        if not arg.startswith("--") or arg == "--":
            raise ConfigError(f"unexpected argument {arg!r} (flags are --name=value)")
        name, eq, value = arg[2:].partition("=")
        if not name.startswith("config."):
            name = name.replace("-", "_")
        if name in bools:
            out[name] = parse_bool(name, value) if eq else True
            continue
        if name != "config" and not name.startswith("config.") and name not in flags:
            raise ConfigError(f"unknown flag --{name} (valid: --config, --config.<field>, "
                              + ", ".join(f"--{f}" for f in (*flags, *bools)) + ")")
        if not eq:  # --name value
            if i == len(argv) or argv[i].startswith("--"):
                raise ConfigError(f"--{name} needs a value (--{name}=<value>)")
            value, i = argv[i], i + 1
        if name == "config":
            spec = value
        elif name.startswith("config."):
            overrides.append((name[len("config."):], value))
        else:
            out[name] = value
    return out, spec, overrides
