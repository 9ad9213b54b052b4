"""The ExchangeConnection actor against the embedded venue, through real ccxt HTTP calls."""

from __future__ import annotations

import json
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import ccxt
import pytest

from phalanx import ActorSystem, CircuitOpen, Retry, trace_scope
from phalanx.actors.exchange import ConnectionState, connection_spec, order_reply
from phalanx.actors.venue import Fault, PaperVenue
from phalanx.errors import UnknownOutcome
from phalanx.protocols.exchange import (
    CancelOrder,
    CreateOrder,
    FetchBalance,
    FetchMyTrades,
    FetchOpenOrders,
    FetchOrder,
    FetchTicker,
    OpenOrders,
    OrderReply,
    SubscribeTicker,
    Ticker,
    Trades,
)
from phalanx.runtime import Actor
from phalanx.runtime._config import ExchangeConfig

PATH = "/exchanges/paper"
BTC = "BTC/USDT"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def venue() -> Iterator[PaperVenue]:
    with PaperVenue(seed=7) as v:
        yield v


def _start(
    system: ActorSystem, venue: PaperVenue, *, secret: str | None = None, **cfg: Any
) -> ConnectionState:
    cc = venue.ccxt_config()
    config = ExchangeConfig(name="paper", urls=cc["urls"], options=cc["options"], **cfg)
    state = ConnectionState(config, clock=cfg.pop("clock", None) or FakeClock())
    spec = connection_spec(
        config,
        client_config={"apiKey": cc["apiKey"], "secret": secret or cc["secret"]},
        retry=Retry(max_attempts=3, backoff="fixed", base=0.0, jitter=0.0),
        state=state,
    )
    system.supervise("/exchanges", intensity=10, period=5, children=[spec])
    return state


def test_typed_messages_get_typed_replies(system: ActorSystem, venue: PaperVenue) -> None:
    _start(system, venue, rate_limit_per_s=100, burst=10)
    ticker = system.ask(PATH, FetchTicker(symbol=BTC), timeout=5)
    assert isinstance(ticker, Ticker)
    assert ticker.bid is not None
    assert ticker.ask is not None
    assert ticker.bid < ticker.ask
    assert system.ask(PATH, FetchBalance(), timeout=5).free["USDT"] == Decimal(100000)
    order = system.ask(
        PATH,
        CreateOrder(
            symbol=BTC, side="buy", type="market", amount=Decimal("0.01"), client_order_id="t-1"
        ),
        timeout=5,
    )
    assert isinstance(order, OrderReply)
    assert (order.status, order.filled, order.client_order_id) == ("closed", Decimal("0.01"), "t-1")
    assert order.fee_cost is not None
    assert order.fee_currency == "USDT"
    assert system.ask(PATH, FetchOrder(symbol=BTC, client_order_id="t-1"), timeout=5).id == order.id
    resting = system.ask(
        PATH,
        CreateOrder(symbol=BTC, side="buy", type="limit", amount=Decimal("0.01"),
                    price=Decimal(30000), client_order_id="t-2"),
        timeout=5,
    )  # fmt: skip
    assert (resting.status, resting.filled, resting.remaining) == ("open", 0, Decimal("0.01"))
    open_orders = system.ask(PATH, FetchOpenOrders(symbol=BTC), timeout=5)
    assert isinstance(open_orders, OpenOrders)
    assert [o.client_order_id for o in open_orders.orders] == ["t-2"]
    canceled = system.ask(PATH, CancelOrder(symbol=BTC, client_order_id="t-2"), timeout=5)
    assert (canceled.id, canceled.status) == (resting.id, "canceled")
    trades = system.ask(PATH, FetchMyTrades(symbol=BTC), timeout=5)
    assert isinstance(trades, Trades)
    assert {t.order_id for t in trades.trades} == {order.id}
    assert sum(t.amount for t in trades.trades) == Decimal("0.01")
    assert all(t.fee_currency == "USDT" and t.fee_cost for t in trades.trades)


