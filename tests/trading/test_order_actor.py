"""The Order actor against the embedded venue, through a real ExchangeConnection over ccxt HTTP."""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qs

import pytest

from phalanx import ActorSystem
from phalanx.actors.exchange import connection_spec
from phalanx.actors.order import (
    adopt_external,
    cancel_order,
    client_order_id,
    find_owner,
    intent_of,
    order_path,
    order_snapshot,
    order_supervisor_spec,
    place_order,
    resume_orders,
    start_order_supervisor,
)
from phalanx.actors.order._ids import order_child_id
from phalanx.actors.venue import Fault, PaperVenue
from phalanx.protocols.exchange import FetchOrder
from phalanx.protocols.trading import GetOrder, OrderFill, OrderIntent, OrderSnapshot, OrderUpdate
from phalanx.runtime import Actor
from phalanx.runtime._config import ExchangeConfig
from phalanx.storage._orders import OrderRecord
from phalanx.supervision._supervisor import SupervisorRef
from tests.trading._order_rig import ACCOUNT, BTC, wait_until
from tests.trading._order_rig import Rig as OrderRig


class Updates:
    """What the notify path received."""

    def __init__(self) -> None:
        self.snapshots: list[OrderSnapshot] = []
        self.cond = threading.Condition()

    def add(self, snap: OrderSnapshot) -> None:
        with self.cond:
            self.snapshots.append(snap)
            self.cond.notify_all()

    def wait(self, pred: Callable[[OrderSnapshot], bool], timeout: float = 10.0) -> OrderSnapshot:
        with self.cond:
            ok = self.cond.wait_for(lambda: any(pred(s) for s in self.snapshots), timeout)
            assert ok, f"no matching update in {timeout}s; got {[s.status for s in self.snapshots]}"
            return next(s for s in self.snapshots if pred(s))


class Collector(Actor):
    def __init__(self, updates: Updates) -> None:
        super().__init__()
        self.updates = updates

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, OrderUpdate):
            self.updates.add(message.snapshot)
            return None
        return super().on_receive(message)


@pytest.fixture
def venue() -> Iterator[PaperVenue]:
    with PaperVenue(seed=7) as v:
        yield v


class Rig(OrderRig):
    """The shared order rig, with every intent notifying a collector of updates."""

    def __init__(self, system: ActorSystem, venue: PaperVenue, **services: Any) -> None:
        super().__init__(system, venue, **services)
        self.updates = Updates()
        system.spawn(Collector, "/collector", self.updates)

    def intent(
        self, req: str, type: str = "market", amount: str = "0.01", **kw: Any
    ) -> OrderIntent:
        return super().intent(req, type, amount, notify="/collector", **kw)

    def order_requests(self) -> list[str]:
        return [
            f"{r['method']} {r['path']}"
            for r in self.venue.requests
            if r["path"] in ("/api/v3/order", "/api/v3/openOrders", "/api/v3/myTrades")
        ]

    def order_log(self) -> list[dict[str, Any]]:
        text = (self.system.var_dir / "logs" / "order.jsonl").read_text(encoding="utf-8")
        return [json.loads(line) for line in text.splitlines()]


