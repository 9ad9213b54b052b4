"""What reconciliation applies, decided from records and the venue's view (pure).

:func:`plan_reconciliation` closes the gap between the venue and the stored
idempotency records, reading the ledger only through ``posted``:

- in-flight records (``submitting``/``unknown`` or no exchange id yet) are
  looked up by client order id; found ones learn their exchange id;
- every venue trade the ledger has not posted becomes a fill to apply (to its
  Position and the Ledger, both idempotent by trade id), except trades the
  ledger's opening already covers;
- venue orders no record knows are adopted as ``external``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from phalanx.protocols.exchange import OrderReply, Trade
from phalanx.protocols.trading import OrderFill
from phalanx.storage._orders import TERMINAL_STATUSES

__all__ = ["IN_FLIGHT", "ReconcilePlan", "VenueView", "order_fill", "plan_reconciliation"]

ZERO = Decimal(0)
IN_FLIGHT = frozenset({"new", "submitting", "unknown"})
"""Record statuses whose venue outcome the node does not know yet."""


def order_fill(trade: Trade, order_req_id: str, side: str | None = None) -> OrderFill:
    """An :class:`OrderFill` from a venue trade, its fee in the asset the venue charged."""
    resolved = trade.side or side
    if resolved not in ("buy", "sell"):
        raise ValueError(f"trade {trade.id}: no side")
    return OrderFill(
        trade_id=trade.id,
        order_req_id=order_req_id,
        exchange_order_id=trade.order_id,
        symbol=trade.symbol,
        side=resolved,
        price=trade.price,
        amount=trade.amount,
        fee=trade.fee_cost or ZERO,
        fee_currency=trade.fee_currency,
        timestamp=trade.timestamp,
    )


@dataclass
class VenueView:
    """What the venue said: balances, open orders, trades per symbol, lookups by client id."""

    totals: dict[str, Decimal]
    open_orders: list[OrderReply]
    trades: dict[str, list[Trade]]
    lookups: dict[str, OrderReply | None] = field(default_factory=dict)  # client id -> order
    orders_by_id: dict[str, OrderReply] = field(default_factory=dict)  # exchange id -> order


@dataclass
class ReconcilePlan:
    """What to do: fills to apply, orders to adopt, records resolved, ids learned."""

    fills: list[OrderFill] = field(default_factory=list)
    external: list[OrderReply] = field(default_factory=list)
    resolved: dict[str, OrderReply | None] = field(default_factory=dict)  # order_req_id ->
    unmatched_trades: list[Trade] = field(default_factory=list)


def plan_reconciliation(
    records: Iterable[Mapping[str, Any]],
    venue: VenueView,
    posted: Callable[[OrderFill], bool],
    covered: frozenset[str],
) -> ReconcilePlan:
    """Decide what reconciliation applies (pure: ``posted`` only reads the ledger).

    ``covered`` holds the trade ids the ledger's opening balances already
    include. A trade whose order no record knows belongs to an ``external``
    order (adopted); its fill is applied too, since the venue's balances
    include it and the ledger must equal them. An open order whose record is
    terminal is adopted as well: no Order actor would track it otherwise.
    """
    plan = ReconcilePlan()
    by_exchange_id: dict[str, Mapping[str, Any]] = {}
    by_client_id: dict[str, Mapping[str, Any]] = {}
    for record in records:
        cid = record.get("client_order_id")
        if cid:
            by_client_id[cid] = record
        if record.get("status") in IN_FLIGHT or not record.get("exchange_order_id"):
            found = venue.lookups.get(cid) if cid else None
            if cid in venue.lookups:
                plan.resolved[record["order_req_id"]] = found
            if found is not None:
                by_exchange_id[found.id] = record
        if record.get("exchange_order_id"):
            by_exchange_id[str(record["exchange_order_id"])] = record
    adopted: dict[str, OrderReply] = {}
    for order in venue.open_orders:
        known = by_exchange_id.get(order.id) or (
            by_client_id.get(order.client_order_id) if order.client_order_id else None
        )
        # A live order whose record is terminal has no actor to track it (its create
        # landed after the intent was abandoned or journaled rejected): adopt it too.
        if known is None or known.get("status") in TERMINAL_STATUSES:
            adopted[order.id] = order
        else:
            by_exchange_id.setdefault(order.id, known)
    for symbol in sorted(venue.trades):
        for trade in venue.trades[symbol]:
            if trade.id in covered:
                continue
            match = by_exchange_id.get(trade.order_id or "")
            if match is None and trade.order_id in venue.orders_by_id:
                order = venue.orders_by_id[trade.order_id]
                match = by_client_id.get(order.client_order_id or "")
                if match is None:
                    adopted.setdefault(order.id, order)
            if match is not None:
                fill = order_fill(trade, match["order_req_id"], match.get("side"))
            elif trade.order_id:
                fill = order_fill(trade, f"external:{trade.order_id}")
            else:
                plan.unmatched_trades.append(trade)
                continue
            if not posted(fill):
                plan.fills.append(fill)
    plan.external = list(adopted.values())
    return plan
