"""Placement: journal the intent before it is sent, send it once, a refused create.

Functions of :class:`~phalanx.actors.order._order.OrderActor` taking the
actor, bound in its class body as its methods (``_send = _order_send._send``).

Invariants:
- nothing is sent before the record is journaled ``submitting`` by THIS
  incarnation (``_may_send``); a record registered meanwhile (a twin actor, a
  restart race) is resolved by lookup, never by sending;
- a cancel ahead of any registration journals the intent ``canceled``: never
  sent by anyone (``_register(abandon=...)``);
- a send without a known outcome (no reply within ``ask_timeout_s``, a create
  dead-lettered) makes the order ``unknown``, resolved by lookup
  (``_order_resolve``); only a permanent venue error ends it ``rejected``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pykka import Timeout

from phalanx.actors.order._ids import client_order_id
from phalanx.actors.order._machine import transition
from phalanx.errors import PhalanxError
from phalanx.protocols.exchange import CreateOrder
from phalanx.storage._orders import OrderRecord, evolve
from phalanx.supervision import ErrorClass, classify

if TYPE_CHECKING:
    from phalanx.actors.order._order import OrderActor

__all__: list[str] = []


def _register(self: OrderActor, abandon: str | None = None) -> None:
    """Journal the intent ``submitting`` (it may be sent), or, with ``abandon`` (a
    cancel ahead of any registration), ``canceled``: never sent by anyone."""
    i = self.intent
    self._crash("before_journal")
    now = self.services.clock()
    status = transition("new", "submit")
    if abandon is not None:
        status = transition(status, "abandon")
    record = OrderRecord(
        order_req_id=i.order_req_id, client_order_id=client_order_id(i.order_req_id, 0),
        generation=0, status=status, symbol=i.symbol, side=i.side,
        type=i.type, amount=i.amount, price=i.price, saga_id=i.saga_id, created_at=now,
        updated_at=now, exchange=i.exchange, notify=i.notify,
        cancel_requested=abandon is not None,
    )  # fmt: skip
    if self.store.register(record):
        self.record, self._may_send = record, abandon is None
        if abandon is not None:
            self._say("info", "order_cancel", reason=abandon, status="never_sent")
            self._notify()
    else:  # registered meanwhile (a twin actor, a restart race): resolve, never send
        self.record = self.store.get(i.order_req_id)
        self._unknown_since = self.services.clock()
    self._crash("after_journal")


def _send(self: OrderActor) -> None:
    rec = self._rec()
    self._may_send = False
    self._say(
        "info", "order_attempt", generation=rec.generation, symbol=rec.symbol, side=rec.side,
        type=rec.type, amount=str(rec.amount), price=str(rec.price) if rec.price else None,
        blind_resend=rec.status == "unknown",
    )  # fmt: skip
    request = CreateOrder(
        symbol=rec.symbol, side=rec.side, type=rec.type, amount=rec.amount,
        price=rec.price, client_order_id=rec.client_order_id,
    )  # fmt: skip
    future = self.system.ask_future(self.conn, request)
    self._crash("after_send")
    try:
        reply = future.get(timeout=self.services.ask_timeout_s)
    except Timeout:
        self._dlq_dirty = True  # still queued at the connection: may be dead-lettered
        self._to_unknown("ambiguous", f"no reply within {self.services.ask_timeout_s}s")
        return
    except Exception as exc:
        if classify(exc) is ErrorClass.PERMANENT and not isinstance(exc, PhalanxError):
            self._rejected(exc)
        else:
            self._dlq_dirty = True  # MailboxFull, ActorDead...: the create was dead-lettered
            self._to_unknown("ambiguous", repr(exc))
        return
    self._crash("after_ack_before_journal")
    self._apply(reply, "ack")


def _rejected(self: OrderActor, exc: BaseException) -> None:
    rec = self._rec()
    nxt = self._advance("rejected")
    if nxt is None:
        return
    self.record = self.store.update(
        rec.order_req_id,
        lambda r: evolve(r, status=nxt),
        "rejected",
        error_type=type(exc).__name__,
        error=str(exc)[:300],
    )
    self._say("warning", "order_ack", venue_status="rejected", error_type=type(exc).__name__,
                      error=str(exc)[:300])  # fmt: skip
    self._notify()
    self._settle()