def test_5xx_and_timeouts_on_reads_retry_by_restart_with_redelivery(
    system: ActorSystem, venue: PaperVenue
) -> None:
    _start(
        system, venue, rate_limit_per_s=100, burst=10, timeout_default_ms=300, timeout_max_ms=300
    )
    retries = system.events.subscribe(kinds={"retry_attempt"})
    try:
        venue.inject(Fault("http_503", endpoint="GET /api/v3/ticker/24hr"))
        venue.inject(Fault("timeout", endpoint="GET /api/v3/ticker/24hr", hold_s=1.0))
        ticker = system.ask(PATH, FetchTicker(symbol=BTC), timeout=10)
        assert ticker.last is not None
        attempts = [retries.get(timeout=5), retries.get(timeout=5)]
    finally:
        retries.close()
    assert [e.fields["attempt"] for e in attempts if e is not None] == [2, 3]
    assert system.stats(PATH)["restarts"] == 2


def test_ban_opens_the_breaker_until_retry_after_then_a_half_open_trial(
    system: ActorSystem, venue: PaperVenue
) -> None:
    state = _start(system, venue, rate_limit_per_s=100, burst=10)
    clock = state.clock
    assert isinstance(clock, FakeClock)
    venue.inject(Fault("http_418", endpoint="GET /api/v3/ticker/24hr", retry_after_s=30))
    with pytest.raises(CircuitOpen, match="banned"):  # redelivered into the open breaker
        system.ask(PATH, FetchTicker(symbol=BTC), timeout=5)
    sent = len(venue.requests)
    with pytest.raises(CircuitOpen):
        system.ask(PATH, FetchBalance(), timeout=5)
    assert len(venue.requests) == sent  # fail fast: nothing reached the venue
    assert state.breaker.state == "open"
    clock.now += 30  # the ban ends
    assert state.breaker.state == "half_open"
    assert system.ask(PATH, FetchBalance(), timeout=5).free  # the trial succeeds
    assert state.breaker.state == "closed"
    states = [e.fields["new"] for e in system.events.recent(100, kind="connection_state")]
    assert states[-2:] == ["banned", "connected"]


def test_insufficient_funds_replies_as_a_permanent_error_without_retry(
    system: ActorSystem, venue: PaperVenue
) -> None:
    _start(system, venue, rate_limit_per_s=100, burst=10)
    with pytest.raises(ccxt.InsufficientFunds):
        system.ask(
            PATH,
            CreateOrder(
                symbol=BTC, side="buy", type="market", amount=Decimal(50), client_order_id="big"
            ),
            timeout=5,
        )
    assert system.stats(PATH)["restarts"] == 0
    assert [r["method"] for r in venue.requests if r["path"] == "/api/v3/order"] == ["POST"]


def test_bad_signature_stops_the_connection_and_raises_an_alert(
    system: ActorSystem, venue: PaperVenue
) -> None:
    _start(system, venue, secret="wrong-secret", rate_limit_per_s=100, burst=10)
    alerts = system.events.subscribe(kinds={"alert_fired", "actor_stopped"})
    try:
        with pytest.raises(ccxt.AuthenticationError):
            system.ask(PATH, FetchBalance(), timeout=5)
        alert = alerts.wait_for(lambda e: e.kind == "alert_fired", timeout=5)
        assert alerts.wait_for(lambda e: e.kind == "actor_stopped" and e.path == PATH, timeout=5)
    finally:
        alerts.close()
    assert alert is not None
    assert (alert.fields["severity"], alert.fields["alert"]) == ("critical", "exchange_auth_failed")
    from phalanx import SupervisorRef

    assert SupervisorRef(system, "/exchanges").which_children()[0]["status"] == "undefined"


def test_ambiguous_placements_are_unknown_outcomes_never_resent(
    system: ActorSystem, venue: PaperVenue
) -> None:
    _start(system, venue, rate_limit_per_s=100, burst=10)
    for kind, cid in (("lost", "amb-1"), ("empty", "amb-2"), ("http_502", "amb-3")):
        venue.inject(
            Fault(
                kind,
                endpoint="POST /api/v3/order",
                when="after" if kind != "http_502" else "before",
            )
        )
        with pytest.raises(UnknownOutcome):
            system.ask(
                PATH,
                CreateOrder(
                    symbol=BTC,
                    side="buy",
                    type="market",
                    amount=Decimal("0.01"),
                    client_order_id=cid,
                ),
                timeout=5,
            )
    sent = [a["clientOrderId"] for a in venue.engine.accepted]
    assert sent == ["amb-1", "amb-2"]  # each sent once; the 502 one never reached the engine
    assert system.stats(PATH)["restarts"] == 0


