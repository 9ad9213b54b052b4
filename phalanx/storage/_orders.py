"""The idempotency store and order events in LMDB (DESIGN 5 and 6).

``idempotency``: ``order_req_id`` -> the order's record (msgpack), written
with ``put(overwrite=False)`` BEFORE anything is sent, so two incarnations or
two actors for one intent can never both believe they placed it.
``order_events``: ``order_req_id \\x00 <8-byte big-endian seq>`` -> one record
per change (append-only; the audit trail of one order).
``order_index``: ``exchange \\x00 symbol \\x00 exchange_order_id`` -> ``order_req_id``
(venue ids are unique per symbol), so "whose order is this?" is a lookup.

Every write is an op (a pure function of the write transaction) built by an
``*_op`` function, so a caller can commit it together with its own writes;
the :class:`OrderStore` methods run them through ``Storage.write_now``.
Invariant: a record and the event describing its change commit together.
The record, its codec and its decode memo live in ``_order_record``: an
update's read-modify-write gets back the very record it last wrote when the
stored bytes are still the ones it packed (no decode on the hot path).
"""

from __future__ import annotations

import builtins
import struct
import time
from collections.abc import Callable, Iterable
from typing import Any

import msgpack

from phalanx.protocols.trading import OrderFill, OrderStatus
from phalanx.storage._env import Storage, Txn
from phalanx.storage._order_record import (
    TERMINAL_STATUSES,
    OrderRecord,
    add_fills,
    decode,
    encode,
    evolve,
)

__all__ = [
    "TERMINAL_STATUSES",
    "OrderRecord",
    "OrderStore",
    "add_fills",
    "evolve",
    "record_fills_op",
    "register_op",
    "update_op",
]

IDEMPOTENCY, EVENTS, INDEX = "idempotency", "order_events", "order_index"
_SEQ = struct.Struct(">Q")


def _event_key(order_req_id: str, seq: int) -> bytes:
    return order_req_id.encode() + b"\x00" + _SEQ.pack(seq)


def _put_event(
    txn: Txn, events: Any, record: OrderRecord, kind: str, detail: dict[str, Any]
) -> None:
    entry = {
        "seq": record.version,
        "at": record.updated_at,
        "kind": kind,
        "status": record.status,
        "generation": record.generation,
        "client_order_id": record.client_order_id,
        "exchange_order_id": record.exchange_order_id,
        "filled": str(record.filled),
        **detail,
    }
    key = _event_key(record.order_req_id, record.version)
    txn.put(key, msgpack.packb(entry, use_bin_type=True, default=str), db=events)


def _index_key(exchange: str, symbol: str, exchange_order_id: str) -> bytes:
    # Binance order ids are unique per symbol, so the symbol scopes them.
    return f"{exchange}\x00{symbol}\x00{exchange_order_id}".encode()


def _dbs(storage: Storage) -> tuple[Any, Any, Any]:
    return storage.db(IDEMPOTENCY), storage.db(EVENTS), storage.db(INDEX)


def _put(
    txn: Txn,
    dbs: tuple[Any, Any, Any],
    record: OrderRecord,
    kind: str,
    detail: dict[str, Any],
    *,
    record_written: bool = False,
) -> None:
    """The record, its event and its exchange-id index entry, in the caller's txn."""
    if not record_written:
        key = record.order_req_id.encode()
        txn.put(key, encode(key, record), db=dbs[0])
    _put_event(txn, dbs[1], record, kind, detail)
    if record.exchange_order_id:
        key = _index_key(record.exchange, record.symbol, record.exchange_order_id)
        txn.put(key, record.order_req_id.encode(), db=dbs[2])


def register_op(
    storage: Storage, record: OrderRecord, kind: str = "registered"
) -> Callable[[Txn], bool]:
    """Check-and-insert: True if ``record`` was written, False if one existed already."""
    dbs = _dbs(storage)
    key = record.order_req_id.encode()

    def op(txn: Txn) -> bool:
        if not txn.put(key, encode(key, record), db=dbs[0], overwrite=False):
            return False  # the first registration wins; nothing else is written
        _put(txn, dbs, record, kind, {}, record_written=True)
        return True

    return op


def update_op(
    storage: Storage,
    order_req_id: str,
    change: Callable[[OrderRecord], OrderRecord],
    kind: str,
    *,
    clock: Callable[[], float] = time.time,
    detail: dict[str, Any] | None = None,
) -> Callable[[Txn], OrderRecord]:
    """Read-modify-write: apply ``change`` to the stored record, journal ``kind``.

    Raises ``KeyError`` if there is no record (update never creates one).
    """
    dbs = _dbs(storage)
    key = order_req_id.encode()

    def op(txn: Txn) -> OrderRecord:
        current = decode(key, txn.get(key, db=dbs[0]))
        if current is None:
            raise KeyError(f"no idempotency record for order {order_req_id!r}")
        new = evolve(change(current), version=current.version + 1, updated_at=clock())
        _put(txn, dbs, new, kind, detail or {})
        return new

    return op


