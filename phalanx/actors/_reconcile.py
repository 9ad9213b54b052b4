"""Reconciliation before trading is enabled (DESIGN section 6, issue 5).

The node compares the venue (open orders, recent trades per symbol, balances)
with what it stored (idempotency records, ledger) and closes the gap:

- in-flight records (``submitting``/``unknown`` or no exchange id yet) are
  looked up by client order id; found ones learn their exchange id;
- every venue trade the ledger has not posted is applied to its Position
  (``ApplyFill``) and posted to the Ledger, both idempotent by trade id;
- venue orders no record knows are adopted as ``external``;
- on first boot the ledger opens with the venue's balances
  (:func:`~phalanx.storage.plan_opening`), and the trades that already exist
  then are remembered as covered by the opening (never posted as fills);
- the result (counts, drift per asset, ``ok``) goes to the ``audit`` log as
  ``reconciliation_result`` and to ``system.events``.

Pure part: :func:`plan_reconciliation` decides; :func:`reconcile` does the I/O.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import ccxt
import msgpack

from phalanx.actors._ledger_actor import ledger_fill_from
from phalanx.errors import PhalanxError
from phalanx.protocols.exchange import (
    Balance,
    FetchBalance,
    FetchMyTrades,
    FetchOpenOrders,
    FetchOrder,
    FetchTicker,
    OpenOrders,
    OrderReply,
    Trade,
    Trades,
)
from phalanx.protocols.trading import OrderFill
from phalanx.runtime import ActorSystem
from phalanx.storage import Fill, Ledger, plan_opening
from phalanx.storage._orders import TERMINAL_STATUSES

__all__ = [
    "IN_FLIGHT",
    "ReconcilePlan",
    "ReconciliationResult",
    "VenueUnsettled",
    "VenueView",
    "order_fill",
    "plan_reconciliation",
    "reconcile",
]

ZERO = Decimal(0)
IN_FLIGHT = frozenset({"new", "submitting", "unknown"})
"""Record statuses whose venue outcome the node does not know yet."""
_DB = "reconcile"
_STABLE_READS = 5  # balance-orders-trades-balance rounds before giving up


class VenueUnsettled(PhalanxError):
    """The venue's balances kept changing while reconciliation read it (retry later)."""


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


class ReconciliationResult(dict[str, Any]):
    """The ``reconciliation_result`` fields: counts, ``drift`` per asset, ``ok``, ``error``.

    ``adopted``: venue orders adopted now; ``external``: external orders known
    after it (earlier adoptions included); ``resolved``: in-flight records
    looked up by client id (``resolved_found`` of them exist at the venue);
    ``fills_applied``: venue trades the ledger lacked, applied now.
    """

    @property
    def ok(self) -> bool:
        """True when trading may be enabled."""
        return bool(self.get("ok"))


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


def _state(system: ActorSystem) -> Any:
    return system.storage.db(_DB)


def load_covered(system: ActorSystem, exchange: str) -> tuple[bool, frozenset[str]]:
    """(opened, trade ids the opening covers) for ``exchange``."""
    db = _state(system)
    raw = system.storage.read(lambda t: t.get(f"opening:{exchange}".encode(), db=db))
    if raw is None:
        return False, frozenset()
    return True, frozenset(msgpack.unpackb(bytes(raw), raw=False)["trades"])


def _save_covered(system: ActorSystem, exchange: str, trade_ids: Iterable[str]) -> None:
    db = _state(system)
    record = msgpack.packb({"at": time.time(), "trades": sorted(trade_ids)}, use_bin_type=True)
    key = f"opening:{exchange}".encode()
    system.storage.write_now(lambda t: t.put(key, record, db=db, overwrite=False))


def open_ledger(
    system: ActorSystem, ledger: Ledger, exchange: str, venue: VenueView, symbols: Iterable[str]
) -> bool:
    """First boot: post the venue's balances as the opening; False if already opened.

    The opening is posted first (idempotent by its key), then the covered
    trade ids: a crash between the two re-covers the same trades next boot,
    since nothing trades before reconciliation ends.
    """
    opened, _ = load_covered(system, exchange)
    if opened:
        return False
    prices: dict[str, Decimal] = {}
    for symbol in symbols:
        base = symbol.split("/", 1)[0]
        try:
            ticker = _ask(system, exchange, FetchTicker(symbol=symbol), 10.0)
        except (PhalanxError, ccxt.BaseError):
            continue  # the valuation only; quantities are what reconcile
        if ticker.last is not None:
            prices[base] = ticker.last
    holdings = {a: q for a, q in venue.totals.items() if q}
    ledger.post(plan_opening(exchange, holdings, prices))
    _save_covered(system, exchange, (t.id for ts in venue.trades.values() for t in ts))
    return True


def reconcile(
    system: ActorSystem,
    *,
    exchange: str,
    ledger: Ledger,
    symbols: Iterable[str],
    records: Callable[[], list[Mapping[str, Any]]],
    apply_fill: Callable[[OrderFill], None],
    adopt: Callable[[OrderReply], object] | None = None,
    timeout: float = 10.0,
) -> ReconciliationResult:
    """Run one reconciliation; never raises: a failure is a result with ``ok: False``.

    ``apply_fill`` applies one fill to its Position and the Ledger (the node's
    fill sink); ``adopt`` records a venue order the node did not place.
    """
    started = time.monotonic()
    result = ReconciliationResult(
        exchange=exchange, adopted=0, resolved=0, resolved_found=0, fills_applied=0, external=0,
        unmatched_trades=0, opened=False, drift={}, ok=False, error=None,
    )  # fmt: skip
    try:
        loaded = list(records())
        wanted = set(symbols) | {str(r["symbol"]) for r in loaded if r.get("symbol")}
        venue = fetch_venue(system, exchange, wanted, loaded, timeout=timeout)
        result["opened"] = open_ledger(system, ledger, exchange, venue, sorted(wanted))
        _, covered = load_covered(system, exchange)
        marker = ledger_marker(system)
        plan = plan_reconciliation(loaded, venue, lambda f: marker(ledger_fill_from(f)), covered)
        for fill in plan.fills:
            apply_fill(fill)
        for order in plan.external:
            if adopt is not None:
                adopt(order)
        drift = ledger.verify(venue.totals)
        result.update(
            adopted=len(plan.external),
            external=len(plan.external) + sum(1 for r in loaded if r.get("external")),
            resolved=len(plan.resolved),
            resolved_found=sum(1 for found in plan.resolved.values() if found is not None),
            fills_applied=len(plan.fills),
            unmatched_trades=len(plan.unmatched_trades),
            drift={a: str(d) for a, d in drift.items()},
            ok=not drift and not plan.unmatched_trades,
        )
        if drift:
            result["error"] = f"ledger differs from the venue: {result['drift']}"
        elif plan.unmatched_trades:
            result["error"] = f"{len(plan.unmatched_trades)} venue trades without an order id"
    except Exception as exc:  # the verdict must be written whatever failed
        result["error"] = f"{type(exc).__name__}: {exc}"[:500]
    result["duration_s"] = round(time.monotonic() - started, 3)
    _report(system, result)
    return result


def ledger_marker(system: ActorSystem) -> Callable[[Fill], bool]:
    """``posted(fill)``: True when the ledger already holds that fill's marker."""
    ledger = Ledger(system.storage)
    return lambda fill: ledger.has_fill(fill.fill_id)


def _report(system: ActorSystem, result: ReconciliationResult) -> None:
    fields = dict(result)
    system.logs.logger("audit").info("reconciliation_result", **fields)
    system.events.publish("reconciliation_result", "/reconcile", **fields)
