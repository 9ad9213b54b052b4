"""The Order state machine's transition table (pure)."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from phalanx.actors.order import (
    EVENTS,
    STATES,
    TERMINAL,
    TRANSITIONS,
    InvalidTransition,
    client_order_id,
    generation_of,
    intent_prefix,
    order_path,
    reply_event,
    transition,
)
from phalanx.actors.order._plan import plan_reply
from phalanx.protocols.exchange import OrderReply
from phalanx.protocols.trading import OrderFill
from phalanx.storage._orders import OrderRecord
from phalanx.supervision import ErrorClass, classify


def test_the_placement_path_runs_new_submitting_unknown_submitting_open_filled() -> None:
    state = transition("new", "submit")
    assert state == "submitting"
    state = transition(state, "ambiguous")
    assert state == "unknown"
    state = transition(state, "regenerate")
    assert state == "submitting"
    assert transition(transition(state, "venue_open"), "venue_filled") == "filled"


def test_a_fill_after_canceled_keeps_canceled_and_a_fill_on_open_makes_it_partial() -> None:
    assert transition("canceled", "fill") == "canceled"
    assert transition("canceling", "fill") == "canceling"
    assert transition("open", "fill") == "partially_filled"


def test_invalid_transition_names_state_and_event_and_is_permanent() -> None:
    with pytest.raises(InvalidTransition, match="'venue_open' is not allowed in state 'filled'"):
        transition("filled", "venue_open")
    with pytest.raises(InvalidTransition) as info:
        transition("new", "fill")
    assert (info.value.state, info.value.event) == ("new", "fill")
    assert classify(info.value) is ErrorClass.PERMANENT


def test_a_rejected_order_never_takes_a_fill_and_unplaced_orders_cannot_cancel_at_venue() -> None:
    with pytest.raises(InvalidTransition):
        transition("rejected", "fill")
    with pytest.raises(InvalidTransition):
        transition("unknown", "cancel")


@settings(deadline=None)  # pure and fast; a loaded CI box must not make it flaky
@given(st.lists(st.sampled_from(EVENTS), max_size=40), st.sampled_from(STATES))
def test_any_event_sequence_follows_the_table_or_raises_and_terminal_stays_terminal(
    events: list[str], start: str
) -> None:
    state = start
    for event in events:
        expected = TRANSITIONS.get((state, event))  # type: ignore[arg-type]
        if expected is None:
            with pytest.raises(InvalidTransition):
                transition(state, event)  # type: ignore[arg-type]
            continue
        was_terminal = state in TERMINAL
        state = transition(state, event)  # type: ignore[arg-type]
        assert state == expected
        if was_terminal:
            assert state in TERMINAL
            assert state == expected


def test_every_terminal_state_only_goes_to_itself() -> None:
    for (state, _event), target in TRANSITIONS.items():
        if state in TERMINAL:
            assert target == state
    assert "new" not in set(TRANSITIONS.values())


def _reply(status: str, filled: str) -> OrderReply:
    return OrderReply(
        id="1", client_order_id="c", symbol="BTC/USDT", status=status, side="buy",  # type: ignore[arg-type]
        type="limit", amount=Decimal(1), filled=Decimal(filled), remaining=None, price=None,
        average=None, cost=None, fee_cost=None, fee_currency=None,
    )  # fmt: skip


def test_venue_replies_map_to_events_open_with_a_fill_is_partial() -> None:
    assert reply_event(_reply("open", "0")) == "venue_open"
    assert reply_event(_reply("open", "0.5")) == "venue_partial"
    assert reply_event(_reply("closed", "1")) == "venue_filled"
    assert reply_event(_reply("canceled", "0")) == "venue_canceled"
    assert reply_event(_reply("expired", "0.2")) == "venue_expired"


def test_client_ids_are_deterministic_short_and_carry_the_intent_and_generation() -> None:
    cid = client_order_id("saga-42", 0)
    assert cid == client_order_id("saga-42", 0)
    assert cid.startswith(intent_prefix("saga-42"))
    assert len(client_order_id("x" * 120, 999)) <= 36
    assert generation_of("saga-42", client_order_id("saga-42", 7)) == 7
    assert generation_of("saga-43", cid) is None
    assert order_path("saga-42") == "/orders/o-saga-42"
    with pytest.raises(ValueError, match="order_req_id 'a/b'"):
        order_path("a/b")


def _fill(trade_id: str, amount: str) -> OrderFill:
    return OrderFill(
        trade_id=trade_id, order_req_id="r", exchange_order_id="1", symbol="BTC/USDT",
        side="buy", price=Decimal(100), amount=Decimal(amount), fee=Decimal("0.01"),
        fee_currency="USDT",
    )  # fmt: skip


def test_plan_reply_journals_the_terminal_status_only_with_every_executed_fill() -> None:
    record = OrderRecord(
        order_req_id="r", client_order_id=client_order_id("r", 0), generation=0,
        status="unknown", symbol="BTC/USDT", side="buy", type="limit", amount=Decimal("0.02"),
    )  # fmt: skip
    closed = _reply("closed", "0.02")
    short, refused = plan_reply(record, closed, [_fill("1", "0.01")], Decimal("0.02"))
    assert (short.status, short.exchange_order_id, short.filled) == (
        "partially_filled",
        "1",
        Decimal("0.01"),
    )
    assert refused == []
    done, _ = plan_reply(short, closed, [_fill("1", "0.01"), _fill("2", "0.01")], Decimal("0.02"))
    assert (done.status, done.filled, sorted(done.fills)) == ("filled", Decimal("0.02"), ["1", "2"])
    again, _ = plan_reply(done, closed, [_fill("2", "0.01")], Decimal("0.02"))
    assert again == done  # a replayed reply changes nothing


def test_plan_reply_returns_refused_transitions_and_keeps_the_state() -> None:
    record = OrderRecord(
        order_req_id="r", client_order_id="c", generation=0, status="partially_filled",
        symbol="BTC/USDT", side="buy", type="limit", amount=Decimal(1), exchange_order_id="1",
    )  # fmt: skip
    planned, refused = plan_reply(record, _reply("open", "0"), [], Decimal(0))
    assert planned.status == "partially_filled"
    assert [(e.state, e.event) for e in refused] == [("partially_filled", "venue_open")]


@st.composite
def _venue_timeline(draw: st.DrawFn) -> tuple[list[tuple[str, int, list[int]]], int]:
    """Observations of one venue order: (status, executed units, trade ids seen).

    The venue's truth is monotone: units fill one trade at a time, then the
    order ends filled, canceled or expired. Each observation reports the status
    and executed quantity at some point, with any subset of the trades so far
    (trades can lag, repeat, or be missing).
    """
    qty = draw(st.integers(min_value=1, max_value=6))
    fills = draw(st.integers(min_value=0, max_value=qty))
    end = "closed" if fills == qty else draw(st.sampled_from(["open", "canceled", "expired"]))
    observations = []
    for _ in range(draw(st.integers(min_value=1, max_value=10))):
        at = draw(st.integers(min_value=0, max_value=fills))
        status = "open" if at < fills or end == "open" else end
        if at == fills and end in ("canceled", "expired"):
            status = draw(st.sampled_from(["open", end]))  # still open, then it ends
        seen = draw(st.lists(st.integers(min_value=1, max_value=max(at, 1)), max_size=4))
        observations.append((status, at, [t for t in seen if t <= at]))
    observations.sort(key=lambda o: (o[1], o[0] != "open"))  # time order: monotone
    return observations, qty


@settings(deadline=None)
@given(_venue_timeline())
def test_plan_reply_over_any_monotone_venue_history_is_consistent(
    case: tuple[list[tuple[str, int, list[int]]], int],
) -> None:
    observations, qty = case
    record = OrderRecord(
        order_req_id="r", client_order_id=client_order_id("r", 0), generation=0,
        status="unknown", symbol="BTC/USDT", side="buy", type="limit", amount=Decimal(qty),
    )  # fmt: skip
    venue_filled = Decimal(0)
    seen: set[int] = set()
    for status, at, trades in observations:
        venue_filled = max(venue_filled, Decimal(at))
        before = record
        reply = _reply(status, str(at))
        record, refused = plan_reply(
            record, reply, [_fill(str(t), "1") for t in trades], venue_filled
        )
        seen |= set(trades)
        assert refused == []
        assert record.filled == len(seen)
        assert record.filled >= before.filled
        if before.terminal:
            assert record.status == before.status
        if record.terminal:
            assert record.filled >= venue_filled  # terminal only with every executed fill