def test_market_buy_fills_with_fee_is_journaled_sunk_notified_and_logged(
    system: ActorSystem, venue: PaperVenue
) -> None:
    rig = Rig(system, venue)
    record = rig.run(rig.intent("m1"))
    assert record.status == "filled"
    assert record.filled == Decimal("0.01")
    [fill] = record.fills.values()
    assert fill.fee == (fill.price * fill.amount * Decimal("0.001")).quantize(Decimal("1e-8"))
    assert fill.fee_currency == "USDT"
    assert record.fee == fill.fee
    assert [f.trade_id for f in rig.sink.fills] == [fill.trade_id]
    assert [o["clientOrderId"] for o in rig.venue_orders("m1")] == [client_order_id("m1", 0)]
    final = rig.updates.wait(lambda s: s.terminal)
    assert (final.status, final.filled, final.average) == ("filled", Decimal("0.01"), fill.price)
    events = {line["event"]: line for line in rig.order_log() if line.get("order_req_id") == "m1"}
    assert {"order_attempt", "order_ack", "order_fill", "order_done"} <= set(events)
    ack = events["order_ack"]
    assert ack["client_order_id"] == client_order_id("m1", 0)
    assert ack["exchange_order_id"] == record.exchange_order_id
    assert ack["saga_id"] == "saga-m1"
    assert events["order_done"]["exchange_order_id"] == record.exchange_order_id
    system.logs.flush()  # the tracer is written in batches, off the actor thread
    tracer = (system.var_dir / "logs" / "tracer.jsonl").read_text(encoding="utf-8").splitlines()
    creates = [
        line for line in map(json.loads, tracer) if line.get("endpoint") == "create_order"
    ]  # the connection's own line carries the order's trace ids from the envelope
    assert [(c["order_req_id"], c["client_order_id"], c["saga_id"]) for c in creates] == [
        ("m1", client_order_id("m1", 0), "saga-m1")
    ]


def test_resting_limit_order_is_polled_until_the_market_fills_it_as_maker(
    system: ActorSystem, venue: PaperVenue
) -> None:
    rig = Rig(system, venue)
    ask = Decimal(venue.engine.ticker("BTCUSDT")["askPrice"])
    intent = rig.intent("l1", type="limit", amount="0.01", price=ask - Decimal("0.01"))
    place_order(system, intent)
    rig.updates.wait(lambda s: s.status == "open")
    live = system.ask(order_path("l1"), GetOrder(), timeout=5)
    assert live == order_snapshot(system, "l1")
    assert (live.status, live.terminal, live.filled) == ("open", False, 0)
    for _ in range(500):  # the seeded walk crosses the bid within a few steps
        if (
            venue.engine.get_order(ACCOUNT, "BTCUSDT", None, client_order_id("l1", 0))["status"]
            == "FILLED"
        ):
            break
        venue.engine.step()
    record = rig.wait_done("l1")
    assert record.status == "filled"
    # Its fills were asked by venue order id, never by a since-window of the account's.
    trades = [r for r in venue.requests if r["path"] == "/api/v3/myTrades"]
    assert trades
    assert all(f"orderId={record.exchange_order_id}" in r["query"] for r in trades)
    [fill] = record.fills.values()
    assert fill.price == ask - Decimal("0.01")
    assert fill.fee == (fill.price * fill.amount * Decimal("0.0008")).quantize(Decimal("1e-8"))
    assert len(rig.venue_orders("l1")) == 1


@pytest.mark.parametrize(
    "point", ["before_journal", "after_journal", "after_send", "after_ack_before_journal"]
)
def test_a_crash_at_each_crash_point_yields_exactly_one_venue_order(
    system: ActorSystem, venue: PaperVenue, point: str
) -> None:
    rig = Rig(system, venue, crash_at=frozenset({point}))
    restarts = system.events.subscribe(kinds={"child_restarting"})
    try:
        record = rig.run(rig.intent(f"c-{point}"))
        assert restarts.get(timeout=5) is not None  # the crash point really fired
    finally:
        restarts.close()
    assert record.status == "filled"
    assert record.filled == Decimal("0.01")
    assert len(rig.venue_orders(f"c-{point}")) == 1
    assert len(rig.sink.fills) == 1
    posts = rig.order_requests().count("POST /api/v3/order")
    # after_journal crashes before any send: the lookup misses, then generation 1 is sent.
    assert posts == 1
    expected_generation = 1 if point == "after_journal" else 0
    assert record.generation == expected_generation


def test_accepted_but_response_lost_is_resolved_by_lookup_to_one_filled_order(
    system: ActorSystem, venue: PaperVenue
) -> None:
    rig = Rig(system, venue)
    venue.inject(Fault("lost", endpoint="POST /api/v3/order", when="after"))
    record = rig.run(rig.intent("lost1"))
    assert record.status == "filled"
    assert record.generation == 0
    assert len(rig.venue_orders("lost1")) == 1
    assert len(rig.sink.fills) == 1  # the fill came from myTrades: the create reply was lost
    assert rig.order_requests()[:2] == ["POST /api/v3/order", "GET /api/v3/order"]
    assert "order_unknown" in {line["event"] for line in rig.order_log()}


