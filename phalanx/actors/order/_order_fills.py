"""Fills: fetched by venue order id, journaled before the sink, sunk, and the actor's end.

Functions of :class:`~phalanx.actors.order._order.OrderActor` taking the
actor, bound in its class body as its methods.

Invariants:
- a fill is journaled (deduplicated by trade id) before it reaches the sink;
  a fill the sink has not taken is handed over again after a restart (its
  sunk marker is journaled only once the sink took it);
- a fill the sink refuses permanently is dead-lettered (``permanent_error``):
  neither retried forever nor lost;
- the actor stops (``_settle``) only once terminal with every fill the venue
  reports executed journaled and sunk.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from phalanx.actors.order._services import SinkOp
from phalanx.actors.order._snapshot import ZERO
from phalanx.protocols.exchange import FetchMyTrades, Trade
from phalanx.protocols.trading import OrderFill
from phalanx.runtime import trace_scope
from phalanx.storage._orders import OrderRecord, evolve
from phalanx.supervision import ErrorClass, classify

if TYPE_CHECKING:
    from phalanx.actors.order._order import OrderActor

__all__: list[str] = []


def _fill_of(self: OrderActor, t: Trade, order_id: str | None) -> OrderFill:
    rec = self._rec()
    return OrderFill(
        trade_id=t.id, order_req_id=rec.order_req_id, exchange_order_id=t.order_id or order_id,
        symbol=rec.symbol, side=rec.side, price=t.price, amount=t.amount,
        fee=t.fee_cost or ZERO, fee_currency=t.fee_currency, timestamp=t.timestamp,
    )  # fmt: skip


def _my_trades(self: OrderActor, order_id: str | None) -> list[OrderFill]:
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


def _fills_short(self: OrderActor) -> bool:
    """True while the venue reports more executed than the journaled fills."""
    return self._venue_filled is not None and self._rec().filled < self._venue_filled


def _late_fills(self: OrderActor) -> bool:
    """Terminal but short of the venue's executed quantity: fetch and journal the rest."""
    rec = self._rec()
    record, new = self.store.record_fills(rec.order_req_id, self._my_trades(rec.exchange_order_id))
    self.record = record
    if new:
        self._logged(rec, new)  # a fill after the terminal status still counts
        self._notify()
    self._sink_pending()
    return bool(new)


def _unsunk(self: OrderActor) -> list[str]:
    """Journaled trade ids the sink has not taken yet (none without a sink)."""
    rec = self._rec()
    if self.services.fill_sink is None:
        return []
    return [tid for tid in rec.fills if tid not in rec.sunk]


def _sink_pending(self: OrderActor) -> None:
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


def _journal_sunk(
    self: OrderActor, taken: list[str], dead: list[str], first: SinkOp | None = None
) -> None:
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


def _settle(self: OrderActor) -> None:
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
