"""A placed order: each venue reply adopted in one write, polling, an order the venue forgot.

Functions of :class:`~phalanx.actors.order._order.OrderActor` taking the
actor, bound in its class body as its methods.

Invariants:
- a venue reply is adopted I/O first (the reply, then the order's trades if
  its own fall short of its executed quantity), then ONE journaled write
  planned by the pure :func:`~phalanx.actors.order._plan.plan_reply`, then the
  notification: a terminal status is journaled only with every fill the venue
  reports executed, so a terminal snapshot is final;
- an acknowledged order the venue no longer knows (repeated not-found over ten
  times ``settle_s``, not among the open orders) ends ``expired`` with the
  fills the venue reports; it is never sent again.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import ccxt

from phalanx.actors.order._machine import _LIVE
from phalanx.actors.order._plan import plan_reply
from phalanx.actors.order._snapshot import ZERO
from phalanx.protocols.exchange import FetchMyTrades, FetchOpenOrders, FetchOrder, OrderReply
from phalanx.protocols.trading import OrderFill
from phalanx.runtime import trace_scope
from phalanx.storage._orders import OrderRecord, add_fills, evolve

if TYPE_CHECKING:
    from phalanx.actors.order._order import OrderActor

__all__: list[str] = []

_FORGET_SETTLE_FACTOR = 10  # x settle_s of "order does not exist" before an order is gone


def _apply(self: OrderActor, reply: OrderReply, kind: str) -> None:
    """Adopt what the venue reports: I/O first, then ONE journaled write, then notify.

    A terminal status is journaled only with every fill the venue reports
    executed (see :func:`plan_reply`), so a terminal snapshot is final.
    """
    rec = self._rec()
    self._gone = 0  # the venue knows the order
    executed = reply.filled or ZERO
    if self._venue_filled is None or executed > self._venue_filled:
        self._venue_filled = executed
    fills = [self._fill_of(t, reply.id) for t in reply.trades if t.order_id in (None, reply.id)]
    if add_fills(rec, fills).filled < self._venue_filled:
        fills += self._my_trades(reply.id)
    planned, refused = plan_reply(rec, reply, fills, self._venue_filled)
    for exc in refused:
        self._refused(exc)
    if planned != rec:
        new = [f for tid, f in planned.fills.items() if tid not in rec.fills]
        vf = self._venue_filled
        # plan_reply is pure: the stored record still being ``rec`` (the store's
        # decode memo hands back this very object) gives ``planned`` again.
        self.record = self.store.update(
            rec.order_req_id,
            lambda r: planned if r is rec else plan_reply(r, reply, fills, vf)[0],
            kind,
            venue_status=reply.status,
            venue_filled=str(executed),
            trade_ids=[f.trade_id for f in new],
        )
        self._logged(rec, new)
        self._notify()
    self._sink_pending()
    self._after_change()


def _logged(self: OrderActor, before: OrderRecord, new: list[OrderFill]) -> None:
    rec = self._rec()
    if before.exchange_order_id is None and rec.exchange_order_id is not None:
        with trace_scope(exchange_order_id=rec.exchange_order_id):
            self._say(
                "info", "order_ack", venue_status=rec.status, generation=rec.generation,
                filled=str(self._venue_filled),
            )  # fmt: skip
    for fill in new:
        self._say(
            "info", "order_fill", trade_id=fill.trade_id, price=str(fill.price),
            amount=str(fill.amount), fee=str(fill.fee), fee_currency=fill.fee_currency,
            status=rec.status, filled=str(rec.filled),
        )  # fmt: skip


def _after_change(self: OrderActor) -> None:
    rec = self._rec()
    if rec.terminal:
        self._settle()
    elif rec.cancel_requested and rec.status in _LIVE and not self._fills_short():
        self._cancel_at_venue()
    else:
        self._schedule(self.services.poll_interval_s)


def _poll(self: OrderActor) -> None:
    reply = self._fetch("order_poll_failed")
    if reply is not None:
        self._apply(reply, "poll")


def _fetch(self: OrderActor, failed_event: str) -> OrderReply | None:
    """The order as the venue has it; None if the venue forgot it or the ask failed.

    Not found: :meth:`_venue_forgot` decides. Any other failure logs
    ``failed_event`` and schedules the next tick, so the order is looked at
    again; nothing is adopted from a failed ask.
    """
    rec = self._rec()
    try:
        reply: OrderReply = self._ask(FetchOrder(symbol=rec.symbol, id=rec.exchange_order_id))
    except ccxt.OrderNotFound:
        self._venue_forgot()
        return None
    except Exception as exc:
        self._say("warning", failed_event, error=repr(exc))
        self._schedule(self.services.poll_interval_s)
        return None
    return reply


def _venue_forgot(self: OrderActor) -> None:
    """The venue does not know the acknowledged order by its exchange id (any more).

    After ``max_lookup_misses`` misses over ten times ``settle_s``, and not among
    the open orders: journal ``expired`` with every fill the venue still reports for it
    (the venue dropped it from its books). Never a new generation: it was placed.
    """
    rec = self._rec()
    if rec.terminal:  # gone after it ended: the journaled fills are final
        if self._venue_filled is None:
            self._venue_filled = rec.filled
        self._settle()
        return
    now = self.services.clock()
    if self._gone == 0:
        self._gone_since = now
    self._gone += 1
    self._say("warning", "order_not_found", misses=self._gone, status=rec.status)
    # An acknowledged order is forgotten only long after: a venue's read replicas
    # may miss a fresh order for a moment, and a live order dropped here would
    # fill untracked (ten times the unknown order's settle_s).
    settled = now - self._gone_since >= _FORGET_SETTLE_FACTOR * self.services.settle_s
    if self._gone < self.services.max_lookup_misses or not settled:
        self._schedule(self.services.poll_interval_s)
        return
    try:
        listed = self._ask(FetchOpenOrders(symbol=rec.symbol)).orders
        trades = self._ask(FetchMyTrades(symbol=rec.symbol, order_id=rec.exchange_order_id)).trades
    except Exception as exc:
        self._say("warning", "order_absence_check_failed", error=repr(exc))
        self._schedule(self.services.poll_interval_s)
        return
    for order in listed:
        if order.id == rec.exchange_order_id:
            self._apply(order, "found_by_check")
            return
    fills = [self._fill_of(t, t.order_id) for t in trades if t.order_id == rec.exchange_order_id]
    nxt = self._advance("venue_expired")
    if nxt is None:
        self._schedule(self.services.poll_interval_s)
        return
    new = [f for f in add_fills(rec, fills).fills.values() if f.trade_id not in rec.fills]
    self.record = self.store.update(
        rec.order_req_id,
        lambda r: evolve(add_fills(r, fills), status=nxt),
        "venue_gone",
        misses=self._gone,
        trade_ids=[f.trade_id for f in new],
    )
    self._venue_filled = self._rec().filled
    self._logged(rec, new)
    self._notify()
    self._settle()
