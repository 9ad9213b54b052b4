"""The pure risk model: every limit alone blocks and is named; cancels always pass."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from phalanx.actors._risk_model import (
    CHECKS,
    MarketFilter,
    RiskLimits,
    RiskUsage,
    evaluate,
    market_filters_from_ccxt,
    shrinks,
    split_symbol,
)
from phalanx.protocols.trading import RiskCheck

D = Decimal
SYMBOL = "BTC/USDT"


def _failing(decision: object) -> set[str]:
    checks = decision.checks  # type: ignore[attr-defined]
    return {name for name, c in checks.items() if not c["ok"]}


@st.composite
def passing(draw: st.DrawFn) -> tuple[RiskLimits, RiskUsage, RiskCheck]:
    """A limits/usage/check triple where every check passes, with margins."""
    amount_step = draw(st.sampled_from([D("0.001"), D("0.01"), D("0.1")]))
    price_step = draw(st.sampled_from([D("0.01"), D("0.1"), D(1)]))
    amount = amount_step * draw(st.integers(1, 1000))
    price = price_step * draw(st.integers(100, 10_000))
    notional = amount * price
    other_qty = draw(st.integers(0, 3))
    positions = {f"X{i}/USDT": D(i + 1) for i in range(other_qty)}
    notionals = {s: q * 10 for s, q in positions.items()}
    others = draw(st.decimals(min_value=0, max_value=1000, places=2))
    exposure = sum(notionals.values(), D(0)) + others
    drawdown = draw(st.decimals(min_value=0, max_value=100, places=2))
    trades = draw(st.integers(0, 50))
    limits = RiskLimits(
        max_exposure=exposure + 2 * notional + 1000,
        max_open_positions=other_qty + draw(st.integers(1, 3)),
        max_daily_drawdown=drawdown + 1 + draw(st.integers(0, 100)),
        max_trades_per_day=trades + draw(st.integers(1, 10)),
    )
    usage = RiskUsage(
        trading_state="active",
        positions=positions,
        notional=notionals,
        drawdown=drawdown,
        trades_today=trades,
        free={"USDT": others + 2 * notional + 1000, "BTC": D(0)},
        reserved={"USDT": {"other-order": others}},
        markets={SYMBOL: MarketFilter(amount_step, price_step, notional / 2)},
    )
    check = RiskCheck(order_req_id="o-1", symbol=SYMBOL, side="buy", amount=amount, price=price)
    return limits, usage, check


def _violate(
    name: str, limits: RiskLimits, usage: RiskUsage, check: RiskCheck
) -> tuple[RiskLimits, RiskUsage, RiskCheck]:
    notional = check.amount * check.price
    f = usage.markets[SYMBOL]
    assert f.amount_step is not None
    assert f.price_step is not None
    if name == "trading_state":
        return limits, replace(usage, trading_state="halted"), check
    if name == "reduce_only":
        return limits, usage, check.model_copy(update={"reduce_only": True})
    if name == "market":
        return limits, usage, check.model_copy(update={"symbol": "ETH/USDT"})
    if name == "amount_precision":
        return limits, usage, check.model_copy(update={"amount": check.amount + f.amount_step / 2})
    if name == "price_precision":
        return limits, usage, check.model_copy(update={"price": check.price + f.price_step / 2})
    if name == "min_notional":
        markets = {SYMBOL: replace(f, min_notional=notional + 1)}
        return limits, replace(usage, markets=markets), check
    if name == "max_exposure":
        pending = sum(usage.reserved["USDT"].values(), D(0))
        exposure = sum(usage.notional.values(), D(0)) + pending + notional
        return limits.model_copy(update={"max_exposure": exposure - D("0.01")}), usage, check
    if name == "max_open_positions":
        open_now = len(usage.positions)
        return limits.model_copy(update={"max_open_positions": open_now}), usage, check
    if name == "max_daily_drawdown":
        return limits, replace(usage, drawdown=limits.max_daily_drawdown), check
    if name == "max_trades_per_day":
        return limits, replace(usage, trades_today=limits.max_trades_per_day), check
    if name == "free_balance":
        free = {**(usage.free or {}), "USDT": usage.reserved["USDT"]["other-order"] + notional}
        free["USDT"] -= D("0.01")
        return limits, replace(usage, free=free), check
    raise AssertionError(name)


@settings(max_examples=60, deadline=None)
@given(passing())
def test_the_baseline_passes_every_check(case: tuple[RiskLimits, RiskUsage, RiskCheck]) -> None:
    decision = evaluate(*case)
    assert decision.allowed
    assert decision.blocking_limit is None
    assert list(decision.checks) == list(CHECKS)


@pytest.mark.parametrize("name", CHECKS)
@settings(max_examples=40, deadline=None)
@given(case=passing())
def test_each_limit_alone_blocks_and_is_named(
    name: str, case: tuple[RiskLimits, RiskUsage, RiskCheck]
) -> None:
    decision = evaluate(*_violate(name, *case))
    assert not decision.allowed
    assert decision.blocking_limit == name
    assert _failing(decision) == {name}
    entry = decision.checks[name]
    assert {"value", "limit", "ok"} <= entry.keys()


@settings(max_examples=100, deadline=None)
@given(
    case=passing(),
    state=st.sampled_from(["active", "reducing", "halted"]),
    broken=st.sets(st.sampled_from(CHECKS)),
)
def test_cancels_always_pass_whatever_the_state_and_limits(
    case: tuple[RiskLimits, RiskUsage, RiskCheck], state: str, broken: set[str]
) -> None:
    limits, usage, check = case
    for name in sorted(broken):
        limits, usage, check = _violate(name, limits, usage, check)
    usage = replace(usage, trading_state=state)  # type: ignore[arg-type]
    decision = evaluate(limits, usage, check.model_copy(update={"is_cancel": True}))
    assert decision.allowed
    assert decision.blocking_limit is None
    assert decision.trading_state == state


def test_reducing_lets_only_shrinking_orders_through() -> None:
    usage = RiskUsage(trading_state="reducing", positions={SYMBOL: D(2)})
    sell = RiskCheck(order_req_id="a", symbol=SYMBOL, side="sell", amount=D(1), price=D(10))
    assert evaluate(RiskLimits(), usage, sell).allowed
    buy = sell.model_copy(update={"side": "buy"})
    assert evaluate(RiskLimits(), usage, buy).blocking_limit == "trading_state"
    too_big = sell.model_copy(update={"amount": D(3)})
    assert evaluate(RiskLimits(), usage, too_big).blocking_limit == "trading_state"


def test_shrinking_orders_pass_exposure_and_drawdown_limits() -> None:
    limits = RiskLimits(max_exposure=D(0), max_daily_drawdown=D(10))
    usage = RiskUsage(positions={SYMBOL: D(1)}, notional={SYMBOL: D(100)}, drawdown=D(50))
    sell = RiskCheck(order_req_id="a", symbol=SYMBOL, side="sell", amount=D(1), price=D(100))
    assert evaluate(limits, usage, sell).allowed
    buy = sell.model_copy(update={"side": "buy"})
    assert evaluate(limits, usage, buy).blocking_limit == "max_exposure"


def test_an_order_already_counted_today_is_not_counted_twice() -> None:
    limits = RiskLimits(max_trades_per_day=1)
    usage = RiskUsage(trades_today=1, counted=frozenset({"a"}))
    check = RiskCheck(order_req_id="a", symbol=SYMBOL, side="buy", amount=D(1), price=D(1))
    assert evaluate(limits, usage, check).allowed
    other = check.model_copy(update={"order_req_id": "b"})
    assert evaluate(limits, usage, other).blocking_limit == "max_trades_per_day"


def test_own_reservation_does_not_block_its_own_check() -> None:
    usage = RiskUsage(free={"USDT": D(100)}, reserved={"USDT": {"a": D(100)}})
    check = RiskCheck(order_req_id="a", symbol=SYMBOL, side="buy", amount=D(1), price=D(100))
    assert evaluate(RiskLimits(), usage, check).allowed
    other = check.model_copy(update={"order_req_id": "b"})
    assert evaluate(RiskLimits(), usage, other).blocking_limit == "free_balance"


def test_a_sell_needs_the_base_asset() -> None:
    usage = RiskUsage(free={"USDT": D(10**6), "BTC": D("0.5")}, positions={SYMBOL: D(1)})
    sell = RiskCheck(order_req_id="a", symbol=SYMBOL, side="sell", amount=D(1), price=D(100))
    decision = evaluate(RiskLimits(), usage, sell)
    assert decision.blocking_limit == "free_balance"
    assert decision.checks["free_balance"]["asset"] == "BTC"


def test_helpers_split_symbols_and_read_ccxt_markets() -> None:
    assert split_symbol("BTC/USDT:USDT") == ("BTC", "USDT")
    with pytest.raises(ValueError, match="BASE/QUOTE"):
        split_symbol("BTCUSDT")
    assert shrinks(D(-2), "buy", D(1))
    assert not shrinks(D(0), "sell", D(1))
    markets = {
        SYMBOL: {
            "precision": {"amount": 0.0001, "price": 0.01},
            "limits": {"cost": {"min": 10.0}},
        }
    }
    assert market_filters_from_ccxt(markets)[SYMBOL] == MarketFilter(
        D("0.0001"), D("0.01"), D("10.0")
    )
    assert MarketFilter.of({"amount_step": "0.1"}) == MarketFilter(D("0.1"))