def record_fills_op(
    storage: Storage,
    order_req_id: str,
    fills: Iterable[OrderFill],
    *,
    clock: Callable[[], float] = time.time,
) -> Callable[[Txn], tuple[OrderRecord, list[OrderFill]]]:
    """Journal the new fills (deduplicated by trade id); returns (record, new fills)."""
    batch = list(fills)
    dbs = _dbs(storage)
    key = order_req_id.encode()

    def op(txn: Txn) -> tuple[OrderRecord, list[OrderFill]]:
        current = decode(key, txn.get(key, db=dbs[0]))
        if current is None:
            raise KeyError(f"no idempotency record for order {order_req_id!r}")
        new = [
            f for f in {f.trade_id: f for f in batch}.values() if f.trade_id not in current.fills
        ]
        if not new:
            return current, []
        record = evolve(add_fills(current, new), version=current.version + 1, updated_at=clock())
        _put(txn, dbs, record, "fills", {"trade_ids": [f.trade_id for f in new]})
        return record, new

    return op


class OrderStore:
    """Idempotency records and order events over one node's :class:`Storage`."""

    def __init__(self, storage: Storage, *, clock: Callable[[], float] = time.time) -> None:
        self.storage = storage
        self.clock = clock
        self._records = storage.db(IDEMPOTENCY)
        self._events = storage.db(EVENTS)
        self._index = storage.db(INDEX)

    def register(self, record: OrderRecord) -> bool:
        """Insert ``record`` unless one exists for its ``order_req_id`` (True if inserted)."""
        return bool(self.storage.write_now(register_op(self.storage, record)))

    def update(
        self,
        order_req_id: str,
        change: Callable[[OrderRecord], OrderRecord],
        kind: str,
        **detail: Any,
    ) -> OrderRecord:
        """Apply ``change`` atomically and journal it as ``kind``; the new record."""
        op = update_op(self.storage, order_req_id, change, kind, clock=self.clock, detail=detail)
        return self.storage.write_now(op)

    def update_after(
        self,
        first: Callable[[Txn], object],
        order_req_id: str,
        change: Callable[[OrderRecord], OrderRecord],
        kind: str,
        **detail: Any,
    ) -> OrderRecord:
        """Run the write op ``first``, then :meth:`update`, in ONE transaction.

        Both commit or neither does; an exception ``first`` raises propagates
        and nothing of the update is written. For a caller whose own write must
        commit together with the change it journals (a fill sink's posting and
        the fill's sunk marker).
        """
        op = update_op(self.storage, order_req_id, change, kind, clock=self.clock, detail=detail)

        def both(txn: Txn) -> OrderRecord:
            first(txn)
            return op(txn)

        return self.storage.write_now(both)

    def record_fills(
        self, order_req_id: str, fills: Iterable[OrderFill]
    ) -> tuple[OrderRecord, list[OrderFill]]:
        """Journal the fills not seen before (by trade id); (record, the new ones)."""
        return self.storage.write_now(
            record_fills_op(self.storage, order_req_id, fills, clock=self.clock)
        )

    def get(self, order_req_id: str) -> OrderRecord | None:
        """The record of ``order_req_id``, or None."""
        key, db = order_req_id.encode(), self._records
        return self.storage.read(lambda txn: decode(key, txn.get(key, db=db)))

    def by_exchange_id(
        self, exchange: str, symbol: str, exchange_order_id: str
    ) -> OrderRecord | None:
        """The record holding venue order ``exchange_order_id`` (an index, not a scan)."""
        key, index, records = (
            _index_key(exchange, symbol, exchange_order_id),
            self._index,
            self._records,
        )

        def op(txn: Txn) -> OrderRecord | None:
            owner = txn.get(key, db=index)
            return None if owner is None else decode(owner, txn.get(owner, db=records))

        return self.storage.read(op)

    def list(
        self, status: OrderStatus | None = None, *, non_terminal: bool = False
    ) -> list[OrderRecord]:
        """Every record (by ``order_req_id``), filtered by status or by not-terminal."""
        db = self._records

        def op(txn: Txn) -> list[OrderRecord]:
            out = []
            for key, raw in txn.cursor(db=db):
                record = decode(key, raw)
                assert record is not None
                if status is not None and record.status != status:
                    continue
                if non_terminal and record.terminal:
                    continue
                out.append(record)
            return out

        return self.storage.read(op)

    def events(self, order_req_id: str) -> builtins.list[dict[str, Any]]:
        """The journaled changes of one order, oldest first."""
        prefix, db = order_req_id.encode() + b"\x00", self._events

        def op(txn: Txn) -> builtins.list[dict[str, Any]]:
            out: builtins.list[dict[str, Any]] = []
            cursor = txn.cursor(db=db)
            if not cursor.set_range(prefix):
                return out
            for key, raw in cursor:
                if not bytes(key).startswith(prefix):
                    break
                out.append(msgpack.unpackb(bytes(raw), raw=False))
            return out

        return self.storage.read(op)
