"""The buy and sell sagas end to end: ActorSystem + trading tree + paper venue over HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from phalanx.actors import BUY, SELL, buy_input, sell_input
from phalanx.actors.saga import await_saga, start_saga
from phalanx.actors.venue import PaperVenue
from phalanx.protocols.trading import GetRisk, RiskCheck
from phalanx.storage._orders import OrderStore
from phalanx.storage._positions import PositionStore
from tests.chaos import ACCOUNT, trading_node, venue_totals


@pytest.fixture
def venue() -> Iterator[PaperVenue]:
    """A paper venue whose prices move only when a test (or a ticker request) steps them."""
    with PaperVenue(seed=11) as v:
        yield v


D1 = Decimal("0.001")


def _book(venue: PaperVenue, symbol: str = "BTCUSDT") -> tuple[Decimal, Decimal]:
    t = venue.engine.ticker(symbol)
    return Decimal(t["bidPrice"]), Decimal(t["askPrice"])


def _reservations(node: object) -> dict[str, str]:
    return node.system.ask("/risk", GetRisk(), timeout=5.0).reservations  # type: ignore[attr-defined]


def test_buy_saga_fills_updates_position_and_ledger_and_releases_funds(
    tmp_path: Path, venue: PaperVenue
) -> None:
    with trading_node(tmp_path / "var", venue) as node:
        _, ask = _book(venue)
        price = (ask * Decimal("1.001")).quantize(Decimal("0.01"))  # marketable: fills at once
        amount = Decimal("0.002")
        start_saga(
            node.system,
            BUY,
            "buy-1",
            buy_input("BTC/USDT", amount, price, filters=node.filters["BTC/USDT"]),
        )
        snap = await_saga(node.system, "buy-1", timeout=30.0)

        assert snap.status == "completed", snap
        assert snap.results["finalize"]["outcome"] == "filled"
        assert Decimal(snap.results["await_fill"]["filled"]) == amount
        assert PositionStore(node.system.storage).load("BTC/USDT").quantity == amount
        assert node.ledger.trial_balance()["difference"] == 0
        assert node.ledger.verify(venue_totals(venue)) == {}
        assert "buy-1" not in _reservations(node)
        record = OrderStore(node.system.storage).get("buy-1")
        assert record is not None
        assert record.status == "filled"
        assert len(venue.engine.accepted) == 1


def test_sell_saga_mirrors_the_buy_and_reserves_the_base_asset(
    tmp_path: Path, venue: PaperVenue
) -> None:
    with trading_node(tmp_path / "var", venue) as node:
        bid, _ = _book(venue, "ETHUSDT")
        price = (bid * Decimal("0.999")).quantize(Decimal("0.01"))
        start_saga(node.system, SELL, "sell-1", sell_input("ETH/USDT", Decimal("0.5"), price))
        snap = await_saga(node.system, "sell-1", timeout=30.0)

        assert snap.status == "completed", snap
        assert snap.results["reserve_funds"]["asset"] == "ETH"
        assert PositionStore(node.system.storage).load("ETH/USDT").quantity == Decimal("-0.5")
        assert node.ledger.verify(venue_totals(venue)) == {}


def test_partial_fill_then_timeout_cancels_and_completes_with_what_filled(
    tmp_path: Path, venue: PaperVenue
) -> None:
    with trading_node(tmp_path / "var", venue) as node:
        _, ask = _book(venue)
        # 0.08 BTC at the ask: the book holds 0.05 per level, so 0.05 fills as taker
        # and 0.03 rests; no one steps the price, so the rest times out and is canceled.
        start_saga(node.system, BUY, "partial-1",
                   buy_input("BTC/USDT", Decimal("0.08"), ask, fill_timeout_s=0.3))  # fmt: skip
        snap = await_saga(node.system, "partial-1", timeout=30.0)

        assert snap.status == "completed", snap
        assert snap.results["await_fill"]["status"] == "canceled"
        assert Decimal(snap.results["await_fill"]["filled"]) == Decimal("0.05")
        assert snap.results["finalize"]["outcome"] == "partial"
        assert PositionStore(node.system.storage).load("BTC/USDT").quantity == Decimal("0.05")
        assert node.ledger.verify(venue_totals(venue)) == {}
        assert "partial-1" not in _reservations(node)


def test_nothing_filled_by_the_timeout_compensates_cancel_and_release(
    tmp_path: Path, venue: PaperVenue
) -> None:
    with trading_node(tmp_path / "var", venue) as node:
        bid, _ = _book(venue)
        price = (bid * Decimal("0.98")).quantize(Decimal("0.01"))  # far below: rests
        start_saga(node.system, BUY, "rest-1",
                   buy_input("BTC/USDT", Decimal("0.001"), price, fill_timeout_s=0.2))  # fmt: skip
        snap = await_saga(node.system, "rest-1", timeout=30.0)

        assert snap.status == "compensated", snap
        assert snap.steps["place_order"] == "compensated"
        assert snap.steps["reserve_funds"] == "compensated"
        assert "NothingFilled" in (snap.error or "")
        record = OrderStore(node.system.storage).get("rest-1")
        assert record is not None
        assert record.status == "canceled"
        assert venue.engine.open_orders(ACCOUNT, None) == []
        assert "rest-1" not in _reservations(node)
        assert node.ledger.verify(venue_totals(venue)) == {}


def test_venue_rejecting_the_order_compensates_and_releases_the_reservation(
    tmp_path: Path, venue: PaperVenue
) -> None:
    # Risk caches the venue balance for an hour, so it approves an order that the
    # venue then refuses: the funds were locked behind its back by a resting order.
    with trading_node(tmp_path / "var", venue, risk_options={"balance_ttl_s": 3600.0}) as node:
        bid, ask = _book(venue)
        warm = RiskCheck(order_req_id="warm", symbol="BTC/USDT", side="buy",
                         amount=Decimal("0.001"), price=ask)  # fmt: skip
        assert node.system.ask("/risk", warm, timeout=5.0).allowed
        low = (bid * Decimal("0.9")).quantize(Decimal("0.01"))
        venue.engine.place(ACCOUNT, {"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT",
                                     "quantity": "2.2", "price": str(low),
                                     "newClientOrderId": "lock-funds"})  # fmt: skip
        price = ask.quantize(Decimal("0.01"))
        start_saga(node.system, BUY, "poor-1", buy_input("BTC/USDT", Decimal("0.5"), price))
        snap = await_saga(node.system, "poor-1", timeout=30.0)

        assert snap.status == "compensated", snap
        assert snap.steps["place_order"] == "failed"
        assert snap.steps["reserve_funds"] == "compensated"
        assert "OrderRejected" in (snap.error or "")
        record = OrderStore(node.system.storage).get("poor-1")
        assert record is not None
        assert record.status == "rejected"
        assert "poor-1" not in _reservations(node)
        assert PositionStore(node.system.storage).load("BTC/USDT").quantity == 0


def test_a_reserve_held_by_risk_whose_replies_were_all_lost_is_released(
    tmp_path: Path, venue: PaperVenue
) -> None:
    # Every ask reaches /risk, which holds the reservation, but no reply comes
    # back in time: the step fails, and its hold must not outlive the saga.
    from phalanx.actors import _trade_sagas
    from phalanx.errors import AskTimeout

    reserve = _trade_sagas._reserve_funds
    attempts: list[int] = []

    def held_but_reply_lost(ctx: Any) -> Any:
        attempts.append(ctx.attempt)
        reserve(ctx)  # /risk holds it (idempotent by saga id)
        raise AskTimeout("no reply from /risk within 5.0s")

    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(_trade_sagas, "_reserve_funds", held_but_reply_lost)
            with trading_node(tmp_path / "var", venue) as node:
                _, ask = _book(venue)
                start_saga(node.system, BUY, "lost-1", buy_input("BTC/USDT", D1, ask))
                snap = await_saga(node.system, "lost-1", timeout=30.0)

                assert snap.status == "compensated", snap
                assert len(attempts) == 6  # the step's whole ask budget
                assert snap.steps["reserve_funds"] == "compensated"
                assert "AskTimeout" in (snap.error or "")
                assert "lost-1" not in _reservations(node)
                assert venue.engine.accepted == []
    finally:
        _trade_sagas.register_trade_sagas()  # the real steps for the tests after this one


def test_a_resting_orders_funds_count_once_so_the_next_saga_may_use_the_rest(
    tmp_path: Path, venue: PaperVenue
) -> None:
    # 10 ETH. A rests a sell of 6 (the venue locks 6; A holds 6): 4 are really free.
    # Counting A's 6 twice (venue free 4 minus held 6) would refuse B's sell of 3.
    with trading_node(tmp_path / "var", venue, risk_options={"balance_ttl_s": 0.0}) as node:
        _, ask = _book(venue, "ETHUSDT")
        high = (ask * Decimal("1.1")).quantize(Decimal("0.01"))  # never reached: it rests
        steps = node.system.events.subscribe(["saga_step"])
        start_saga(node.system, SELL, "rest-a",
                   sell_input("ETH/USDT", Decimal(6), high, fill_timeout_s=3.0))  # fmt: skip
        placed = steps.wait_for(
            lambda e: e.fields.get("saga_id") == "rest-a" and e.fields.get("step") == "place_order"
            and e.fields.get("outcome") == "step_succeeded",
            timeout=30.0,
        )  # fmt: skip
        assert placed is not None
        start_saga(node.system, SELL, "rest-b",
                   sell_input("ETH/USDT", Decimal(3), high, fill_timeout_s=0.5))  # fmt: skip
        b = await_saga(node.system, "rest-b", timeout=30.0)
        a = await_saga(node.system, "rest-a", timeout=30.0)
        steps.close()

        assert "NothingFilled" in (b.error or ""), b  # placed and timed out, not refused
        assert sorted(o["clientOrderId"] for o in venue.engine.accepted) == sorted(
            OrderStore(node.system.storage).get(i).client_order_id  # type: ignore[union-attr]
            for i in ("rest-a", "rest-b")
        )
        assert a.status == b.status == "compensated"
        assert _reservations(node) == {}
        assert node.system.ask("/risk", GetRisk(), timeout=5.0).usage["at_venue"] == {}


def test_risk_block_fails_the_saga_before_any_reservation_or_order(
    tmp_path: Path, venue: PaperVenue
) -> None:
    with trading_node(tmp_path / "var", venue) as node:
        _, ask = _book(venue)
        # 3 BTC at ~43k is 129k USDT: over the free balance and the exposure limit.
        start_saga(node.system, BUY, "big-1", buy_input("BTC/USDT", Decimal("3"), ask))
        snap = await_saga(node.system, "big-1", timeout=30.0)

        assert snap.status == "compensated", snap
        assert snap.steps["risk_check"] == "failed"
        assert snap.steps["reserve_funds"] == "pending"
        assert "RiskBlocked" in (snap.error or "")
        assert venue.engine.accepted == []


def test_the_cancel_compensation_outlasts_a_brownout_of_ten_failed_asks() -> None:
    # Pure: the real buy definition, fed a fill timeout and then ten failed cancels.
    from phalanx.actors._trade_sagas import trade_saga
    from phalanx.actors.saga import (
        CompensationFailed,
        ScheduleRetry,
        Started,
        StepFailed,
        StepSucceeded,
        advance,
        new_saga,
    )

    defn = trade_saga(BUY)
    plan = advance(new_saga(defn, "bo-1", {}, 0.0), Started(0.0), defn)
    for step in ("validate", "risk_check", "reserve_funds", "place_order"):
        plan = advance(plan.state, StepSucceeded(step, 1, {}, 1.0), defn)
    failed = StepFailed("await_fill", 1, "NothingFilled", "0 filled", "permanent", 2.0)
    plan = advance(plan.state, failed, defn)
    assert plan.state.current == "place_order"  # its cancel runs first
    for attempt in range(1, 11):
        down = CompensationFailed("place_order", attempt, "ExchangeNotAvailable", "503",
                                  "transient", 3.0)  # fmt: skip
        plan = advance(plan.state, down, defn)
        assert isinstance(plan.commands[0], ScheduleRetry), (attempt, plan.commands)
    assert plan.state.status == "compensating"


def test_settlement_steps_rerun_after_a_later_saga_change_nothing(
    tmp_path: Path, venue: PaperVenue
) -> None:
    """What a crash that lost their held records would do: re-run the replay-safe steps.

    ``update_position``, ``post_ledger`` and ``finalize`` are ``replay_safe``
    (their success records ride on the end's commit); re-run for a finished
    saga after another saga ran, they must apply, post and release nothing.
    """
    from phalanx.actors._trade_settle import _finalize, _post_ledger, _update_position
    from phalanx.actors.saga import StepContext, saga_path
    from phalanx.storage._journal import SagaJournal

    with trading_node(tmp_path / "var", venue) as node:

        def buy(saga_id: str) -> Any:
            _, ask = _book(venue)
            price = (ask * Decimal("1.001")).quantize(Decimal("0.01"))
            filters = node.filters["BTC/USDT"]
            start_saga(node.system, BUY, saga_id, buy_input("BTC/USDT", D1, price, filters=filters))
            return await_saga(node.system, saga_id, timeout=30.0)

        first, second = buy("rerun-1"), buy("rerun-2")
        assert first.status == second.status == "completed"
        positions = PositionStore(node.system.storage)
        quantity = positions.load("BTC/USDT").quantity
        balances = node.ledger.trial_balance()
        risk = node.system.ask("/risk", GetRisk(), timeout=5.0)
        journaled = SagaJournal(node.system.storage).load("rerun-1")
        assert journaled is not None
        ctx = StepContext(
            system=node.system, saga_id="rerun-1", kind=BUY, step="update_position",
            input=journaled["input"], results=first.results, attempt=1, deadline=None,
            path=saga_path("rerun-1"),
        )  # fmt: skip
        assert _update_position(ctx)["applied"] == 0
        assert _post_ledger(ctx)["posted"] == 0
        _finalize(ctx)
        assert quantity == 2 * D1
        assert positions.load("BTC/USDT").quantity == quantity
        assert node.ledger.trial_balance() == balances
        assert node.system.ask("/risk", GetRisk(), timeout=5.0) == risk
        assert node.ledger.verify(venue_totals(venue)) == {}
