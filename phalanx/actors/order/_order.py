"""The Order actor: one per order, exactly-once placement (DESIGN 6, docs/trading-core.md).

The actor never blocks between attempts: every wait (the next lookup, the
next poll) is a ``send_after`` tick to itself, so a kill always lands between
two venue calls and a restart resumes from the journaled record.

Placement invariants:
- nothing is sent before the record is journaled ``submitting`` by THIS
  incarnation (``_may_send``); a record found ``submitting`` or ``unknown`` at
  start is resolved by lookup, never by sending;
- an unknown outcome is resolved by lookup; a new client id is journaled
  before it is sent, only after the absence checks, and only once every
  dead-lettered ``CreateOrder`` of the intent is resolved (the invariants in
  full: ``_order_resolve``);
- a cancel that arrives before any registration journals the intent
  ``canceled`` without sending it; a cancel already in flight is retried by
  the actor's own tick, never once more per ``CancelIntent``;
- an acknowledged order the venue no longer knows (repeated not-found over
  ten times ``settle_s``, not among the open orders) ends ``expired`` with the fills the
  venue reports; it is never sent again;
- a fill is journaled (deduplicated by trade id) before it reaches the sink;
  a fill the sink has not taken is handed over again after a restart.

This module holds the actor's state, its messages, the driver (``_step``:
what to do next, from the journaled state) and the helpers every part uses.
The parts are plain functions of the actor, bound in the class body as its
methods (one call per use, as when they were defined inline; no thread hop,
no lock): placement in ``_order_send``, the unknown outcome in
``_order_resolve``, venue replies and polling in ``_order_track``, fills, the
sink and the end in ``_order_fills``, cancel in ``_order_cancel``.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from phalanx.actors.order import (
    _order_cancel,
    _order_fills,
    _order_resolve,
    _order_send,
    _order_track,
)
from phalanx.actors.order._ids import client_order_id
from phalanx.actors.order._machine import _LIVE, transition
from phalanx.actors.order._services import OrderServices
from phalanx.actors.order._snapshot import ZERO, _shows_same, snapshot_of
from phalanx.errors import InvalidTransition
from phalanx.protocols.trading import (
    CancelIntent,
    GetOrder,
    OrderFill,
    OrderIntent,
    OrderSnapshot,
    OrderStatus,
    OrderUpdate,
)
from phalanx.runtime import Actor, Timer, current_trace, trace_scope
from phalanx.storage._orders import OrderRecord

__all__ = ["OrderActor"]


@dataclass(frozen=True)
class _Drive:
    """Start (or resume) the order's work; sent by ``on_start``."""


@dataclass(frozen=True)
class _Tick:
    """A timer tick; ignored unless it is this incarnation's latest."""

    incarnation: int
    seq: int


