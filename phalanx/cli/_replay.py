"""``phalanx replay --var-dir D [--json]``: rebuild from the records and logs, diff the live state.

The I/O edge of :mod:`phalanx.actors._replay`: :func:`load` reads
``VAR/state.lmdb`` (``_replay_db.py``) and the ``order`` and ``decision``
logs (``_replay_logs.py``), and the command prints the verdict. Exit 0 on a
match, 1 on a difference or an unreadable record (each named on its own
line), 2 when there is no var dir or no trading state. A live node
(``node.lock`` held) is said so on stderr: replay still runs, but in-flight
work may show as a difference.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import sys
from pathlib import Path
from typing import Any

from phalanx.actors._replay import replay
from phalanx.actors._replay_model import LiveState, ReplayReport, ReplaySources
from phalanx.actors._trade_sagas import register_trade_sagas
from phalanx.cli._replay_db import _TRADING, Loaded, _read_state, _split
from phalanx.cli._replay_logs import _epoch, _read_logs
from phalanx.cli._state import open_state, state_path
from phalanx.errors import ConfigError

__all__ = ["add_parser", "load"]


def add_parser(sub: Any) -> None:
    """Register ``replay``."""
    p = sub.add_parser(
        "replay", help="rebuild positions, ledger and sagas from the records and logs; diff"
    )
    p.add_argument("--var-dir", default="./var", help="the node's var dir (default ./var)")
    p.add_argument("--json", action="store_true", help="print a JSON report")
    p.set_defaults(func=_main)


def _node_live(var_dir: Path) -> bool:
    try:
        fd = os.open(var_dir / "node.lock", os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)
    return False


def load(var_dir: Path) -> Loaded:
    """Read everything replay needs from ``var_dir``; :class:`ConfigError` if there is no state."""
    path = state_path(var_dir)
    loaded = Loaded(ReplaySources(), LiveState())
    with open_state(var_dir, readonly=True) as storage:  # unreadable: StorageError, exit 1
        raw = _read_state(storage, loaded.errors)
    if not raw.pop("_present") & set(_TRADING):
        raise ConfigError(f"no trading state in {str(path)!r} (no orders, ledger or sagas yet)")
    _split(raw, loaded)
    _read_logs(var_dir, _epoch(raw), loaded)
    return loaded


def _print(report: ReplayReport, loaded: Loaded, as_json: bool) -> None:
    counts = f"{report.fills} fills, {report.sagas} sagas, {report.positions} positions"
    if report.pruned_sagas:
        counts += f"; {report.pruned_sagas} sagas pruned by retention, outcome from the snapshot"
    if as_json:
        out = {**report.to_dict(), "errors": loaded.errors}
        out["match"] = report.match and not loaded.errors
        out["notes"] = [*loaded.notes, *report.notes]
        print(json.dumps(out, indent=2, sort_keys=True))
        return
    for error in loaded.errors:
        print(f"phalanx replay: error: {error}", file=sys.stderr)
    for note in (*loaded.notes, *report.notes):
        print(f"replay: note: {note}")
    if report.match and not loaded.errors:
        print(f"replay: match ({counts})")
        return
    n = len(report.differences)
    print(f"replay: MISMATCH ({n} difference{'s' if n != 1 else ''}, "
          f"{len(loaded.errors)} unreadable; {counts})")  # fmt: skip
    width = min(60, max((len(d.what) for d in report.differences), default=0))
    for d in report.differences:
        area = f"[{d.area}]"
        print(f"  {area:<11} {d.what:<{width}}  expected {d.expected}; found {d.found}")


def _main(args: argparse.Namespace) -> int:
    var_dir = Path(args.var_dir)
    loaded = load(var_dir)
    if _node_live(var_dir):
        print(f"phalanx replay: note: a node is running on {str(var_dir)!r}; its state may "
              "move while replay reads it (in-flight work can show as a difference)",
              file=sys.stderr)  # fmt: skip
    register_trade_sagas()  # the kinds a trading node journals
    try:
        report = replay(loaded.sources, loaded.live)
    except Exception as exc:  # a record shaped in a way no check above foresaw
        print(f"phalanx replay: error: cannot replay: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    _print(report, loaded, args.json)
    return 0 if report.match and not loaded.errors else 1
