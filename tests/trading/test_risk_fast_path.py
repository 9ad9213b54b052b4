"""The Risk actor's kept indexes and shortcuts give exactly what recomputing would.

The actor keeps ``_reserved`` / ``_positions`` / ``_notional`` / ``_total`` in
step with ``held`` and ``pnl`` instead of rebuilding them per check, caches
the UTC day's bounds, builds decisions without re-validation and hands the
log str values for Decimals. Each is checked against its slow reference
(``Risk.usage()`` rebuilds from the state) under every input that changes it.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from phalanx import ActorSystem
from phalanx.actors._risk import Risk, start_risk
from phalanx.actors._risk_model import (
    MarketFilter,
    RiskLimits,
    RiskUsage,
    _reserved_by_others,
    evaluate,
)
from phalanx.actors._risk_state import _DayClock
from phalanx.errors import PhalanxError
from phalanx.protocols.trading import (
    FundsAtVenue,
    PnlUpdate,
    ReleaseFunds,
    ReserveFunds,
    RiskCheck,
    RiskDecision,
    SetTradingState,
)
from phalanx.runtime._log_masking import mask_value

from ._rig import decision_lines, quick_system

D = Decimal
DAY = 86_400
T0 = 1_800_000_000.0  # 2027-01-15 08:00 UTC
MARKETS = {
    "BTC/USDT": {"amount_step": "0.001", "price_step": "0.01", "min_notional": "10"},
    "ETH/USDT": {"amount_step": "0.01"},
}
IDS = st.sampled_from([f"r-{i}" for i in range(8)])
SYMBOLS = st.sampled_from(["BTC/USDT", "ETH/USDT", "SOL/USDT"])
AMOUNTS = st.sampled_from([D("0.1"), D(1), D("300.305"), D(2000), D("0.333333333333333333333")])
PNL = st.integers(-80, 80).map(D)


def _checks() -> st.SearchStrategy[RiskCheck]:
    return st.builds(
        RiskCheck,
        order_req_id=IDS,
        symbol=st.sampled_from(["BTC/USDT", "ETH/USDT", "XRP/USDT", "BAD"]),
        side=st.sampled_from(["buy", "sell"]),
        amount=st.sampled_from([D("0.01"), D("0.1"), D("0.0105"), D(2)]),
        price=st.sampled_from([D(100), D("30000.5"), D("100.005")]),
        reduce_only=st.booleans(),
        is_cancel=st.booleans(),
    )


# --- the UTC day cache ----------------------------------------------------------------


def _utc(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).date().isoformat()


EPOCHS = st.one_of(
    st.floats(min_value=0, max_value=4_102_444_800),  # 1970..2100
    # At and around midnights: the bounds the cache keys on.
    st.tuples(st.integers(0, 47_000), st.sampled_from([-1e-6, -0.5, 0.0, 1e-6, 0.5])).map(
        lambda t: max(0.0, t[0] * DAY + t[1])
    ),
)


@given(st.lists(EPOCHS, min_size=1, max_size=40))
def test_the_day_clock_gives_the_utc_date_for_any_sequence_of_epochs(epochs: list[float]) -> None:
    clock = _DayClock()
    for epoch in epochs:  # forward, backward, across midnight, repeated
        assert clock.day(epoch) == _utc(epoch)


def test_the_day_clock_moves_on_at_midnight_and_back_before_it() -> None:
    clock = _DayClock()
    midnight = (T0 // DAY + 1) * DAY
    assert clock.day(midnight - 0.001) == "2027-01-15"
    assert clock.day(midnight) == "2027-01-16"
    assert clock.day(midnight - 0.001) == "2027-01-15"  # a clock stepped back
    assert clock.day(midnight + DAY - 1) == "2027-01-16"


# --- the model's shortcuts ---------------------------------------------------------------


@given(
    st.lists(
        st.tuples(
            st.sampled_from(["a", "b", "c", "own"]),
            st.decimals(allow_nan=False, allow_infinity=False, places=None),
        ),
        max_size=12,
    )
)
def test_reserved_by_others_is_the_plain_sum_skipping_the_order(
    items: list[tuple[str, Decimal]],
) -> None:
    held = {
        f"{rid}-{i}" if rid != "own" else "own": amount for i, (rid, amount) in enumerate(items)
    }
    usage = RiskUsage(reserved={"USDT": held})
    expected = sum((a for rid, a in held.items() if rid != "own"), D(0))
    assert _reserved_by_others(usage, "USDT", "own") == expected
    assert _reserved_by_others(usage, "BTC", "own") == D(0)


@settings(max_examples=60)
@given(
    check=_checks(),
    state=st.sampled_from(["active", "reducing", "halted"]),
    position=st.sampled_from([D(0), D("0.5"), D(-2)]),
    free=st.one_of(st.none(), st.just({"USDT": D(5000), "BTC": D(1)})),
    reserved=st.dictionaries(IDS, AMOUNTS, max_size=4),
)
def test_a_decision_equals_the_validated_model_of_its_fields(
    check: RiskCheck,
    state: Any,
    position: Decimal,
    free: dict[str, Decimal] | None,
    reserved: dict[str, Decimal],
) -> None:
    usage = RiskUsage(
        trading_state=state,
        positions={"BTC/USDT": position},
        notional={"BTC/USDT": abs(position) * 100},
        free=free,
        reserved={"USDT": reserved, "BTC": reserved},
        markets={s: MarketFilter.of(f) for s, f in MARKETS.items()},
    )
    decision = evaluate(RiskLimits(max_exposure=D(20_000)), usage, check)
    validated = RiskDecision(**dict(decision))
    assert validated == decision
    assert validated.model_dump(mode="json") == decision.model_dump(mode="json")


# --- the actor's kept indexes, against rebuilding them -----------------------------------------


def _risk(system: ActorSystem) -> Risk:
    actor = system._cells["/risk"].actor
    assert isinstance(actor, Risk)
    return actor


def _same_usage(live: RiskUsage, rebuilt: RiskUsage) -> None:
    assert live.trading_state == rebuilt.trading_state
    assert list(live.positions.items()) == list(rebuilt.positions.items())  # order: same sums
    assert list(live.notional.items()) == list(rebuilt.notional.items())
    assert live.drawdown == rebuilt.drawdown
    assert live.trades_today == rebuilt.trades_today
    assert set(live.counted) == set(rebuilt.counted)
    # Per asset, the ids in the same order (sums add in it); assets are only looked up.
    assert {a: list(ids.items()) for a, ids in live.reserved.items()} == {
        a: list(ids.items()) for a, ids in rebuilt.reserved.items()
    }
    assert live.free == rebuilt.free
    assert live.markets == rebuilt.markets


class Clock:
    """An injectable epoch clock."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