def test_5xx_before_the_action_places_once_with_a_new_id_only_after_misses_and_checks(
    system: ActorSystem, venue: PaperVenue
) -> None:
    rig = Rig(system, venue)
    venue.inject(Fault("http_503", endpoint="POST /api/v3/order"))
    record = rig.run(rig.intent("x1"))
    assert record.status == "filled"
    assert record.generation == 1
    assert [o["clientOrderId"] for o in rig.venue_orders("x1")] == [client_order_id("x1", 1)]
    seq = rig.order_requests()
    first, second = (i for i, r in enumerate(seq) if r == "POST /api/v3/order")
    between = seq[first + 1 : second]
    assert between.count("GET /api/v3/order") >= 3  # OrderNotFound, N times
    assert between[-2:] == ["GET /api/v3/openOrders", "GET /api/v3/myTrades"]
    retries = [line for line in rig.order_log() if line["event"] == "retry_attempt"]
    new_gen = [line for line in retries if line["action"] == "new_generation"]
    assert [line["client_order_id"] for line in new_gen] == [client_order_id("x1", 1)]
    kinds = [e["kind"] for e in rig.store.events("x1")]
    assert kinds.index("regenerated") < kinds.index("ack")  # journaled before the send


def test_a_late_arrival_found_in_open_orders_is_adopted_instead_of_a_new_generation(
    system: ActorSystem, venue: PaperVenue
) -> None:
    # The lookup by client id keeps missing (a lagging venue index), but the
    # order rests in the open orders: the check must find it and never resend.
    rig = Rig(system, venue, max_lookup_misses=2)
    bid = Decimal(venue.engine.ticker("BTCUSDT")["bidPrice"])
    cid = client_order_id("late1", 0)
    venue.inject(Fault("http_503", endpoint="POST /api/v3/order"))
    price = bid - Decimal("100")
    venue.engine.place(
        ACCOUNT, {"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT",
                  "quantity": "0.01", "price": str(price), "newClientOrderId": cid},
    )  # fmt: skip
    venue.engine._by_client.pop((ACCOUNT, "BTCUSDT", cid))  # lookups by client id now miss
    place_order(system, rig.intent("late1", type="limit", price=price))
    snap = rig.updates.wait(lambda s: s.status == "open")
    assert snap.client_order_id == cid
    assert rig.order_requests().count("POST /api/v3/order") == 1  # the 503, nothing more
    assert len(rig.venue_orders("late1")) == 1
    final = cancel_order(system, "late1")
    assert final is not None
    assert final.status == "canceled"
    rig.wait_done("late1")


def test_blind_resend_after_a_lost_response_duplicates_a_market_order(
    system: ActorSystem, venue: PaperVenue
) -> None:
    rig = Rig(system, venue, blind_resend=True)
    venue.inject(Fault("lost", endpoint="POST /api/v3/order", when="after"))
    record = rig.run(rig.intent("blind1"))
    dupes = rig.venue_orders("blind1")
    assert [o["clientOrderId"] for o in dupes] == [client_order_id("blind1", 0)] * 2
    assert record.status == "filled"


def test_fills_are_deduplicated_by_trade_id_across_the_create_reply_and_my_trades(
    system: ActorSystem, venue: PaperVenue
) -> None:
    rig = Rig(system, venue)
    ask = Decimal(venue.engine.ticker("BTCUSDT")["askPrice"])
    # 0.08 > the 0.05 book depth: a taker fill now, the rest rests at the ask.
    place_order(system, rig.intent("d1", type="limit", amount="0.08", price=ask))
    rig.updates.wait(lambda s: s.status == "partially_filled" and s.filled == Decimal("0.05"))
    cid = client_order_id("d1", 0)
    for _ in range(500):
        if venue.engine.get_order(ACCOUNT, "BTCUSDT", None, cid)["status"] == "FILLED":
            break
        venue.engine.step()
    record = rig.wait_done("d1")
    assert record.status == "filled"
    assert record.filled == Decimal("0.08")
    trade_ids = [f.trade_id for f in rig.sink.fills]
    assert len(trade_ids) == 2
    assert len(set(trade_ids)) == 2
    assert sorted(record.fills) == sorted(trade_ids)
    venue_trades = venue.engine.my_trades(ACCOUNT, "BTCUSDT")
    assert len(venue_trades) == 2


