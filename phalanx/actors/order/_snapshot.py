"""Pure: the :class:`OrderSnapshot` of a stored record, and when two records show the same one.

A snapshot lists the fills in time order (then by trade id), their average
price and their fees per fee currency. Records are never changed in place,
so two records whose snapshot fields are the same objects show equal
snapshots (:func:`_shows_same`): the actor builds one snapshot per record.
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal

from phalanx.protocols.trading import OrderFill, OrderSnapshot
from phalanx.storage._orders import OrderRecord

__all__ = ["snapshot_of"]

ZERO = Decimal(0)


def snapshot_of(record: OrderRecord) -> OrderSnapshot:
    """The :class:`OrderSnapshot` of a stored record."""
    fills = sorted(record.fills.values(), key=lambda f: (f.timestamp or 0, f.trade_id))
    notional = sum((f.price * f.amount for f in fills), ZERO)
    return OrderSnapshot(
        order_req_id=record.order_req_id,
        client_order_id=record.client_order_id,
        exchange_order_id=record.exchange_order_id,
        status=record.status,
        symbol=record.symbol,
        side=record.side,
        amount=record.amount,
        filled=record.filled,
        average=notional / record.filled if record.filled else None,
        fee=record.fee,
        fills=fills,
        external=record.external,
        terminal=record.terminal,
        fees=_fees_by_currency(fills),
    )


def _fees_by_currency(fills: Iterable[OrderFill]) -> dict[str, Decimal]:
    """The fills' fees per fee currency (``""`` for a fill whose venue named none)."""
    fees: dict[str, Decimal] = {}
    for fill in fills:
        if fill.fee:
            currency = fill.fee_currency or ""
            fees[currency] = fees.get(currency, ZERO) + fill.fee
    return fees


_SNAPSHOT_FIELDS = ("order_req_id", "client_order_id", "exchange_order_id", "status", "symbol",
                    "side", "amount", "filled", "fee", "fills", "external")  # fmt: skip


def _shows_same(a: OrderRecord, b: OrderRecord) -> bool:
    """True if every field :func:`snapshot_of` reads is the same object in both records
    (then their snapshots are equal); records are never changed in place."""
    da, db = a.__dict__, b.__dict__
    return all(da[name] is db[name] for name in _SNAPSHOT_FIELDS)
