"""Replay's read of ``VAR/state.lmdb``: the records and the derived state, decoded.

``load`` opens the state readonly; ``_read_state`` reads every db in one read
transaction, so a live node's writes never give a torn view. A record that does not decode or
has the wrong shape becomes an error line naming its db and key
(:class:`Loaded` ``errors``), and the others are still read: the order
records, ledger transactions and saga journal go to
:class:`~phalanx.actors._replay_model.ReplaySources`, the positions, their
fill markers, balances and saga snapshots to
:class:`~phalanx.actors._replay_model.LiveState`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Any

import msgpack

from phalanx.actors._position_model import PositionState
from phalanx.actors._replay_model import LiveState, ReplaySources
from phalanx.errors import StorageError
from phalanx.storage import Storage

__all__ = ["Loaded"]

_DBS = ("idempotency", "positions", "ledger", "ledger_balances", "journal",
        "journal_snapshots", "reconcile")  # fmt: skip
_TRADING = ("idempotency", "ledger", "journal_snapshots", "positions")


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