def test_cancel_then_a_late_fill_still_counts_and_the_status_stays_canceled(
    system: ActorSystem, venue: PaperVenue
) -> None:
    rig = Rig(system, venue, poll_interval_s=30.0)  # no poll sees the fill before the cancel
    ask = Decimal(venue.engine.ticker("BTCUSDT")["askPrice"])
    place_order(system, rig.intent("k1", type="limit", amount="0.08", price=ask - Decimal("0.01")))
    rig.updates.wait(lambda s: s.status == "open")
    cid = client_order_id("k1", 0)
    for _ in range(500):
        if venue.engine.get_order(ACCOUNT, "BTCUSDT", None, cid)["executedQty"] != "0":
            break
        venue.engine.step()
    assert rig.store.get("k1").filled == 0  # type: ignore[union-attr]
    snap = cancel_order(system, "k1")
    assert snap is not None
    assert (snap.status, snap.filled, len(snap.fills)) == ("canceled", Decimal("0.05"), 1)
    record = rig.wait_done("k1")
    assert (record.status, record.filled) == ("canceled", Decimal("0.05"))
    assert len(rig.sink.fills) == 1
    events = rig.store.events("k1")
    kinds = [e["kind"] for e in events]
    # learned after the cancel was sent; canceled is journaled together with the fill
    cancel = events[kinds.index("cancel")]
    assert kinds.index("canceling") < kinds.index("cancel")
    assert (cancel["status"], cancel["trade_ids"]) == ("canceled", list(record.fills))
    again = cancel_order(system, "k1")
    assert again == snapshot_without_change(snap, again)
    assert rig.order_requests().count("DELETE /api/v3/order") == 1


def test_a_cancel_of_an_order_the_venue_filled_meanwhile_adopts_the_fill_it_fetches(
    system: ActorSystem, venue: PaperVenue
) -> None:
    rig = Rig(system, venue, poll_interval_s=30.0)  # no poll sees the fill before the cancel
    ask = Decimal(venue.engine.ticker("BTCUSDT")["askPrice"])
    place_order(system, rig.intent("nf1", type="limit", amount="0.01", price=ask - Decimal("0.01")))
    rig.updates.wait(lambda s: s.status == "open")
    cid = client_order_id("nf1", 0)
    for _ in range(500):  # the seeded walk fills it in full at the venue
        if venue.engine.get_order(ACCOUNT, "BTCUSDT", None, cid)["status"] == "FILLED":
            break
        venue.engine.step()
    assert rig.store.get("nf1").status == "open"  # type: ignore[union-attr]
    snap = cancel_order(system, "nf1")  # the venue answers -2011: not open any more
    assert snap is not None
    record = rig.wait_done("nf1")
    assert (record.status, record.filled) == ("filled", Decimal("0.01"))
    assert len(rig.sink.fills) == 1
    requests = rig.order_requests()
    assert requests.count("DELETE /api/v3/order") == 1
    # The final state came from the fetch after the refused cancel.
    assert "GET /api/v3/order" in requests[requests.index("DELETE /api/v3/order") :]


def snapshot_without_change(before: OrderSnapshot, after: OrderSnapshot | None) -> OrderSnapshot:
    assert after is not None
    assert (after.status, after.filled, after.fills) == (before.status, before.filled, before.fills)
    return after


