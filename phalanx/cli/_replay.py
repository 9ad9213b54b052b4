"""``phalanx replay --var-dir D [--json]``: rebuild from the records and logs, diff the live state.

The I/O edge of :mod:`phalanx.actors._replay`: it opens ``VAR/state.lmdb``
readonly (one read transaction, so a live node's writes never give a torn
view), reads the ``order`` and ``decision`` logs (``*.jsonl`` and their
rotated ``.gz`` files), and prints the verdict. Exit 0 on a match, 1 on a
difference or an unreadable record (each named on its own line), 2 when
there is no var dir or no trading state. A live node (``node.lock`` held) is
said so on stderr: replay still runs, but in-flight work may show as a
difference.

Log lines written before this state's epoch (the first ledger opening, in
db ``reconcile``) belong to an earlier ``state.lmdb`` (``phalanx run`` moves
it aside on the embedded venue) and are skipped.
"""

from __future__ import annotations

import argparse
import fcntl
import gzip
import json
import os
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgpack

from phalanx.actors._position_model import PositionState
from phalanx.actors._replay import LiveState, ReplayReport, ReplaySources, replay
from phalanx.actors._trade_sagas import register_trade_sagas
from phalanx.cli._state import open_state, state_path
from phalanx.errors import ConfigError, StorageError
from phalanx.storage import Storage

__all__ = ["add_parser", "load"]

_DBS = ("idempotency", "positions", "ledger", "ledger_balances", "journal",
        "journal_snapshots", "reconcile")  # fmt: skip
_INF = float("inf")
_TRADING = ("idempotency", "ledger", "journal_snapshots", "positions")


def add_parser(sub: Any) -> None:
    """Register ``replay``."""
    p = sub.add_parser(
        "replay", help="rebuild positions, ledger and sagas from the records and logs; diff"
    )
    p.add_argument("--var-dir", default="./var", help="the node's var dir (default ./var)")
    p.add_argument("--json", action="store_true", help="print a JSON report")
    p.set_defaults(func=_main)


@dataclass
class Loaded:
    """What :func:`load` read: the sources, the live state, unreadable records, notes."""

    sources: ReplaySources
    live: LiveState
    errors: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _unpack(raw: bytes) -> Any:
    return msgpack.unpackb(bytes(raw), raw=False)


class _Reader:
    """Decodes one db's records, turning a bad one into an error line that names it."""

    def __init__(self, errors: list[str]) -> None:
        self.errors = errors

    def each(self, txn: Any, handle: Any, db: str) -> Iterator[tuple[str, Any]]:
        if handle is None:
            return
        for key, raw in txn.cursor(db=handle):
            # journal keys end in a big-endian u64 seq: only the saga id is text.
            text = bytes(key)[:-9] if db == "journal" and len(key) > 9 else bytes(key)
            name = text.decode("utf-8", "backslashreplace")
            try:
                yield name, _unpack(raw)
            except Exception as exc:  # msgpack raises several unrelated types
                self.errors.append(f"{db} record {name!r} cannot be decoded: {exc}")


def _read_state(storage: Storage, errors: list[str]) -> dict[str, Any]:
    handles: dict[str, Any] = {}
    for name in _DBS:
        try:
            handles[name] = storage.db(name)
        except StorageError:
            handles[name] = None  # never written on this node
    reader = _Reader(errors)

    def op(txn: Any) -> dict[str, Any]:
        return {name: list(reader.each(txn, handles[name], name)) for name in _DBS}

    out = storage.read(op)
    out["_present"] = {name for name in _DBS if handles[name] is not None}
    return out


def _dec(value: Any, what: str) -> Decimal:
    try:
        return Decimal(value.decode() if isinstance(value, bytes) else str(value))
    except ArithmeticError:
        raise ValueError(f"{what}: {value!r} is not a number") from None


def _positions(
    rows: list[tuple[str, Any]], errors: list[str]
) -> tuple[dict[str, PositionState], dict[str, frozenset[str]], dict[tuple[str, str], float]]:
    """Db ``positions``: states, applied trade ids per symbol, when each was applied."""
    states: dict[str, PositionState] = {}
    fills: dict[str, set[str]] = {}
    applied_at: dict[tuple[str, str], float] = {}
    for key, value in rows:
        try:
            if key.startswith("pos:"):
                symbol = key[4:]
                states[symbol] = PositionState(
                    symbol, **{n: _dec(value[n], f"positions {key!r} {n}") for n in
                               ("quantity", "average_entry", "realized_pnl", "fees")},
                    fills=int(value["fills"]),
                )  # fmt: skip
            elif key.startswith("fill:"):
                symbol, _, trade_id = key[5:].partition("\x00")
                fills.setdefault(symbol, set()).add(trade_id)
                applied_at[(symbol, trade_id)] = float(value.get("at") or 0.0)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            errors.append(f"positions record {key!r} is malformed: {exc}")
    return states, {s: frozenset(t) for s, t in fills.items()}, applied_at