@pytest.mark.parametrize(
    "error",
    [ccxt.ExchangeError("an error code ccxt does not map"), KeyError("status"), ValueError("x")],
    ids=["unmapped_exchange_error", "key_error", "value_error"],
)
def test_any_create_error_but_a_rejection_is_an_unknown_outcome_never_redelivered(
    system: ActorSystem, venue: PaperVenue, monkeypatch: pytest.MonkeyPatch, error: Exception
) -> None:
    # Raised after the venue accepted the order (as a reply ccxt cannot parse
    # would be): a crash would redeliver the CreateOrder and send it again.
    _start(system, venue, rate_limit_per_s=100, burst=10)
    create = ccxt.binance.create_order

    def accepted_then_failed(self: Any, *args: Any, **kwargs: Any) -> Any:
        create(self, *args, **kwargs)
        raise error

    monkeypatch.setattr(ccxt.binance, "create_order", accepted_then_failed)
    order = CreateOrder(symbol=BTC, side="buy", type="market", amount=Decimal("0.01"),
                        client_order_id="odd-1")  # fmt: skip
    with pytest.raises(UnknownOutcome, match="odd-1: outcome unknown"):
        system.ask(PATH, order, timeout=5)
    assert [a["clientOrderId"] for a in venue.engine.accepted] == ["odd-1"]
    assert system.stats(PATH)["restarts"] == 0


def test_rate_limiter_holds_10_per_second_over_a_burst_of_100_calls(
    system: ActorSystem, venue: PaperVenue
) -> None:
    _start(system, venue, rate_limit_per_s=10, burst=1, weights={"fetch_ticker": 1})
    start = len(venue.requests)
    system.tell_many(PATH, [FetchTicker(symbol=BTC) for _ in range(100)])
    assert venue.wait_requests(start + 32, timeout=10)  # three seconds of traffic
    stamps = [r["t"] for r in venue.requests[start:]]
    t0 = stamps[0]
    per_second = [sum(1 for t in stamps if t0 + k <= t < t0 + k + 1) for k in range(3)]
    assert all(9 <= n <= 11 for n in per_second), per_second
    assert 27 <= sum(per_second) <= 33


def test_tracer_lines_carry_trace_ids_and_the_retry_but_no_key_or_signature(
    system: ActorSystem, venue: PaperVenue
) -> None:
    _start(system, venue, rate_limit_per_s=100, burst=10)
    venue.inject(Fault("http_503", endpoint="GET /api/v3/account"))  # the retry succeeds
    with trace_scope(session_id="sess-9", order_req_id="req-9"):
        system.ask(PATH, FetchBalance(), timeout=5)
        system.ask(PATH, FetchTicker(symbol=BTC), timeout=5)
    system.logs.close()  # writes the buffered tracer lines
    # The signatures the venue really received: ccxt's 503 error text carries the
    # signed URL, and that error reaches the health log.
    signatures = [
        r["query"].rpartition("signature=")[2] for r in venue.requests if "signature=" in r["query"]
    ]
    assert len(signatures) == 2
    log_dir = Path(system.var_dir) / "logs"
    raw = b"".join(p.read_bytes() for p in log_dir.iterdir())
    assert b"signature=***" in raw  # the failure was logged, masked
    for leaked in ("paper-secret", "paper-key", *signatures):
        assert leaked.encode() not in raw, leaked
    lines = [json.loads(x) for x in (log_dir / "tracer.jsonl").read_text().splitlines()]
    calls = [x for x in lines if x["event"] == "exchange_call" and x["endpoint"] != "load_markets"]
    assert [(c["endpoint"], c["status"], c["attempt"]) for c in calls] == [
        ("fetch_balance", "ExchangeNotAvailable", 1),
        ("fetch_balance", "ok", 2),
        ("fetch_ticker", "ok", 1),
    ]
    assert calls[0]["message_id"] == calls[1]["message_id"] != calls[2]["message_id"]
    for call in calls:
        assert (call["session_id"], call["order_req_id"]) == ("sess-9", "req-9")
        assert call["actor"] == PATH
        assert call["latency_ms"] > 0
        assert call["rate_limit_headroom"] <= 10
        assert call["rate_limit_waited_ms"] >= 0