def test_insufficient_funds_is_rejected_once_and_the_actor_stops(
    system: ActorSystem, venue: PaperVenue
) -> None:
    rig = Rig(system, venue)
    record = rig.run(rig.intent("big", amount="50"))
    assert record.status == "rejected"
    assert rig.order_requests() == ["POST /api/v3/order"]
    assert rig.updates.wait(lambda s: s.terminal).status == "rejected"


def test_a_restarted_node_looks_up_an_unknown_order_before_sending_anything(
    system: ActorSystem, venue: PaperVenue
) -> None:
    rig = Rig(system, venue)
    cid = client_order_id("r1", 0)
    rig.store.register(
        OrderRecord(
            order_req_id="r1", client_order_id=cid, generation=0, status="submitting",
            symbol=BTC, side="buy", type="market", amount=Decimal("0.01"), created_at=time.time(),
            notify="/collector",
        )
    )  # fmt: skip
    venue.engine.place(  # the previous node's send, which it never saw answered
        ACCOUNT, {"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET", "quantity": "0.01",
                  "newClientOrderId": cid},
    )  # fmt: skip
    refs = resume_orders(system)
    assert [r.path for r in refs] == [order_path("r1")]
    record = rig.wait_done("r1")
    assert record.status == "filled"
    assert len(record.fills) == 1
    assert "POST /api/v3/order" not in rig.order_requests()
    assert len(rig.venue_orders("r1")) == 1


def test_place_order_is_idempotent_for_a_running_or_a_finished_order(
    system: ActorSystem, venue: PaperVenue
) -> None:
    rig = Rig(system, venue)
    intent = rig.intent("i1")
    first = place_order(system, intent)
    second = place_order(system, intent)
    assert first.path == second.path == order_path("i1")
    rig.wait_done("i1")
    place_order(system, intent)  # terminal record: not placed again
    assert not system.is_alive(order_path("i1"))
    assert len(rig.venue_orders("i1")) == 1
    snap = order_snapshot(system, "i1")
    assert snap is not None
    assert snap.status == "filled"
    assert order_snapshot(system, "nobody") is None
    owner = find_owner(rig.store, client_order_id("i1", 3))  # any generation of the intent
    assert owner is not None
    assert owner.order_req_id == "i1"
    assert find_owner(rig.store, "px-0000-0") is None


def test_a_fill_the_sink_refused_is_handed_over_again_and_only_then_the_actor_stops(
    system: ActorSystem, venue: PaperVenue
) -> None:
    rig = Rig(system, venue)
    rig.sink.fail_next = 2
    record = rig.run(rig.intent("s1"))
    assert len(rig.sink.fills) == 1
    assert record.sunk == tuple(record.fills)
    audit = (system.var_dir / "logs" / "audit.jsonl").read_text()
    assert "order_fill_sink_failed" in audit


def test_an_external_venue_order_is_adopted_tracked_and_its_fills_sunk(
    system: ActorSystem, venue: PaperVenue
) -> None:
    rig = Rig(system, venue)
    placed = venue.engine.place(
        ACCOUNT, {"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET", "quantity": "0.02",
                  "newClientOrderId": "manual-1"},
    )  # fmt: skip
    reply = system.ask(
        "/exchanges/paper", FetchOrder(symbol=BTC, id=str(placed["orderId"])), timeout=5
    )
    record = adopt_external(system, reply)
    assert record.external
    assert record.status == "filled"
    done = rig.wait_done(record.order_req_id)
    assert done.filled == Decimal("0.02")
    assert [f.amount for f in rig.sink.fills] == [Decimal("0.02")]
    again = adopt_external(system, reply)  # idempotent: same record, no second actor run
    assert again.order_req_id == record.order_req_id
    assert not system.is_alive(order_path(record.order_req_id))
    snap = order_snapshot(system, record.order_req_id)
    assert snap is not None
    assert snap.external
    assert find_owner(rig.store, "manual-1") == rig.store.get(record.order_req_id)


