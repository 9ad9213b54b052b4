"""The Order actor: one per order, exactly-once placement (DESIGN 6, docs/trading-core.md).

The actor never blocks between attempts: every wait (the next lookup, the
next poll) is a ``send_after`` tick to itself, so a kill always lands between
two venue calls and a restart resumes from the journaled record.

Placement invariants:
- nothing is sent before the record is journaled ``submitting`` by THIS
  incarnation (``_may_send``); a record found ``submitting`` or ``unknown`` at
  start is resolved by lookup, never by sending;
- a new client id (generation + 1) is journaled before it is sent, and only
  after ``max_lookup_misses`` misses, ``settle_s`` since the order became
  unknown, and no order with this intent's client-id prefix among the open
  orders or the orders behind recent trades (every one of them looked up, at
  most ``max_trade_order_lookups`` per check);
- before a new client id (or abandoning the intent), every dead-lettered
  ``CreateOrder`` of the intent still pending is resolved, so no redrive can
  place the intent a second time;
- a cancel that arrives before any registration journals the intent
  ``canceled`` without sending it; a cancel already in flight is retried by
  the actor's own tick, never once more per ``CancelIntent``;
- an acknowledged order the venue no longer knows (repeated not-found over
  ten times ``settle_s``, not among the open orders) ends ``expired`` with the fills the
  venue reports; it is never sent again;
- a fill is journaled (deduplicated by trade id) before it reaches the sink;
  a fill the sink has not taken is handed over again after a restart.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import ccxt
from pykka import Timeout

from phalanx.actors.order._ids import client_order_id, intent_prefix
from phalanx.actors.order._machine import transition
from phalanx.actors.order._plan import plan_reply
from phalanx.errors import DeadLetterError, InvalidTransition, PhalanxError
from phalanx.protocols.exchange import (
    CancelOrder,
    CreateOrder,
    FetchMyTrades,
    FetchOpenOrders,
    FetchOrder,
    OrderReply,
    Trade,
)
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
from phalanx.storage._env import Txn
from phalanx.storage._orders import OrderRecord, OrderStore, add_fills, evolve
from phalanx.supervision import ErrorClass, classify

__all__ = ["CRASH_POINTS", "OrderActor", "OrderServices", "SinkOp", "snapshot_of"]

CRASH_POINTS: frozenset[str] = frozenset(
    {"before_journal", "after_journal", "after_send", "after_ack_before_journal"}
)
ZERO = Decimal(0)
SinkOp = Callable[[Txn], object]
"""A fill sink's write, returned for the actor to commit with the fill's sunk marker."""
_LIVE: tuple[OrderStatus, ...] = ("open", "partially_filled")
_FORGET_SETTLE_FACTOR = 10  # x settle_s of "order does not exist" before an order is gone


@dataclass(frozen=True)
class OrderServices:
    """What every Order actor shares: the store, the venue, the fill sink and the rates.

    ``fill_sink`` is handed each journaled fill once (again after a restart if
    its sunk marker was not journaled); it must be idempotent by trade id. It
    either writes what it writes itself and returns None, or returns that write
    as a storage op, which the actor commits in the same transaction as the
    fill's sunk marker: one write per fill instead of two, and the sink's write
    and the marker commit together or not at all.

    ``crash_at`` and ``blind_resend`` are test-only switches (never config):
    ``crash_at`` raises ``ConnectionError`` once, in incarnation 1, at each named
    point of :data:`CRASH_POINTS`; ``blind_resend`` is the broken actor of issue
    7 that resends the same client id on ``unknown`` instead of looking it up.
    """

    store: OrderStore
    exchanges: str = "/exchanges"  # the connection is at <exchanges>/<intent.exchange>
    # A sink may return a write op instead of committing its own write: the op then
    # commits in the transaction that journals the fill sunk (see _sink_pending).
    fill_sink: Callable[[OrderFill], SinkOp | None] | None = None
    poll_interval_s: float = 0.25  # open orders: one FetchOrder per interval
    lookup_interval_s: float = 0.05  # unknown: first lookup delay, then x2 up to the max
    lookup_max_interval_s: float = 1.0
    max_lookup_misses: int = 3  # OrderNotFound this many times before the absence check
    # ... and at least this long since the order became unknown: longer than a
    # request can sit at the venue before it acts (a timed-out create may still land).
    # ccxt signs Binance requests with recvWindow 10 s: Binance executes a create up
    # to 10 s after it was signed (+1 s of clock tolerance), so 11 s.
    settle_s: float = 11.0
    ask_timeout_s: float = 15.0  # > the connection's timeout_max_ms plus rate-limit waits
    trade_lookback_ms: int = 60_000
    max_trade_order_lookups: int = 20  # FetchOrder calls per absence check, at most
    clock: Callable[[], float] = time.time
    crash_at: frozenset[str] = frozenset()
    blind_resend: bool = False

    def __post_init__(self) -> None:
        unknown = set(self.crash_at) - CRASH_POINTS
        if unknown:
            raise ValueError(
                f"unknown crash points {sorted(unknown)}; valid: {sorted(CRASH_POINTS)}"
            )
        if self.max_lookup_misses < 1:
            raise ValueError("max_lookup_misses must be >= 1")
        if min(self.poll_interval_s, self.lookup_interval_s, self.ask_timeout_s) <= 0:
            raise ValueError("poll_interval_s, lookup_interval_s and ask_timeout_s must be > 0")


@dataclass(frozen=True)
class _Drive:
    """Start (or resume) the order's work; sent by ``on_start``."""


