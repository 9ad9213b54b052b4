"""Reading the venue for reconciliation: balances, open orders, trades, lookups.

Everything goes through the connection actor ``/exchanges/<exchange>``. The
balance is read before and after the orders and trades until both agree
(:class:`VenueUnsettled` if it never holds still), so a fill in between cannot
be in the trades but not in the balance.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any

import ccxt

from phalanx.actors._reconcile_plan import IN_FLIGHT, VenueView
from phalanx.errors import PhalanxError
from phalanx.protocols.exchange import (
    Balance,
    FetchBalance,
    FetchMyTrades,
    FetchOpenOrders,
    FetchOrder,
    OpenOrders,
    OrderReply,
    Trade,
    Trades,
)
from phalanx.runtime import ActorSystem

__all__ = ["VenueUnsettled", "fetch_venue"]

_STABLE_READS = 5  # balance-orders-trades-balance rounds before giving up


class VenueUnsettled(PhalanxError):
    """The venue's balances kept changing while reconciliation read it (retry later)."""


def _ask(system: ActorSystem, exchange: str, message: Any, timeout: float) -> Any:
    return system.ask(f"/exchanges/{exchange}", message, timeout=timeout)


def fetch_venue(
    system: ActorSystem,
    exchange: str,
    symbols: Iterable[str],
    records: Iterable[Mapping[str, Any]],
    *,
    timeout: float = 10.0,
) -> VenueView:
    """Ask the connection for balances, open orders, trades and in-flight lookups.

    The balance is read before and after the orders and trades, and the reads
    are repeated until both balances agree: a fill in between (a resting order
    the market crossed) would otherwise be in the trades but not the balance,
    and the ledger, opened from that balance or checked against it, would be
    off by that fill. :class:`VenueUnsettled` if it never holds still.
    """
    for _ in range(_STABLE_READS):
        balance: Balance = _ask(system, exchange, FetchBalance(), timeout)
        trades: dict[str, list[Trade]] = {}
        open_orders: list[OrderReply] = []
        # Per symbol: ccxt refuses an all-symbols open-orders query on binance by default.
        for symbol in sorted(set(symbols)):
            opened: OpenOrders = _ask(system, exchange, FetchOpenOrders(symbol=symbol), timeout)
            open_orders.extend(opened.orders)
            reply: Trades = _ask(system, exchange, FetchMyTrades(symbol=symbol), timeout)
            trades[symbol] = reply.trades
        again: Balance = _ask(system, exchange, FetchBalance(), timeout)
        if _nonzero(again.total) == _nonzero(balance.total):
            break
    else:
        raise VenueUnsettled(
            f"{exchange}: balances changed during each of {_STABLE_READS} reads of "
            "orders and trades"
        )
    view = VenueView(dict(balance.total), open_orders, trades)
    for record in records:
        cid = record.get("client_order_id")
        if not cid or not (
            record.get("status") in IN_FLIGHT or not record.get("exchange_order_id")
        ):
            continue
        try:
            view.lookups[cid] = _ask(
                system, exchange, FetchOrder(symbol=record["symbol"], client_order_id=cid), timeout
            )
        except ccxt.OrderNotFound:
            view.lookups[cid] = None  # never reached the venue
    known = {str(r["exchange_order_id"]) for r in records if r.get("exchange_order_id")}
    known |= {o.id for o in view.open_orders} | {o.id for o in view.lookups.values() if o}
    for symbol, symbol_trades in trades.items():
        for order_id in sorted({t.order_id for t in symbol_trades if t.order_id} - known):
            try:
                view.orders_by_id[order_id] = _ask(
                    system, exchange, FetchOrder(symbol=symbol, id=order_id), timeout
                )
            except ccxt.OrderNotFound:
                continue
    return view


def _nonzero(totals: Mapping[str, Decimal]) -> dict[str, Decimal]:
    return {asset: q for asset, q in totals.items() if q}
