"""The ``phalanx`` command line (argparse).

Exit codes (DESIGN section 10): 0 ok, 1 runtime failure, 2 bad usage or bad
config, 3 cannot reach the node.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from phalanx.cli import _chaos, _ctl, _dlq, _logs, _replay, _run, _shell, _venue
from phalanx.errors import ConfigError, PhalanxError

__all__ = ["EXIT_NO_NODE", "EXIT_OK", "EXIT_RUNTIME", "EXIT_USAGE", "build_parser", "main"]

EXIT_OK = 0
EXIT_RUNTIME = 1
EXIT_USAGE = 2
EXIT_NO_NODE = 3


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser, with one subparser per command."""
    parser = argparse.ArgumentParser(
        prog="phalanx", description="Supervised actor runtime for trading systems."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _run.add_parser(sub)
    _dlq.add_parser(sub)
    _venue.add_parser(sub)
    _logs.add_parser(sub)
    _ctl.add_parser(sub)
    _shell.add_parser(sub)
    _replay.add_parser(sub)
    _chaos.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the process exit code."""
    parser = build_parser()
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