def test_ticker_poller_publishes_to_subscribers(system: ActorSystem, venue: PaperVenue) -> None:
    import threading

    got: list[Ticker] = []
    three = threading.Event()

    class Sink(Actor):
        def on_receive(self, message: Any) -> Any:
            got.append(message)
            if len(got) >= 3:
                three.set()

    system.spawn(Sink, "/sink")
    _start(system, venue, rate_limit_per_s=100, burst=10, poll_interval_s=0.02)
    system.tell(PATH, SubscribeTicker(symbol=BTC, subscriber="/sink"))
    assert three.wait(5)
    assert all(isinstance(t, Ticker) and t.symbol == BTC for t in got[:3])


def test_a_failed_trial_after_a_ban_reopens_instead_of_locking_out(
    system: ActorSystem, venue: PaperVenue
) -> None:
    state = _start(system, venue, rate_limit_per_s=100, burst=10)
    clock = state.clock
    assert isinstance(clock, FakeClock)
    venue.inject(Fault("http_429", endpoint="GET /api/v3/account", retry_after_s=5))
    with pytest.raises(CircuitOpen):
        system.ask(PATH, FetchBalance(), timeout=5)
    clock.now += 5
    venue.inject(Fault("http_503", endpoint="GET /api/v3/account"))  # the trial fails
    with pytest.raises(CircuitOpen):  # redelivered into the reopened breaker
        system.ask(PATH, FetchBalance(), timeout=5)
    assert state.breaker.state == "open"
    clock.now += state.breaker.reset_timeout
    assert system.ask(PATH, FetchBalance(), timeout=5).free  # the next trial succeeds
    assert state.breaker.state == "closed"


@pytest.mark.parametrize(
    "reply",
    [
        {"id": "7", "status": None, "symbol": BTC},
        {"id": None, "status": "closed", "symbol": BTC},
        {"id": "7", "status": "closed", "symbol": BTC, "filled": "n/a"},
        {"id": "7", "status": "open", "symbol": None},
        {"id": "7", "status": "closed", "symbol": BTC, "trades": [{"id": "t1", "price": None}]},
    ],
)
def test_an_order_reply_without_id_or_status_or_unreadable_is_an_unknown_outcome(
    reply: dict[str, Any],
) -> None:
    with pytest.raises(UnknownOutcome):
        order_reply(reply)


def test_three_failed_calls_in_a_row_make_the_connection_degraded_in_events_and_health_log(
    system: ActorSystem, venue: PaperVenue
) -> None:
    _start(system, venue, rate_limit_per_s=100, burst=10)
    venue.inject(Fault("http_503", endpoint="GET /api/v3/ticker/24hr", count=3))
    with pytest.raises(ccxt.ExchangeNotAvailable):  # attempt 3 of 3 fails too
        system.ask(PATH, FetchTicker(symbol=BTC), timeout=10)
    assert system.ask(PATH, FetchTicker(symbol=BTC), timeout=5).last is not None
    states = [e.fields["new"] for e in system.events.recent(100, kind="connection_state")]
    assert states == ["connected", "degraded", "connected"]
    system.logs.close()
    health = (Path(system.var_dir) / "logs" / "health.jsonl").read_text().splitlines()
    logged = [json.loads(x) for x in health if '"connection_state"' in x]
    assert [(x["old"], x["new"]) for x in logged] == [
        ("connecting", "connected"),
        ("connected", "degraded"),
        ("degraded", "connected"),
    ]
    assert logged[1]["errors"] == 3