@dataclass(frozen=True)
class _Tick:
    """A timer tick; ignored unless it is this incarnation's latest."""

    incarnation: int
    seq: int


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

    def _register(self, abandon: str | None = None) -> None:
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

    def _send(self) -> None:
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

    # --- unknown: look up by client id, at a bounded rate -------------------------

    def _to_unknown(self, kind: str, error: str | None) -> None:
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

    def _lookup(self) -> None:
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

    def _backoff(self) -> None:
        self._schedule(self._interval)
        self._interval = min(self._interval * 2, self.services.lookup_max_interval_s)

    def _absence_check(self) -> None:
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

    def _retire_dead_creates(self, rec: OrderRecord) -> bool:
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
                if not isinstance(create, CreateOrder) or not create.client_order_id.startswith(
                    prefix
                ):
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

    def _find_by_prefix(self, rec: OrderRecord) -> tuple[OrderReply | None, bool]:
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

    def _regenerate(self) -> None:
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

    # --- the venue told us something ------------------------------------------------

    def _apply(self, reply: OrderReply, kind: str) -> None:
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

    def _my_trades(self, order_id: str | None) -> list[OrderFill]:
        """The trades of venue order ``order_id`` (empty if the fetch fails).

        Asked by order id when there is one: a ``since`` lookup sees one 24-hour
        window of at most 500 trades on Binance, which would hide the fills of an
        order resting longer, or of a busy account.
        """
        rec = self._rec()
        since = int(rec.created_at * 1000) - self.services.trade_lookback_ms
        ask = (
            FetchMyTrades(symbol=rec.symbol, since=since)
            if order_id is None
            else FetchMyTrades(symbol=rec.symbol, order_id=order_id)
        )
        try:
            trades = self._ask(ask).trades
        except Exception as exc:  # the terminal status waits for them: retried next tick
            self._say("warning", "order_trades_failed", error=repr(exc))
            return []
        return [self._fill_of(t, order_id) for t in trades if t.order_id == order_id]

    def _logged(self, before: OrderRecord, new: list[OrderFill]) -> None:
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

    def _fills_short(self) -> bool:
        """True while the venue reports more executed than the journaled fills."""
        return self._venue_filled is not None and self._rec().filled < self._venue_filled

    def _after_change(self) -> None:
        rec = self._rec()
        if rec.terminal:
            self._settle()
        elif rec.cancel_requested and rec.status in _LIVE and not self._fills_short():
            self._cancel_at_venue()
        else:
            self._schedule(self.services.poll_interval_s)

    def _poll(self) -> None:
        rec = self._rec()
        try:
            reply = self._ask(FetchOrder(symbol=rec.symbol, id=rec.exchange_order_id))
        except ccxt.OrderNotFound:
            self._venue_forgot()
            return
        except Exception as exc:
            self._say("warning", "order_poll_failed", error=repr(exc))
            self._schedule(self.services.poll_interval_s)
            return
        self._apply(reply, "poll")

    def _venue_forgot(self) -> None:
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
            trades = self._ask(
                FetchMyTrades(symbol=rec.symbol, order_id=rec.exchange_order_id)
            ).trades
        except Exception as exc:
            self._say("warning", "order_absence_check_failed", error=repr(exc))
            self._schedule(self.services.poll_interval_s)
            return
        for order in listed:
            if order.id == rec.exchange_order_id:
                self._apply(order, "found_by_check")
                return
        fills = [
            self._fill_of(t, t.order_id) for t in trades if t.order_id == rec.exchange_order_id
        ]
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

    def _rejected(self, exc: BaseException) -> None:
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

    # --- fills ------------------------------------------------------------------------

    def _late_fills(self) -> bool:
        """Terminal but short of the venue's executed quantity: fetch and journal the rest."""
        rec = self._rec()
        record, new = self.store.record_fills(
            rec.order_req_id, self._my_trades(rec.exchange_order_id)
        )
        self.record = record
        if new:
            self._logged(rec, new)  # a fill after the terminal status still counts
            self._notify()
        self._sink_pending()
        return bool(new)

    def _fill_of(self, t: Trade, order_id: str | None) -> OrderFill:
        rec = self._rec()
        return OrderFill(
            trade_id=t.id, order_req_id=rec.order_req_id, exchange_order_id=t.order_id or order_id,
            symbol=rec.symbol, side=rec.side, price=t.price, amount=t.amount,
            fee=t.fee_cost or ZERO, fee_currency=t.fee_currency, timestamp=t.timestamp,
        )  # fmt: skip

    def _unsunk(self) -> list[str]:
        """Journaled trade ids the sink has not taken yet (none without a sink)."""
        rec = self._rec()
        if self.services.fill_sink is None:
            return []
        return [tid for tid in rec.fills if tid not in rec.sunk]

    def _sink_pending(self) -> None:
        """Hand the journaled fills the sink has not taken yet to it, in order.

        A transient or unknown failure stops the round (retried at the next
        tick). A permanent one (the sink refuses that fill as such) dead-letters
        the fill, reason ``permanent_error``, so it is neither retried forever
        nor lost; redriving it to this actor hands it to the sink again.

        A sink that returns its write as an op gets it committed with the sunk
        marker of the fills taken so far, this one included (a fill of the hot
        path: one ``fills_sunk`` event with its trade id, as with a sink that
        writes itself); an error from that write counts as the sink's for the fill.
        """
        sink, pending = self.services.fill_sink, self._unsunk()
        if sink is None or not pending:
            return
        rec = self._rec()
        taken: list[str] = []  # taken and not journaled sunk yet
        dead: list[str] = []
        for tid in pending:
            try:
                op = sink(rec.fills[tid])
                if op is not None:
                    self._journal_sunk([*taken, tid], dead, op)
                    taken, dead = [], []
                    continue
            except Exception as exc:
                fields = {"trade_id": tid, "error": repr(exc)}
                permanent = classify(exc) is ErrorClass.PERMANENT
                event = "order_fill_dead_lettered" if permanent else "order_fill_sink_failed"
                self._say("error", event, **fields)
                with trace_scope(self._trace()) as trace:
                    self._audit.error(event, **fields)
                    if not permanent:
                        break
                    self.system.dead_letters.put(
                        reason="permanent_error", message=rec.fills[tid], target=self.path,
                        sender=self.path, error=exc, trace=trace, wait=True,
                    )  # fmt: skip
                dead.append(tid)
            taken.append(tid)
        if taken:
            self._journal_sunk(taken, dead)

    def _journal_sunk(self, taken: list[str], dead: list[str], first: SinkOp | None = None) -> None:
        """Journal ``taken`` sunk (one ``fills_sunk`` event), after ``first`` in its txn."""
        rec = self._rec()

        def change(r: OrderRecord) -> OrderRecord:
            # A write that timed out may have committed: a trade id is listed once.
            return evolve(r, sunk=(*r.sunk, *(t for t in taken if t not in r.sunk)))

        if first is None:
            self.record = self.store.update(
                rec.order_req_id, change, "fills_sunk", trade_ids=taken, dead_lettered=dead
            )
        else:
            self.record = self.store.update_after(
                first, rec.order_req_id, change, "fills_sunk", trade_ids=taken, dead_lettered=dead
            )

    # --- cancel ------------------------------------------------------------------------

    def _cancel(self, reason: str) -> OrderSnapshot:
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

    def _cancel_at_venue(self) -> None:
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
            try:
                reply = self._ask(FetchOrder(symbol=rec.symbol, id=rec.exchange_order_id))
            except ccxt.OrderNotFound:
                self._venue_forgot()
                return
            except Exception as exc:
                self._say("warning", "order_cancel_failed", error=repr(exc))
                self._schedule(self.services.poll_interval_s)
                return
        except Exception as exc:
            self._say("warning", "order_cancel_failed", error=repr(exc))
            self._schedule(self.services.poll_interval_s)
            return
        self._say("info", "order_cancel", venue_status=reply.status, filled=str(reply.filled))
        self._apply(reply, "cancel")

    # --- the end -------------------------------------------------------------------------

    def _settle(self) -> None:
        """Stop once terminal with every venue fill journaled and sunk; else retry later."""
        rec = self._rec()
        if self._venue_filled is None and rec.exchange_order_id is not None:
            self._poll()  # a restart found it terminal: learn the venue's filled first
            return
        if self._fills_short():
            self._late_fills()
            if self._fills_short():
                self._schedule(self.services.poll_interval_s)
                return
        self._sink_pending()
        rec = self._rec()
        if self._unsunk():
            self._schedule(self.services.poll_interval_s)
            return
        if self._done:
            return
        self._done = True
        self._cancel_timer()
        self._say(
            "info", "order_done", status=rec.status, filled=str(rec.filled), fee=str(rec.fee),
            fees={c: str(v) for c, v in self._snapshot_of_record().fees.items()},
            fills=len(rec.fills), generation=rec.generation,
        )  # fmt: skip
        self.stop()

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
