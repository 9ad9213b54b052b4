"""Cancel: a ``CancelIntent`` to the actor, and the cancel at the venue.

Functions of :class:`~phalanx.actors.order._order.OrderActor` taking the
actor, bound in its class body as its methods.

Invariants:
- a cancel that arrives before any registration journals the intent
  ``canceled`` without sending it;
- a cancel already in flight (``canceling``) is retried by the actor's own
  tick, never once more per ``CancelIntent``;
- a cancel the venue answers not-found fetches the order's final state.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import ccxt

from phalanx.protocols.exchange import CancelOrder
from phalanx.protocols.trading import OrderSnapshot
from phalanx.storage._orders import evolve

if TYPE_CHECKING:
    from phalanx.actors.order._order import OrderActor

__all__: list[str] = []


def _cancel(self: OrderActor, reason: str) -> OrderSnapshot:
    if self.record is None:
        # Ahead of any _Drive: no incarnation registered, so none ever sent. A cancel
        # must not place the order to cancel it: journal it canceled, never sent
        # (on_start's _Drive, queued behind this, then finds it terminal and stops).
        self._register(abandon=reason)
    rec = self.record
    if rec is None or rec.terminal:
        return self.snapshot()
    if not rec.cancel_requested:
        self.record = self.store.update(
            rec.order_req_id,
            lambda r: evolve(r, cancel_requested=True),
            "cancel_requested",
            reason=reason,
        )
        self._say("info", "order_cancel", reason=reason, status=rec.status)
    rec = self._rec()
    # A cancel already in flight (canceling) is retried by this actor's own tick at
    # the poll interval; a caller asking again (the saga polls every 20 ms) must not
    # add a venue call per ask.
    if rec.exchange_order_id is not None and rec.status != "canceling":
        self._cancel_at_venue()
    return self.snapshot()


def _cancel_at_venue(self: OrderActor) -> None:
    rec = self._rec()
    if rec.status != "canceling":
        nxt = self._advance("cancel")
        if nxt is None:
            return
        self.record = rec = self.store.update(
            rec.order_req_id, lambda r: evolve(r, status=nxt), "canceling"
        )
        self._notify()
    request = CancelOrder(symbol=rec.symbol, id=rec.exchange_order_id)
    try:
        reply = self._ask(request)
    except ccxt.OrderNotFound:  # no longer open: fetch its final state
        fetched = self._fetch("order_cancel_failed")
        if fetched is None:
            return
        reply = fetched
    except Exception as exc:
        self._say("warning", "order_cancel_failed", error=repr(exc))
        self._schedule(self.services.poll_interval_s)
        return
    self._say("info", "order_cancel", venue_status=reply.status, filled=str(reply.filled))
    self._apply(reply, "cancel")
