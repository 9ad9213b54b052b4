"""The ``phalanx`` command line (argparse).

Exit codes (DESIGN section 10): 0 ok, 1 runtime failure, 2 bad usage or bad
config, 3 cannot reach the node.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from phalanx.errors import ConfigError, PhalanxError

__all__ = ["EXIT_NO_NODE", "EXIT_OK", "EXIT_RUNTIME", "EXIT_USAGE", "build_parser", "main"]

EXIT_OK = 0
EXIT_RUNTIME = 1
EXIT_USAGE = 2
EXIT_NO_NODE = 3


# Subcommand -> module, in help order. A module is imported only when its command
# runs (or for the full help): `phalanx ctl` must not pay for ccxt and the trading
# actors (measured: `import phalanx.cli` with every module 1.5 s, most of it ccxt
# and phalanx.testing; ctl alone needs the control client and rich).
_COMMANDS: dict[str, str] = {
    "run": "_run",
    "dlq": "_dlq",
    "journal": "_journal",
    "venue": "_venue",
    "logs": "_logs",
    "ctl": "_ctl",
    "shell": "_shell",
    "replay": "_replay",
    "chaos": "_chaos",
}


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The argument parser: every subcommand, or just ``only`` (it imports what it names)."""
    parser = argparse.ArgumentParser(
        prog="phalanx", description="Supervised actor runtime for trading systems."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, module in _COMMANDS.items():
        if only is None or name == only:
            importlib.import_module(f"phalanx.cli.{module}").add_parser(sub)
    return parser


def _command_of(argv: Sequence[str]) -> str | None:
    first = next((a for a in argv if not a.startswith("-")), None)
    return first if first in _COMMANDS else None


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the process exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(_command_of(argv))
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse already printed a usage message
        return int(exc.code) if isinstance(exc.code, int) else EXIT_USAGE
    try:
        code: int = args.func(args)
        return code
    except ConfigError as exc:
        print(f"phalanx: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except PhalanxError as exc:
        print(f"phalanx: error: {exc}", file=sys.stderr)
        return EXIT_RUNTIME
    except KeyboardInterrupt:
        return EXIT_RUNTIME