class LiveUsage(RuleBasedStateMachine):
    """Random Risk traffic, restarts and midnights: the kept indexes equal a rebuild."""

    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="risk-fast-"))
        self.clock = Clock()
        self.system: ActorSystem | None = None
        self._boot()

    def _boot(self) -> None:
        self.system = quick_system(self.dir / "var", "risk-fast")
        self.system.__enter__()
        start_risk(
            self.system,
            RiskLimits(max_exposure=D(20_000), max_open_positions=2, max_daily_drawdown=D(100)),
            markets=MARKETS,
            balance=lambda: {"USDT": D(5000), "BTC": D(1)},
            clock=self.clock,
        )

    def _ask(self, message: Any) -> Any:
        assert self.system is not None
        try:
            return self.system.ask("/risk", message, timeout=5.0)
        except PhalanxError as exc:  # refused reservations: part of the traffic
            return exc

    @rule(rid=IDS, asset=st.sampled_from(["USDT", "BTC"]), amount=AMOUNTS)
    def reserve(self, rid: str, asset: str, amount: Decimal) -> None:
        self._ask(ReserveFunds(reservation_id=rid, asset=asset, amount=amount))

    @rule(rid=IDS)
    def release(self, rid: str) -> None:
        self._ask(ReleaseFunds(reservation_id=rid))

    @rule(rid=IDS, locked=AMOUNTS)
    def at_venue(self, rid: str, locked: Decimal) -> None:
        self._ask(FundsAtVenue(reservation_id=rid, locked=locked))

    @rule(
        symbol=SYMBOLS,
        quantity=st.sampled_from([D(0), D("0.5"), D(-1)]),
        notional=st.sampled_from([D(0), D(1500), D("15000.01")]),
        realized=PNL,
        unrealized=PNL,
    )
    def pnl(
        self,
        symbol: str,
        quantity: Decimal,
        notional: Decimal,
        realized: Decimal,
        unrealized: Decimal,
    ) -> None:
        self._ask(
            PnlUpdate(
                symbol=symbol,
                quantity=quantity,
                notional=notional,
                realized_pnl=realized,
                unrealized_pnl=unrealized,
            )
        )

    @rule(check=_checks())
    def check(self, check: RiskCheck) -> None:
        decision = self._ask(check)
        assert self.system is not None
        risk = _risk(self.system)
        # The reply's checks are what the rebuilt input gives (counted: the reply came
        # before this check was counted, so compare on a state where it is not new).
        if check.is_cancel or not decision.allowed:
            assert decision == evaluate(risk.limits, risk.usage(*self._inputs(risk)), check)

    def _inputs(self, risk: Risk) -> tuple[Any, Any]:
        free, _ = risk._free()
        return free, risk.markets()

    @rule(state=st.sampled_from(["active", "reducing", "halted"]))
    def set_state(self, state: Any) -> None:
        self._ask(SetTradingState(state=state, reason="test"))

    @rule(step=st.sampled_from([1.0, 3_600.0, DAY / 2, DAY]))
    def advance(self, step: float) -> None:
        self.clock.now += step

    @rule()
    def restart(self) -> None:
        assert self.system is not None
        self.system.__exit__(None, None, None)
        self._boot()

    @invariant()
    def indexes_equal_a_rebuild(self) -> None:
        assert self.system is not None
        risk = _risk(self.system)
        free, markets = self._inputs(risk)
        _same_usage(risk._live_usage(free, markets), risk.usage(free, markets))
        assert risk._total_pnl() == risk._sum_pnl()
        assert risk.drawdown() == risk._drawdown(risk._sum_pnl())
        probe = RiskCheck(
            order_req_id="r-1", symbol="BTC/USDT", side="buy", amount=D("0.1"), price=D(100)
        )
        live = evaluate(risk.limits, risk._live_usage(free, markets), probe)
        assert live == evaluate(risk.limits, risk.usage(free, markets), probe)

    def teardown(self) -> None:
        if self.system is not None:
            self.system.__exit__(None, None, None)
        shutil.rmtree(self.dir, ignore_errors=True)