def test_a_killed_order_actor_resumes_from_its_record_without_a_second_order(
    system: ActorSystem, venue: PaperVenue
) -> None:
    rig = Rig(system, venue, poll_interval_s=0.02)
    ask = Decimal(venue.engine.ticker("BTCUSDT")["askPrice"])
    place_order(system, rig.intent("kill1", type="limit", price=ask - Decimal("0.01")))
    rig.updates.wait(lambda s: s.status == "open")
    for _ in range(3):
        system.kill(order_path("kill1"))
        wait_until(lambda: system.is_alive(order_path("kill1")), 5, "restart")
    cid = client_order_id("kill1", 0)
    for _ in range(500):
        if venue.engine.get_order(ACCOUNT, "BTCUSDT", None, cid)["status"] == "FILLED":
            break
        venue.engine.step()
    record = rig.wait_done("kill1")
    assert record.status == "filled"
    assert len(rig.venue_orders("kill1")) == 1
    assert len(rig.sink.fills) == 1


def test_the_supervisor_child_id_is_o_dash_req_id(system: ActorSystem, venue: PaperVenue) -> None:
    rig = Rig(system, venue)
    place_order(system, rig.intent("p1"))
    ids = [c["id"] for c in SupervisorRef(system, "/orders").which_children()]
    assert ids in ([order_child_id("p1")], [])  # [] once it finished
    rig.wait_done("p1")


def test_a_cancel_while_unknown_never_places_when_the_lookup_proves_it_absent(
    system: ActorSystem, venue: PaperVenue
) -> None:
    rig = Rig(system, venue, settle_s=0.5, lookup_max_interval_s=0.05)
    venue.inject(Fault("http_503", endpoint="POST /api/v3/order"))
    place_order(system, rig.intent("u1"))
    rig.updates.wait(lambda s: s.status == "unknown")
    snap = cancel_order(system, "u1", "saga_timeout")
    assert snap is not None
    assert (snap.status, snap.terminal) == ("unknown", False)  # resolution goes on
    record = rig.wait_done("u1")
    assert (record.status, record.filled, record.cancel_requested) == ("canceled", 0, True)
    assert rig.venue_orders("u1") == []
    assert rig.order_requests().count("POST /api/v3/order") == 1


def test_a_cancel_while_unknown_cancels_the_order_once_the_lookup_finds_it(
    system: ActorSystem, venue: PaperVenue
) -> None:
    rig = Rig(system, venue, lookup_interval_s=0.3)
    bid = Decimal(venue.engine.ticker("BTCUSDT")["bidPrice"])
    venue.inject(Fault("lost", endpoint="POST /api/v3/order", when="after"))
    place_order(system, rig.intent("u2", type="limit", price=bid - Decimal(100)))
    rig.updates.wait(lambda s: s.status == "unknown")
    cancel_order(system, "u2")
    record = rig.wait_done("u2")
    assert record.status == "canceled"
    assert record.exchange_order_id is not None
    assert len(rig.venue_orders("u2")) == 1
    assert venue.engine.open_orders(ACCOUNT, None) == []


def test_a_create_that_lands_after_the_client_timeout_is_found_not_sent_again(
    system: ActorSystem, venue: PaperVenue
) -> None:
    # The venue acts 1.2 s after the request; the client gave up at 0.3 s.
    # settle_s keeps the actor looking it up instead of sending generation 1.
    rig = Rig(system, venue, settle_s=2.0, lookup_max_interval_s=0.2)
    rig.system.stop("/exchanges")
    cc = venue.ccxt_config()
    config = ExchangeConfig(
        name="paper", urls=cc["urls"], options=cc["options"], rate_limit_per_s=1000,
        burst=1000, timeout_min_ms=300, timeout_default_ms=300, timeout_max_ms=300,
    )  # fmt: skip
    spec = connection_spec(config, client_config={"apiKey": cc["apiKey"], "secret": cc["secret"]})
    system.supervise("/exchanges", intensity=10, period=5, children=[spec])
    venue.inject(Fault("latency", endpoint="POST /api/v3/order", latency_ms=1200))
    record = rig.run(rig.intent("slow1"))
    assert record.status == "filled"
    assert record.generation == 0
    assert len(rig.venue_orders("slow1")) == 1
    kinds = [e["kind"] for e in rig.store.events("slow1")]
    assert "ambiguous" in kinds
    assert "regenerated" not in kinds