def _balances(rows: list[tuple[str, Any]], errors: list[str]) -> dict[str, tuple[Decimal, Decimal]]:
    """Db ``ledger_balances``: ``{account: (value, quantity)}``."""
    out: dict[str, tuple[Decimal, Decimal]] = {}
    for key, value in rows:
        what = f"ledger_balances {key!r}"
        try:
            v, q = value
            out[key] = (_dec(v, what), _dec(q, what))
        except (TypeError, ValueError) as exc:
            errors.append(f"ledger_balances record {key!r} is malformed: {exc}")
    return out


def _dicts(
    rows: list[tuple[str, Any]], errors: list[str], what: str, *required: str
) -> dict[str, dict[str, Any]]:
    """The records that are maps holding ``required`` keys; the others are errors."""
    out = {}
    for key, value in rows:
        if isinstance(value, dict) and all(k in value for k in required):
            out[key] = value
        else:
            errors.append(f"{what} record {key!r} is malformed: {value!r:.80}")
    return out


def _split(raw: Mapping[str, list[tuple[str, Any]]], loaded: Loaded) -> None:
    errors = loaded.errors
    journal: dict[str, list[Mapping[str, Any]]] = {}
    for key, value in raw["journal"]:  # several records per saga: not a dict by key
        if isinstance(value, dict):
            journal.setdefault(key, []).append(value)
        else:
            errors.append(f"journal record of saga {key!r} is malformed: {value!r:.80}")
    positions, position_fills, applied_at = _positions(raw["positions"], errors)
    loaded.sources = replace(
        loaded.sources, journal=journal, applied_at=applied_at,
        records=_dicts(raw["idempotency"], errors, "idempotency", "symbol", "side"),
        ledger_txns=_dicts(raw["ledger"], errors, "ledger", "postings"),
    )  # fmt: skip
    loaded.live = LiveState(
        positions=positions, position_fills=position_fills,
        balances=_balances(raw["ledger_balances"], errors),
        snapshots=_dicts(raw["journal_snapshots"], errors, "journal_snapshots", "status"),
    )  # fmt: skip


def _log_files(log_dir: Path, taxonomy: str) -> list[Path]:
    if not log_dir.is_dir():
        return []
    return sorted(p for p in log_dir.glob(f"{taxonomy}.jsonl*") if not p.name.endswith(".part"))


def _lines(path: Path, errors: list[str]) -> Iterator[tuple[int, dict[str, Any]]]:
    opener: Any = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt", encoding="utf-8") as fh:
            for n, text in enumerate(fh, 1):
                if not text.strip():
                    continue
                try:
                    line = json.loads(text)
                except json.JSONDecodeError as exc:
                    errors.append(f"log {path.name} line {n} is not JSON: {exc.msg}")
                    continue
                if isinstance(line, dict):
                    yield n, line
                else:
                    errors.append(f"log {path.name} line {n} is not a JSON object")
    except (OSError, EOFError, UnicodeDecodeError) as exc:
        errors.append(f"log {path.name} cannot be read: {exc}")


def _ts(line: Mapping[str, Any]) -> float | None:
    try:
        return datetime.fromisoformat(str(line["ts"]).replace("Z", "+00:00")).timestamp()
    except (KeyError, ValueError):
        return None


def _read_logs(var_dir: Path, epoch: float | None, loaded: Loaded) -> None:
    log_dir = var_dir / "logs"
    fills: list[dict[str, Any]] = []
    kinds: dict[str, str] = {}
    skipped = 0
    since: float | None = None  # the oldest order line: what retention left
    order_files = _log_files(log_dir, "order")
    for taxonomy, event in (("order", "order_fill"), ("decision", "saga_started")):
        for path in order_files if taxonomy == "order" else _log_files(log_dir, taxonomy):
            for _, line in _lines(path, loaded.errors):
                ts = _ts(line)
                if taxonomy == "order" and ts is not None:
                    since = ts if since is None else min(since, ts)
                if line.get("event") != event:
                    continue
                if epoch is not None and ts is not None and ts < epoch:
                    skipped += 1
                    continue
                if event == "order_fill":
                    fills.append(line)
                elif line.get("saga_id") and line.get("saga_kind"):
                    kinds[str(line["saga_id"])] = str(line["saga_kind"])
    if skipped:
        loaded.notes.append(f"{skipped} log lines older than this state (an earlier run) skipped")
    loaded.sources = replace(
        loaded.sources, log_fills=fills, saga_kinds=kinds,
        log_since=None if not order_files else (since if since is not None else _INF),
    )  # fmt: skip


def _epoch(raw: Mapping[str, list[tuple[str, Any]]]) -> float | None:
    ats = [
        float(v["at"])
        for k, v in raw["reconcile"]
        if k.startswith("opening:") and isinstance(v, dict) and "at" in v
    ]
    # The opening's marker is written just after the opening is posted; a second of
    # slack keeps the lines of that same boot.
    return min(ats) - 1.0 if ats else None


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