class OrderActor(Actor):
    """One order's state machine; see the module docstring for its invariants."""

    def __init__(
        self, intent: OrderIntent, services: OrderServices, *, fresh: bool = False
    ) -> None:
        super().__init__()
        self.intent = intent
        self.services = services
        # The starter read no record for the intent just before starting this actor
        # (place_order): the first incarnation skips its own read. A record registered
        # meanwhile (a twin) is met by _register, which then resolves it, never sends.
        self._fresh = fresh
        self.store = services.store
        self.conn = f"{services.exchanges.rstrip('/')}/{intent.exchange}"
        self.record: OrderRecord | None = None
        self._may_send = False  # True only between journaling submitting and sending
        self._misses = 0
        self._interval = services.lookup_interval_s
        self._unknown_since = 0.0
        self._resends = 0
        self._redriven: set[str] = set()  # dead-lettered creates seen redriven
        # The dead-letter store may hold a create of this intent: scanned (a full scan)
        # at the first absence check of an incarnation and after each failed send.
        self._dlq_dirty = True
        self._not_ours: set[str] = set()  # venue orders behind trades, looked up: not ours
        self._gone = 0  # consecutive "order does not exist" for the acknowledged order
        self._gone_since = 0.0
        self._venue_filled: Decimal | None = None  # executed quantity the venue last reported
        self._timer: Timer | None = None
        self._snap: tuple[OrderRecord, OrderSnapshot] | None = None  # (record, its snapshot)
        self._seq = 0
        self._driven = False
        self._done = False

    # --- lifecycle -------------------------------------------------------------

    def on_start(self) -> None:
        self._log = self.system.logs.logger("order")
        self._audit = self.system.logs.logger("audit")
        # A restart (incarnation > 1) always reads: its predecessor may have registered.
        fresh = self._fresh and self.incarnation == 1
        self.record = None if fresh else self.store.get(self.intent.order_req_id)
        if self.record is not None and self.record.status in ("submitting", "unknown"):
            self._unknown_since = self.services.clock()
        self.system.tell(self.path, _Drive())

    def on_stop(self) -> None:
        self._cancel_timer()

    def pre_restart(self, exc: BaseException) -> None:
        self._cancel_timer()

    def introspect(self) -> dict[str, Any]:
        rec = self.record
        return {
            "class": "OrderActor",
            "order_req_id": self.intent.order_req_id,
            "status": rec.status if rec else "new",
            "client_order_id": rec.client_order_id if rec else None,
            "exchange_order_id": rec.exchange_order_id if rec else None,
            "filled": str(rec.filled) if rec else "0",
            "generation": rec.generation if rec else 0,
            "cancel_requested": rec.cancel_requested if rec else False,
            "misses": self._misses,
            "venue_filled": None if self._venue_filled is None else str(self._venue_filled),
        }

    def on_receive(self, message: Any) -> Any:
        with trace_scope(self._trace()):
            if isinstance(message, GetOrder):
                return self.snapshot()
            if isinstance(message, OrderFill):  # a dead-lettered fill, redriven
                if self.services.fill_sink is not None:
                    op = self.services.fill_sink(message)
                    if op is not None:
                        self.store.storage.write_now(op)
                return None
            if isinstance(message, CancelIntent):
                return self._cancel(message.reason)
            if isinstance(message, _Drive):
                if not self._driven:  # a redelivered _Drive and on_start's own: run once
                    self._driven = True
                    self._step()
                return None
            if isinstance(message, _Tick):
                if (message.incarnation, message.seq) == (self.incarnation, self._seq):
                    self._timer = None
                    self._step()
                return None
        return super().on_receive(message)

    def snapshot(self) -> OrderSnapshot:
        """This order's :class:`OrderSnapshot` (status ``new`` before registration)."""
        if self.record is not None:
            return self._snapshot_of_record()
        i = self.intent
        return OrderSnapshot(
            order_req_id=i.order_req_id, client_order_id=client_order_id(i.order_req_id, 0),
            exchange_order_id=None, status="new", symbol=i.symbol, side=i.side,
            amount=i.amount, filled=ZERO, average=None, fee=ZERO,
        )  # fmt: skip

    # --- the driver: what to do next, from the journaled state ------------------

    def _step(self) -> None:
        if self._done:
            return
        if self.record is None:
            self._register()
        rec = self._rec()
        if rec.status == "submitting" and self._may_send:
            self._send()
        elif rec.status in ("submitting", "unknown"):
            if rec.status == "submitting":  # a previous incarnation may have sent
                self._to_unknown("resume_unknown", None)
            if self.services.blind_resend and self._resends < self.services.max_lookup_misses:
                self._resends += 1
                self._send()
            else:
                self._lookup()
        elif rec.terminal:
            self._settle()
        elif rec.status == "canceling" or (rec.cancel_requested and rec.status in _LIVE):
            self._cancel_at_venue()
        else:
            self._poll()

    # --- the parts: plain functions of the actor, bound here as its methods -------

    _register = _order_send._register
    _send = _order_send._send
    _rejected = _order_send._rejected

    _to_unknown = _order_resolve._to_unknown
    _lookup = _order_resolve._lookup
    _backoff = _order_resolve._backoff
    _absence_check = _order_resolve._absence_check
    _retire_dead_creates = _order_resolve._retire_dead_creates
    _find_by_prefix = _order_resolve._find_by_prefix
    _regenerate = _order_resolve._regenerate

    _apply = _order_track._apply
    _logged = _order_track._logged
    _after_change = _order_track._after_change
    _poll = _order_track._poll
    _fetch = _order_track._fetch
    _venue_forgot = _order_track._venue_forgot

    _fill_of = _order_fills._fill_of
    _my_trades = _order_fills._my_trades
    _fills_short = _order_fills._fills_short
    _late_fills = _order_fills._late_fills
    _unsunk = _order_fills._unsunk
    _sink_pending = _order_fills._sink_pending
    _journal_sunk = _order_fills._journal_sunk
    _settle = _order_fills._settle

    _cancel = _order_cancel._cancel
    _cancel_at_venue = _order_cancel._cancel_at_venue

    # --- helpers ------------------------------------------------------------------------

    def _say(self, level: str, event: str, **fields: Any) -> None:
        """Log to the ``order`` taxonomy with the trace ids as they are now."""
        ids, bound = self._trace(), current_trace()
        if all(bound.get(k) == v for k, v in ids.items()):  # scoping them changes nothing
            getattr(self._log, level)(event, **fields)
            return
        with trace_scope(ids):
            getattr(self._log, level)(event, **fields)

    def _rec(self) -> OrderRecord:
        assert self.record is not None, "the order is registered before any venue call"
        return self.record

    def _trace(self) -> dict[str, str]:
        rec, i = self.record, self.intent
        ids = {"order_req_id": i.order_req_id}
        ids["client_order_id"] = rec.client_order_id if rec else client_order_id(i.order_req_id, 0)
        if rec is not None and rec.exchange_order_id:
            ids["exchange_order_id"] = rec.exchange_order_id
        saga_id = rec.saga_id if rec else i.saga_id
        if saga_id:
            ids["saga_id"] = saga_id
        return ids

    def _advance(self, event: Any, state: OrderStatus | None = None) -> OrderStatus | None:
        """The next state, or None (logged and audited) if the table refuses it."""
        current = state if state is not None else self._rec().status
        try:
            return transition(current, event)
        except InvalidTransition as exc:
            self._refused(exc)
            return None

    def _refused(self, exc: InvalidTransition) -> None:
        fields = {"state": exc.state, "transition_event": exc.event, "error": str(exc)}
        self._say("warning", "invalid_transition", **fields)
        with trace_scope(self._trace()):
            self._audit.warning("invalid_transition", **fields)
        self.system.events.publish("invalid_transition", self.path, **fields)

    def _ask(self, message: Any) -> Any:
        return self.system.ask(self.conn, message, timeout=self.services.ask_timeout_s)

    def _notify(self) -> None:
        if self.intent.notify and self.record is not None:
            self.system.tell(self.intent.notify, OrderUpdate(snapshot=self._snapshot_of_record()))

    def _snapshot_of_record(self) -> OrderSnapshot:
        # The update told to notify and the GetOrder after it (often after the sunk
        # marker, which the snapshot does not show) show one snapshot: built once.
        rec = self._rec()
        if self._snap is None or not _shows_same(self._snap[0], rec):
            self._snap = (rec, snapshot_of(rec))
        return self._snap[1]

    def _schedule(self, delay: float) -> None:
        self._cancel_timer()
        self._seq += 1
        self._timer = self.send_after(delay, _Tick(self.incarnation, self._seq))

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _crash(self, point: str) -> None:
        if point in self.services.crash_at and self.incarnation == 1:
            raise ConnectionError(f"test crash point {point} (incarnation 1)")