def test_an_invalid_transition_is_logged_audited_and_the_state_kept(
    system: ActorSystem, venue: PaperVenue
) -> None:
    rig = Rig(system, venue)
    bid = Decimal(venue.engine.ticker("BTCUSDT")["bidPrice"])
    cid = client_order_id("bad1", 0)
    placed = venue.engine.place(
        ACCOUNT, {"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "quantity": "0.01",
                  "price": str(bid - 100), "newClientOrderId": cid},
    )  # fmt: skip
    rig.store.register(  # the record says partially filled; the venue says open, nothing filled
        OrderRecord(
            order_req_id="bad1", client_order_id=cid, generation=0, status="partially_filled",
            symbol=BTC, side="buy", type="limit", amount=Decimal("0.01"),
            price=bid - 100, exchange_order_id=str(placed["orderId"]), created_at=time.time(),
        )
    )  # fmt: skip
    invalid = system.events.subscribe(kinds={"invalid_transition"})
    try:
        resume_orders(system)
        event = invalid.get(timeout=5)
    finally:
        invalid.close()
    assert event is not None
    assert (event.fields["state"], event.fields["transition_event"]) == (
        "partially_filled",
        "venue_open",
    )
    snap = order_snapshot(system, "bad1")
    assert snap is not None
    assert snap.status == "partially_filled"
    audit = [
        json.loads(line)
        for line in (system.var_dir / "logs" / "audit.jsonl").read_text().splitlines()
    ]
    assert any(
        line["event"] == "invalid_transition" and line["order_req_id"] == "bad1" for line in audit
    )
    final = cancel_order(system, "bad1")
    assert final is not None
    assert final.status == "canceled"
    rig.wait_done("bad1")


def test_the_orders_supervisor_spec_nests_under_another_supervisor(
    system: ActorSystem, venue: PaperVenue
) -> None:
    rig = Rig(system, venue)
    system.supervise("/trading", children=[order_supervisor_spec(rig.services)])
    intent = rig.intent("n1")
    ref = place_order(system, intent, supervisor="/trading/orders")
    assert ref.path == "/trading/orders/o-n1"
    wait_until(lambda: (r := rig.store.get("n1")) is not None and r.terminal, what="n1 filled")
    wait_until(lambda: not system.is_alive(ref.path), what="n1 stopped")
    assert len(rig.venue_orders("n1")) == 1


def test_a_fill_found_after_the_record_says_canceled_still_counts_and_stays_canceled(
    system: ActorSystem, venue: PaperVenue
) -> None:
    rig = Rig(system, venue)
    ask = Decimal(venue.engine.ticker("BTCUSDT")["askPrice"])
    cid = client_order_id("lc1", 0)
    placed = venue.engine.place(  # 0.05 fills at once (book depth), the rest rests
        ACCOUNT, {"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "quantity": "0.08",
                  "price": str(ask), "newClientOrderId": cid},
    )  # fmt: skip
    venue.engine.cancel(ACCOUNT, "BTCUSDT", str(placed["orderId"]), None)
    record = OrderRecord(  # a node that journaled the cancel but never saw the fill
        order_req_id="lc1", client_order_id=cid, generation=0, status="canceled",
        symbol=BTC, side="buy", type="limit", amount=Decimal("0.08"), price=ask,
        exchange_order_id=str(placed["orderId"]), created_at=time.time(),
    )  # fmt: skip
    rig.store.register(record)
    SupervisorRef(system, "/orders").start_child(
        child_id=order_child_id("lc1"), intent=intent_of(record)
    )
    done = rig.wait_done("lc1")
    assert (done.status, done.filled, len(done.fills)) == ("canceled", Decimal("0.05"), 1)
    assert [f.amount for f in rig.sink.fills] == [Decimal("0.05")]


