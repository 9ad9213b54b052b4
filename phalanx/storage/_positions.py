"""Positions in LMDB db ``positions``: the model state and the applied trade ids, together.

Keys (values are msgpack):

- ``pos:<symbol>`` -> ``{quantity, average_entry, realized_pnl, fees, fills}``
  (a :class:`~phalanx.actors._position_model.PositionState`);
- ``fill:<symbol>\\x00<trade_id>`` -> ``{side, amount, price, fee, at}``: the
  fill's idempotency marker, kept with what was applied (for replay/diff):
  ``amount`` net of a fee paid in the base asset and ``fee`` valued in the
  quote (:func:`~phalanx.actors._position_terms.position_terms`), so for a buy on
  Binance without BNB ``amount`` is what the venue credited, not the trade quantity.

Invariant: the marker and the new state commit in ONE transaction, inside
which the state is read and the fill applied; so a replayed fill, a restart,
or the op running twice never counts a fill twice. Usage::

    store = PositionStore(system.storage)
    applied, state = store.apply_fill("BTC/USDT", "t-1", "buy", Decimal(1), Decimal(100), ZERO)
    assert store.load("BTC/USDT") == state
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Literal

import msgpack

from phalanx.storage._env import Storage, Txn

# The model is imported where it is used: storage sits below the actors
# package, and a module-level import would run phalanx.actors' __init__, which
# imports this module back (a circular import when this module comes first).
if TYPE_CHECKING:
    from phalanx.actors._position_model import PositionState

__all__ = ["PositionStore"]

DB = "positions"


def _state_key(symbol: str) -> bytes:
    return f"pos:{symbol}".encode()


def _fill_key(symbol: str, trade_id: str) -> bytes:
    return f"fill:{symbol}\x00{trade_id}".encode()


def _encode(state: PositionState) -> bytes:
    return msgpack.packb(  # type: ignore[no-any-return]
        {
            "quantity": str(state.quantity),
            "average_entry": str(state.average_entry),
            "realized_pnl": str(state.realized_pnl),
            "fees": str(state.fees),
            "fills": state.fills,
        },
        use_bin_type=True,
    )


def _decode(symbol: str, raw: bytes | None) -> PositionState:
    from phalanx.actors._position_model import PositionState  # noqa: PLC0415

    if raw is None:
        return PositionState(symbol)
    d: dict[str, Any] = msgpack.unpackb(raw, raw=False)
    return PositionState(
        symbol,
        quantity=Decimal(d["quantity"]),
        average_entry=Decimal(d["average_entry"]),
        realized_pnl=Decimal(d["realized_pnl"]),
        fees=Decimal(d["fees"]),
        fills=int(d["fills"]),
    )


class PositionStore:
    """Durable position state per symbol, idempotent by trade id."""

    def __init__(self, storage: Storage) -> None:
        self._storage = storage
        self._db = storage.db(DB)

    def load(self, symbol: str) -> PositionState:
        """The stored position of ``symbol`` (flat if none)."""
        key = _state_key(symbol)
        return self._storage.read(lambda t: _decode(symbol, t.get(key, db=self._db)))

    def symbols(self) -> list[str]:
        """Every symbol with a stored position."""

        def op(t: Txn) -> list[str]:
            out = []
            cursor = t.cursor(db=self._db)
            if cursor.set_range(b"pos:"):
                for key in cursor.iternext(keys=True, values=False):
                    if not key.startswith(b"pos:"):
                        break
                    out.append(key[4:].decode())
            return out

        return self._storage.read(op)

    def applied(self, symbol: str, trade_id: str) -> bool:
        """True once a fill with ``trade_id`` was applied to ``symbol``."""
        key = _fill_key(symbol, trade_id)
        return self._storage.read(lambda t: t.get(key, db=self._db) is not None)

    def fills(self, symbol: str) -> dict[str, dict[str, Any]]:
        """``{trade_id: {side, amount, price, fee, at}}`` applied to ``symbol``."""
        prefix = f"fill:{symbol}\x00".encode()

        def op(t: Txn) -> dict[str, dict[str, Any]]:
            out: dict[str, dict[str, Any]] = {}
            cursor = t.cursor(db=self._db)
            if cursor.set_range(prefix):
                for key, value in cursor:
                    if not key.startswith(prefix):
                        break
                    out[key[len(prefix) :].decode()] = msgpack.unpackb(value, raw=False)
            return out

        return self._storage.read(op)

    def apply_fill_op(
        self,
        symbol: str,
        trade_id: str,
        side: Literal["buy", "sell"],
        quantity: Decimal,
        price: Decimal,
        fee: Decimal,
        at: float = 0.0,
    ) -> Callable[[Txn], tuple[bool, PositionState]]:
        """The op: ``(True, new state)`` if applied now, ``(False, state)`` for a replay."""
        db, marker, key = self._db, _fill_key(symbol, trade_id), _state_key(symbol)
        record = msgpack.packb(
            {"side": side, "amount": str(quantity), "price": str(price), "fee": str(fee), "at": at},
            use_bin_type=True,
        )

        from phalanx.actors._position_model import apply_fill  # noqa: PLC0415

        def op(t: Txn) -> tuple[bool, PositionState]:
            state = _decode(symbol, t.get(key, db=db))
            if not t.put(marker, record, db=db, overwrite=False):
                return False, state
            new = apply_fill(state, side, quantity, price, fee)
            t.put(key, _encode(new), db=db)
            return True, new

        return op

    def apply_fill(
        self,
        symbol: str,
        trade_id: str,
        side: Literal["buy", "sell"],
        quantity: Decimal,
        price: Decimal,
        fee: Decimal,
        at: float = 0.0,
    ) -> tuple[bool, PositionState]:
        """Commit :meth:`apply_fill_op` now (durable when the storage syncs)."""
        return self._storage.write_now(
            self.apply_fill_op(symbol, trade_id, side, quantity, price, fee, at)
        )
