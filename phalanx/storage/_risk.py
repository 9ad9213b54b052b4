"""The Risk actor's durable state in LMDB db ``risk`` (trading state, reservations, day counters).

Keys (values are msgpack):

- ``state`` -> ``{state, reason, at}``: the trading state survives restarts;
- ``res:<reservation_id>`` -> ``{asset, amount, status: held|released, at}``;
  a released record stays as a tombstone, so a replayed ``ReserveFunds`` for
  the same id never holds the funds a second time;
- ``day`` -> ``{day, trades, peak, last}``: the current UTC day's counters;
- ``trade:<day>:<order_req_id>`` -> ``1``: an approved order, counted once;
- ``pnl:<symbol>`` -> ``{quantity, notional, realized, unrealized}``: the last
  ``PnlUpdate`` per symbol, so exposure is known right after a restart.

Every method is one write transaction built from ``*_op`` functions, which
are pure functions of the transaction (the writer may run them twice).
Usage::

    store = RiskStore(system.storage)
    held = store.reserve("saga-1", "USDT", Decimal(100), free=Decimal(1000))
    store.release("saga-1")
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import msgpack

from phalanx.storage._env import Storage, Txn

__all__ = ["ReserveResult", "RiskRecord", "RiskStore"]

ZERO = Decimal(0)
DB = "risk"


def _pack(value: Any) -> bytes:
    packed: bytes = msgpack.packb(value, use_bin_type=True)
    return packed


def _unpack(raw: bytes) -> Any:
    return msgpack.unpackb(raw, raw=False)


@dataclass(frozen=True)
class ReserveResult:
    """What a reserve did: ``held`` new funds, found an ``existing`` id, or was ``short``."""

    outcome: str  # "held" | "existing" | "released" | "short"
    asset: str
    amount: Decimal
    available: Decimal | None  # free - held reservations (None: balance unknown)


@dataclass
class RiskRecord:
    """Everything the Risk actor loads at start."""

    state: str | None = None  # None: never set
    state_reason: str = ""
    day: str = ""
    trades: int = 0
    peak: Decimal | None = None  # today's highest total PnL
    counted: set[str] = field(default_factory=set)
    held: dict[str, tuple[str, Decimal]] = field(default_factory=dict)  # id -> (asset, amount)
    pnl: dict[str, dict[str, Decimal]] = field(default_factory=dict)


class RiskStore:
    """Reservations, trading state, per-day counters and last PnL, in one LMDB db."""

    def __init__(self, storage: Storage) -> None:
        self._storage = storage
        self._db = storage.db(DB)

    # --- reads -------------------------------------------------------------

    def load(self) -> RiskRecord:
        """The whole state (reservations held, today's counted orders, last PnL)."""
        db = self._db

        def op(t: Txn) -> RiskRecord:
            rec = RiskRecord()
            raw = t.get(b"state", db=db)
            if raw is not None:
                s = _unpack(raw)
                rec.state, rec.state_reason = s["state"], s.get("reason", "")
            raw = t.get(b"day", db=db)
            if raw is not None:
                d = _unpack(raw)
                rec.day, rec.trades = d["day"], d["trades"]
                rec.peak = None if d.get("peak") is None else Decimal(d["peak"])
            cursor = t.cursor(db=db)
            if cursor.set_range(b"pnl:"):
                for key, value in cursor:
                    if not key.startswith(b"pnl:"):
                        break
                    p = _unpack(value)
                    rec.pnl[key[4:].decode()] = {k: Decimal(v) for k, v in p.items()}
            if cursor.set_range(b"res:"):
                for key, value in cursor:
                    if not key.startswith(b"res:"):
                        break
                    r = _unpack(value)
                    if r["status"] == "held":
                        rec.held[key[4:].decode()] = (r["asset"], Decimal(r["amount"]))
            prefix = f"trade:{rec.day}:".encode()
            if rec.day and cursor.set_range(prefix):
                for key, _ in cursor:
                    if not key.startswith(prefix):
                        break
                    rec.counted.add(key[len(prefix) :].decode())
            return rec

        return self._storage.read(op)

    def reservation(self, reservation_id: str) -> dict[str, Any] | None:
        """The stored record of one reservation (held or released), or None."""
        key = f"res:{reservation_id}".encode()
        raw = self._storage.read(lambda t: t.get(key, db=self._db))
        return None if raw is None else dict(_unpack(raw))

    # --- op builders ---------------------------------------------------------

    def reserve_op(
        self, reservation_id: str, asset: str, amount: Decimal, free: Decimal | None, at: float
    ) -> Callable[[Txn], ReserveResult]:
        """Hold ``amount`` unless the id exists, or ``free`` minus held is short."""
        db, key, total_key = self._db, f"res:{reservation_id}".encode(), f"held:{asset}".encode()

        def op(t: Txn) -> ReserveResult:
            raw = t.get(key, db=db)
            if raw is not None:
                r = _unpack(raw)
                outcome = "existing" if r["status"] == "held" else "released"
                return ReserveResult(outcome, r["asset"], Decimal(r["amount"]), None)
            raw_total = t.get(total_key, db=db)
            total = ZERO if raw_total is None else Decimal(_unpack(raw_total))
            available = None if free is None else free - total
            if available is not None and amount > available:
                return ReserveResult("short", asset, amount, available)
            record = {"asset": asset, "amount": str(amount), "status": "held", "at": at}
            t.put(key, _pack(record), db=db)
            t.put(total_key, _pack(str(total + amount)), db=db)
            return ReserveResult("held", asset, amount, available)

        return op

    def release_op(self, reservation_id: str, at: float) -> Callable[[Txn], bool]:
        """Mark a held reservation released; False if unknown or already released."""
        db, key = self._db, f"res:{reservation_id}".encode()

        def op(t: Txn) -> bool:
            raw = t.get(key, db=db)
            if raw is None:
                return False
            r = _unpack(raw)
            if r["status"] != "held":
                return False
            total_key = f"held:{r['asset']}".encode()
            raw_total = t.get(total_key, db=db)
            total = ZERO if raw_total is None else Decimal(_unpack(raw_total))
            t.put(total_key, _pack(str(max(ZERO, total - Decimal(r["amount"])))), db=db)
            t.put(key, _pack({**r, "status": "released", "released_at": at}), db=db)
            return True

        return op

    def count_trade_op(self, day: str, order_req_id: str) -> Callable[[Txn], int]:
        """Count an approved order once per day; returns the day's trade count."""
        db, marker = self._db, f"trade:{day}:{order_req_id}".encode()

        def op(t: Txn) -> int:
            d = self._day(t, day)
            if t.put(marker, b"1", db=db, overwrite=False):
                d["trades"] += 1
                t.put(b"day", _pack(d), db=db)
            return int(d["trades"])

        return op

    def day_op(self, day: str, peak: Decimal | None) -> Callable[[Txn], None]:
        """Store today's PnL peak (a new day resets the trade count)."""
        db = self._db

        def op(t: Txn) -> None:
            d = self._day(t, day)
            d["peak"] = None if peak is None else str(peak)
            t.put(b"day", _pack(d), db=db)

        return op

    def _day(self, t: Txn, day: str) -> dict[str, Any]:
        raw = t.get(b"day", db=self._db)
        d = None if raw is None else _unpack(raw)
        if d is None or d["day"] != day:
            d = {"day": day, "trades": 0, "peak": None}
        return dict(d)

    def state_op(self, state: str, reason: str, at: float) -> Callable[[Txn], None]:
        """Persist the trading state."""
        value, db = _pack({"state": state, "reason": reason, "at": at}), self._db

        def op(t: Txn) -> None:
            t.put(b"state", value, db=db)

        return op

    def pnl_op(self, symbol: str, values: dict[str, Decimal]) -> Callable[[Txn], None]:
        """Persist the last PnL figures of one symbol."""
        value = _pack({k: str(v) for k, v in values.items()})
        key, db = f"pnl:{symbol}".encode(), self._db

        def op(t: Txn) -> None:
            t.put(key, value, db=db)

        return op

    # --- writes ----------------------------------------------------------------

    def reserve(
        self, reservation_id: str, asset: str, amount: Decimal, free: Decimal | None, at: float = 0
    ) -> ReserveResult:
        """Commit :meth:`reserve_op` now."""
        return self._storage.write_now(self.reserve_op(reservation_id, asset, amount, free, at))

    def release(self, reservation_id: str, at: float = 0) -> bool:
        """Commit :meth:`release_op` now."""
        return self._storage.write_now(self.release_op(reservation_id, at))

    def count_trade(self, day: str, order_req_id: str) -> int:
        """Commit :meth:`count_trade_op` now."""
        return self._storage.write_now(self.count_trade_op(day, order_req_id))

    def purge_trades_before(self, day: str) -> int:
        """Delete the approved-order markers of days before ``day``; returns how many."""
        db, keep = self._db, f"trade:{day}:".encode()

        def op(t: Txn) -> int:
            cursor, n = t.cursor(db=db), 0
            if not cursor.set_range(b"trade:"):
                return 0
            while cursor.key().startswith(b"trade:"):
                if cursor.key() >= keep:  # ISO days sort by date
                    break
                cursor.delete()  # moves to the next record
                n += 1
            return n

        return int(self._storage.write_now(op))

    def set_state(self, state: str, reason: str, at: float = 0) -> None:
        """Commit :meth:`state_op` now."""
        self._storage.write_now(self.state_op(state, reason, at))

    def save_day(self, day: str, peak: Decimal | None) -> None:
        """Commit :meth:`day_op` now."""
        self._storage.write_now(self.day_op(day, peak))

    def save_pnl(self, symbol: str, values: dict[str, Decimal]) -> None:
        """Queue :meth:`pnl_op` (not awaited: the next update supersedes it)."""
        self._storage.submit(self.pnl_op(symbol, values))