def test_a_market_order_larger_than_the_book_ends_expired_with_every_partial_fill(
    system: ActorSystem, venue: PaperVenue
) -> None:
    rig = Rig(system, venue)
    record = rig.run(rig.intent("e1", amount="1.5"))  # the book holds 20 x 0.05
    assert record.status == "expired"
    assert record.filled == Decimal("1.0")
    assert len(record.fills) == 20
    assert len(rig.sink.fills) == 20
    assert rig.updates.wait(lambda s: s.terminal).filled == Decimal("1.0")


def test_a_market_sell_fills_and_its_fill_carries_the_sell_side(
    system: ActorSystem, venue: PaperVenue
) -> None:
    rig = Rig(system, venue)
    record = rig.run(rig.intent("sell1", side="sell"))
    assert (record.status, record.side, record.filled) == ("filled", "sell", Decimal("0.01"))
    [fill] = rig.sink.fills
    assert (fill.side, fill.order_req_id, fill.exchange_order_id) == (
        "sell",
        "sell1",
        record.exchange_order_id,
    )
    assert venue.engine.balances(ACCOUNT)["BTC"]["free"] == "0.99"


class _Refused(Exception):
    phalanx_error_class = "permanent"


def test_a_fill_the_sink_refuses_permanently_is_dead_lettered_and_the_order_still_ends(
    system: ActorSystem, venue: PaperVenue
) -> None:
    rig = Rig(system, venue)

    def refuse(fill: OrderFill) -> None:
        raise _Refused(f"fee in BNB for {fill.trade_id}")

    rig.services = dataclasses.replace(rig.services, fill_sink=refuse)
    start_order_supervisor(system, rig.services, path="/orders2")
    record_ref = place_order(system, rig.intent("dl1"), supervisor="/orders2")
    wait_until(lambda: not system.is_alive(record_ref.path) and bool(rig.store.get("dl1")))
    record = rig.store.get("dl1")
    assert record is not None
    assert record.status == "filled"
    [dead] = system.dead_letters.list(reason="permanent_error", target=record_ref.path)
    assert dead.message.trade_id in record.fills
    assert "fee in BNB" in (dead.error_message or "")
    assert record.sunk == tuple(record.fills)  # handled: dead-lettered, not retried forever


def test_place_order_refuses_bad_intents_with_a_clear_error(
    system: ActorSystem, venue: PaperVenue
) -> None:
    rig = Rig(system, venue)
    with pytest.raises(ValueError, match="amount must be > 0"):
        place_order(system, rig.intent("bad-a", amount="0"))
    with pytest.raises(ValueError, match="needs a price"):
        place_order(system, rig.intent("bad-p", type="limit"))
    with pytest.raises(ValueError, match="path segment"):
        place_order(system, rig.intent("bad/id"))
    assert rig.store.list() == []
    assert rig.order_requests() == []


def test_a_filled_order_the_lookup_misses_is_found_behind_recent_trades_not_resent(
    system: ActorSystem, venue: PaperVenue
) -> None:
    rig = Rig(system, venue, max_lookup_misses=2)
    cid = client_order_id("tr1", 0)
    other = rig.run(rig.intent("other1"))  # a known order of another intent in the trades
    venue.inject(Fault("http_503", endpoint="POST /api/v3/order"))
    venue.engine.place(  # the venue filled it, but its client-id index lags
        ACCOUNT, {"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET", "quantity": "0.01",
                  "newClientOrderId": cid},
    )  # fmt: skip
    venue.engine._by_client.pop((ACCOUNT, "BTCUSDT", cid))
    record = rig.run(rig.intent("tr1"))
    assert (record.status, record.generation, record.filled) == ("filled", 0, Decimal("0.01"))
    assert record.exchange_order_id != other.exchange_order_id
    assert rig.order_requests().count("POST /api/v3/order") == 2  # other1's, tr1's 503
    fetched = [
        parse_qs(r["query"])["orderId"][0]
        for r in venue.requests
        if (r["method"], r["path"]) == ("GET", "/api/v3/order") and "orderId=" in r["query"]
    ]
    # only the order behind the unknown trade; the other intent's is known by the index
    assert fetched == [record.exchange_order_id]
