"""An order whose create has no known outcome: client-id lookup, absence check, new generation.

Functions of :class:`~phalanx.actors.order._order.OrderActor` taking the
actor, bound in its class body as its methods. Every wait is a tick the
actor schedules to itself (lookups back off from ``lookup_interval_s``, x2 up
to ``lookup_max_interval_s``); a failed lookup is not a miss.

Invariants:
- a new client id (generation + 1) is journaled before it is sent, and only
  after ``max_lookup_misses`` misses, ``settle_s`` since the order became
  unknown, and no order with this intent's client-id prefix among the open
  orders or the orders behind recent trades (every one of them looked up, at
  most ``max_trade_order_lookups`` per check);
- before a new client id (or abandoning the intent), every dead-lettered
  ``CreateOrder`` of the intent still pending is resolved, so no redrive can
  place the intent a second time;
- a cancel requested before the order was ever placed ends it ``canceled``
  only once its absence is proven that way.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import ccxt

from phalanx.actors.order._ids import client_order_id, intent_prefix
from phalanx.errors import DeadLetterError
from phalanx.protocols.exchange import (
    CreateOrder,
    FetchMyTrades,
    FetchOpenOrders,
    FetchOrder,
    OrderReply,
)
from phalanx.runtime import trace_scope
from phalanx.storage._orders import OrderRecord, evolve

if TYPE_CHECKING:
    from phalanx.actors.order._order import OrderActor

__all__: list[str] = []


def _to_unknown(self: OrderActor, kind: str, error: str | None) -> None:
    rec = self._rec()
    if rec.status != "unknown":
        nxt = self._advance("ambiguous")
        if nxt is None:
            return
        self.record = self.store.update(
            rec.order_req_id, lambda r: evolve(r, status=nxt), kind, error=error
        )
        self._notify()
    self._misses, self._interval = 0, self.services.lookup_interval_s
    self._unknown_since = self.services.clock()
    self._say("warning", "order_unknown", reason=kind, error=error)
    self._schedule(self._interval)


def _lookup(self: OrderActor) -> None:
    rec = self._rec()
    self._say("info", "retry_attempt", action="lookup", misses=self._misses)
    try:
        reply = self._ask(FetchOrder(symbol=rec.symbol, client_order_id=rec.client_order_id))
    except ccxt.OrderNotFound:
        self._misses += 1
    except Exception as exc:  # the lookup itself failed: not a miss
        self._say("warning", "order_lookup_failed", error=repr(exc))
        self._backoff()
        return
    else:
        self._apply(reply, "lookup")
        return
    settled = self.services.clock() - self._unknown_since >= self.services.settle_s
    if self._misses >= self.services.max_lookup_misses and settled:
        self._absence_check()
    else:
        self._backoff()


def _backoff(self: OrderActor) -> None:
    self._schedule(self._interval)
    self._interval = min(self._interval * 2, self.services.lookup_max_interval_s)


def _absence_check(self: OrderActor) -> None:
    rec = self._rec()
    try:
        if not self._retire_dead_creates(rec):
            # A create of this intent was redriven from the dead-letter store: it
            # may be on its way to the venue, so it must settle like any other send.
            self._misses, self._unknown_since = 0, self.services.clock()
            self._backoff()
            return
        found, complete = self._find_by_prefix(rec)
    except Exception as exc:
        self._say("warning", "order_absence_check_failed", error=repr(exc))
        self._backoff()
        return
    if found is not None:
        self._apply(found, "found_by_check")
    elif not complete:  # orders behind trades left unchecked: absence not proven
        self._say("info", "order_absence_check_partial", checked=len(self._not_ours))
        self._backoff()
    elif rec.cancel_requested:
        nxt = self._advance("abandon")
        if nxt is not None:
            self.record = self.store.update(
                rec.order_req_id, lambda r: evolve(r, status=nxt), "abandoned"
            )
            self._say("info", "order_cancel", reason="never_placed", misses=self._misses)
            self._notify()
            self._settle()
    else:
        self._regenerate()


def _retire_dead_creates(self: OrderActor, rec: OrderRecord) -> bool:
    """Resolve this intent's dead-lettered creates; False if one was redriven meanwhile.

    An ask whose ``CreateOrder`` overflowed (or found no live connection) is
    dead-lettered, redrivable. Once the intent is resolved here (a new
    generation, or abandoned), redriving it would place the intent twice, so
    before either, every pending one is resolved with a note; a redrive already
    done is reported once (its order may still land).
    """
    if not self._dlq_dirty:  # scanned since this incarnation's last failed send
        return True
    prefix = intent_prefix(rec.order_req_id)
    letters = self.system.dead_letters
    note = (
        f"superseded: order {rec.order_req_id} is resolved by its Order actor "
        "(client-id lookup); redriving this create would place it twice"
    )
    quiet, after, page_size = True, None, 200
    while True:
        page = letters.list(target=self.conn, limit=page_size, after=after)
        for listed in page:
            create, dead = listed.message, listed
            if not isinstance(create, CreateOrder) or not create.client_order_id.startswith(prefix):
                continue
            if dead.status == "pending":
                try:
                    dead = letters.resolve(dead.id, note)  # its history as resolved
                except DeadLetterError:  # resolved meanwhile
                    continue
                self._say("warning", "order_dead_create_resolved", dead_letter_id=dead.id,
                          dead_client_order_id=create.client_order_id)  # fmt: skip
            redriven = any(h.get("action") == "redrive" for h in dead.history)
            if redriven and dead.id not in self._redriven:
                self._redriven.add(dead.id)
                self._say("warning", "order_dead_create_redriven", dead_letter_id=dead.id,
                          dead_client_order_id=create.client_order_id)  # fmt: skip
                quiet = False
        if len(page) < page_size:
            self._dlq_dirty = False
            return quiet
        after = page[-1].id


def _find_by_prefix(self: OrderActor, rec: OrderRecord) -> tuple[OrderReply | None, bool]:
    """An order of this intent (any generation) among open orders or recent trades.

    Returns ``(order, complete)``: ``complete`` is False while orders behind the
    trades are left to look up (at most ``max_trade_order_lookups`` per check,
    most recent first; the ones found not ours are remembered), so absence is
    proven only once every candidate was checked.
    """
    prefix = intent_prefix(rec.order_req_id)
    for order in self._ask(FetchOpenOrders(symbol=rec.symbol)).orders:
        if (order.client_order_id or "").startswith(prefix):
            return order, True
    since = int(rec.created_at * 1000) - self.services.trade_lookback_ms
    trades = self._ask(FetchMyTrades(symbol=rec.symbol, since=since)).trades
    # Orders another intent holds are skipped; one an external record holds that
    # carries this intent's prefix is not (reconciliation may have adopted it).
    latest: dict[str, int] = {}
    for t in trades:
        if t.order_id:
            latest[t.order_id] = max(latest.get(t.order_id, 0), t.timestamp or 0)
    behind = []  # most recent first
    for order_id in sorted(latest, key=lambda oid: latest[oid], reverse=True):
        if order_id in self._not_ours:
            continue
        owner = self.store.by_exchange_id(rec.exchange, rec.symbol, order_id)
        if owner is None or owner.client_order_id.startswith(prefix):
            behind.append(order_id)
    budget = self.services.max_trade_order_lookups
    for order_id in behind[:budget]:
        order = self._ask(FetchOrder(symbol=rec.symbol, id=order_id))
        if (order.client_order_id or "").startswith(prefix):
            return order, True
        self._not_ours.add(order_id)
    return None, len(behind) <= budget


def _regenerate(self: OrderActor) -> None:
    rec = self._rec()
    nxt = self._advance("regenerate")
    if nxt is None:
        return
    gen = rec.generation + 1
    cid = client_order_id(rec.order_req_id, gen)
    self.record = self.store.update(
        rec.order_req_id,
        lambda r: evolve(r, status=nxt, generation=gen, client_order_id=cid),
        "regenerated",
        misses=self._misses,
    )
    self._say(
        "info", "retry_attempt", action="new_generation", generation=gen, client_order_id=cid,
        previous_client_order_id=rec.client_order_id, misses=self._misses,
    )  # fmt: skip
    self._may_send = True
    with trace_scope(client_order_id=cid):
        self._send()