LiveUsage.TestCase.settings = settings(max_examples=8, stateful_step_count=30, deadline=None)
test_the_kept_indexes_equal_a_rebuild_under_any_traffic = LiveUsage.TestCase


# --- the log lines -------------------------------------------------------------------------------


def _rendered(value: Any) -> Any:
    """What the log writes for ``value`` (masking turns a Decimal into its str)."""
    return json.loads(json.dumps(mask_value(value)))


def test_logged_lines_carry_the_decision_as_the_log_renders_it(tmp_path: Path) -> None:
    with quick_system(tmp_path / "var", "risk-log") as system:
        start_risk(system, markets=MARKETS, balance=lambda: {"USDT": D(1000)})
        check = RiskCheck(
            order_req_id="s-1", symbol="BTC/USDT", side="buy", amount=D("0.10"), price=D("100.50")
        )
        decision = system.ask("/risk", check, timeout=5.0)
        odd = check.model_copy(update={"order_req_id": "s-2", "amount": D("0.1005")})
        blocked = system.ask("/risk", odd, timeout=5.0)
        system.ask("/risk", ReserveFunds(reservation_id="s-1", asset="USDT", amount=D("10.050")))
        system.ask("/risk", FundsAtVenue(reservation_id="s-1", locked=D("10.0500")))
        system.ask("/risk", ReleaseFunds(reservation_id="s-1"))
        [line] = decision_lines(system, "risk_limits_eval")[:1]
        assert line["checks"] == _rendered(decision.checks)
        assert (line["amount"], line["price"]) == ("0.10", "100.50")
        assert decision.checks["max_exposure"]["value"] == D("10.0500")  # the reply keeps Decimals
        [_, line2] = decision_lines(system, "risk_limits_eval")
        assert line2["checks"] == _rendered(blocked.checks)
        assert line2["blocking_limit"] == "amount_precision"
        [reserve] = decision_lines(system, "funds_reserve")
        assert (reserve["amount"], reserve["available"]) == ("10.050", "1000")
        [at_venue] = decision_lines(system, "funds_at_venue")
        assert at_venue["locked"] == "10.0500"
