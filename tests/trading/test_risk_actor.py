"""The Risk actor: each limit blocks with a logged reason; state and reservations persist."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from phalanx import Actor, ActorSystem
from phalanx.actors._risk import start_risk
from phalanx.actors._risk_funds import InvalidReservation
from phalanx.actors._risk_model import CHECKS, RiskLimits
from phalanx.errors import InsufficientFunds
from phalanx.protocols.exchange import Balance, FetchBalance
from phalanx.protocols.trading import (
    FundsAtVenue,
    GetRisk,
    PnlUpdate,
    ReleaseFunds,
    Reservation,
    ReserveFunds,
    RiskCheck,
    RiskDecision,
    RiskSnapshot,
    SetTradingState,
)
from phalanx.storage._risk import RiskStore

from ._rig import decision_lines, quick_system

D = Decimal
SYMBOL = "BTC/USDT"
MARKETS = {SYMBOL: {"amount_step": "0.001", "price_step": "0.01", "min_notional": "10"}}
DAY = 86_400.0
T0 = 1_800_000_000.0  # 2027-01-15 08:00 UTC


class Clock:
    """An injectable epoch clock."""

    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _system(var_dir: Path) -> ActorSystem:
    return quick_system(var_dir, "risk-test")


@pytest.fixture
def var_dir(tmp_path: Path) -> Path:
    return tmp_path / "var"


@pytest.fixture
def node(var_dir: Path) -> Iterator[ActorSystem]:
    with _system(var_dir) as system:
        yield system


def _evals(system: ActorSystem, order_req_id: str | None = None) -> list[dict[str, Any]]:
    return [
        line
        for line in decision_lines(system, "risk_limits_eval")
        if order_req_id is None or line["order_req_id"] == order_req_id
    ]


def _check(order_req_id: str, **fields: Any) -> RiskCheck:
    base: dict[str, Any] = {
        "order_req_id": order_req_id,
        "symbol": SYMBOL,
        "side": "buy",
        "amount": D("0.1"),
        "price": D(100),
    }
    return RiskCheck(**{**base, **fields})


def _ask(system: ActorSystem, message: Any) -> Any:
    return system.ask("/risk", message, timeout=5.0)


# Each case: (limit, risk kwargs, setup messages, the check that must be blocked).
CASES: list[tuple[str, dict[str, Any], list[Any], RiskCheck]] = [
    ("trading_state", {}, [SetTradingState(state="halted", reason="test")], _check("c1")),
    ("reduce_only", {}, [], _check("c2", reduce_only=True)),
    ("market", {}, [], _check("c3", symbol="ETH/USDT")),
    ("amount_precision", {}, [], _check("c4", amount=D("0.1005"))),
    ("price_precision", {}, [], _check("c5", price=D("100.005"))),
    ("min_notional", {}, [], _check("c6", amount=D("0.01"))),
    ("max_exposure", {"limits": RiskLimits(max_exposure=D(5))}, [], _check("c7")),
    (
        "max_open_positions",
        {"limits": RiskLimits(max_open_positions=1)},
        [
            PnlUpdate(
                symbol="X/USDT",
                quantity=D(1),
                notional=D(1),
                realized_pnl=D(0),
                unrealized_pnl=D(0),
            )
        ],
        _check("c8"),
    ),
    (
        "max_daily_drawdown",
        {"limits": RiskLimits(max_daily_drawdown=D(50))},
        [
            SetTradingState(state="active", reason="keep trading for the test"),
            PnlUpdate(
                symbol="X/USDT",
                quantity=D(0),
                notional=D(0),
                realized_pnl=D(0),
                unrealized_pnl=D(0),
            ),
            PnlUpdate(
                symbol="X/USDT",
                quantity=D(0),
                notional=D(0),
                realized_pnl=D(-60),
                unrealized_pnl=D(0),
            ),
            SetTradingState(state="active", reason="operator override"),
        ],
        _check("c9"),
    ),
    (
        "max_trades_per_day",
        {"limits": RiskLimits(max_trades_per_day=1)},
        [_check("c0")],
        _check("c10"),
    ),
    ("free_balance", {"balance": lambda: {"USDT": D(5)}}, [], _check("c11")),
]


@pytest.mark.parametrize(("limit", "kwargs", "setup", "check"), CASES, ids=[c[0] for c in CASES])
def test_each_limit_blocks_a_trade_and_the_log_names_it(
    node: ActorSystem,
    var_dir: Path,
    limit: str,
    kwargs: dict[str, Any],
    setup: list[Any],
    check: RiskCheck,
) -> None:
    start_risk(node, markets=MARKETS, **{"balance": lambda: {"USDT": D(10**6)}, **kwargs})
    for message in setup:
        _ask(node, message)
    decision = _ask(node, check)
    assert isinstance(decision, RiskDecision)
    assert (decision.allowed, decision.blocking_limit) == (False, limit)
    [line] = _evals(node, check.order_req_id)
    assert line["blocking_limit"] == limit
    assert line["allowed"] is False
    assert list(line["checks"]) == list(CHECKS)  # every check, with value, limit and ok
    assert all({"value", "limit", "ok"} <= c.keys() for c in line["checks"].values())
    assert line["checks"][limit]["ok"] is False
    assert [n for n, c in line["checks"].items() if not c["ok"]] == [limit]


def test_an_allowed_trade_logs_every_check_as_ok(node: ActorSystem, var_dir: Path) -> None:
    start_risk(node, markets=MARKETS, balance=lambda: {"USDT": D(1000)})
    decision = _ask(node, _check("ok-1"))
    assert decision.allowed
    assert decision.blocking_limit is None
    [line] = _evals(node, "ok-1")
    assert line["allowed"] is True
    assert line["blocking_limit"] is None
    assert all(c["ok"] for c in line["checks"].values())
    assert line["checks"]["free_balance"]["value"] == "1000"


def test_halted_still_lets_a_cancel_through(node: ActorSystem, var_dir: Path) -> None:
    start_risk(node, markets=MARKETS)
    _ask(node, SetTradingState(state="halted", reason="incident"))
    blocked = _ask(node, _check("h-1"))
    assert blocked.blocking_limit == "trading_state"
    cancel = _ask(node, _check("h-1", is_cancel=True))
    assert cancel.allowed
    assert cancel.trading_state == "halted"
    assert [line["allowed"] for line in _evals(node, "h-1")] == [False, True]


def test_reducing_passes_a_sell_of_the_position_only(node: ActorSystem) -> None:
    start_risk(node, markets=MARKETS)
    pnl = PnlUpdate(
        symbol=SYMBOL, quantity=D(1), notional=D(100), realized_pnl=D(0), unrealized_pnl=D(0)
    )
    node.tell("/risk", pnl)
    _ask(node, SetTradingState(state="reducing"))
    assert _ask(node, _check("r-1", side="sell")).allowed
    assert _ask(node, _check("r-2")).blocking_limit == "trading_state"


def test_an_unreadable_balance_blocks_instead_of_passing(node: ActorSystem) -> None:
    def broken() -> dict[str, Decimal]:
        raise ConnectionError("venue down")

    start_risk(node, markets=MARKETS, balance=broken)
    decision = _ask(node, _check("b-1"))
    assert decision.blocking_limit == "free_balance"
    assert "venue down" in decision.checks["free_balance"]["error"]
    with pytest.raises(InsufficientFunds, match="balance unavailable"):
        _ask(node, ReserveFunds(reservation_id="b-1", asset="USDT", amount=D(1)))


class FakeExchange(Actor):
    """Replies a fixed Balance to FetchBalance and counts the asks."""

    def on_start(self) -> None:
        self.asks = 0

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, FetchBalance):
            self.asks += 1
            return Balance(free={"USDT": D(100)}, used={}, total={"USDT": D(100)})
        if message == "asks":
            return self.asks
        return super().on_receive(message)


def test_free_balance_is_asked_of_the_exchange_connection_and_cached(node: ActorSystem) -> None:
    node.spawn(FakeExchange, "/exchanges/paper")
    start_risk(node, exchange="paper", balance_ttl_s=3600.0)
    _ask(node, ReserveFunds(reservation_id="e-1", asset="USDT", amount=D(60)))
    with pytest.raises(InsufficientFunds, match="40 available"):
        _ask(node, ReserveFunds(reservation_id="e-2", asset="USDT", amount=D(60)))
    assert _ask(node, _check("e-3", amount=D("0.5"))).blocking_limit == "free_balance"
    assert node.ask("/exchanges/paper", "asks") == 1


class LockingExchange(Actor):
    """A venue balance that a test can change (a placed order locks funds)."""

    def on_start(self) -> None:
        self.free = D(100)

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, FetchBalance):
            return Balance(free={"USDT": self.free}, used={}, total={"USDT": D(100)})
        if isinstance(message, Decimal):
            self.free = message
            return None
        return super().on_receive(message)


def test_funds_an_acknowledged_order_locks_at_the_venue_count_once_not_twice(
    node: ActorSystem,
) -> None:
    node.spawn(LockingExchange, "/exchanges/paper")
    start_risk(node, exchange="paper", balance_ttl_s=0.0)  # a fresh venue balance each time
    _ask(node, ReserveFunds(reservation_id="v-1", asset="USDT", amount=D(60)))
    node.ask("/exchanges/paper", D(45))  # v-1's order rests: the venue locks 55 of it
    with pytest.raises(InsufficientFunds, match=r"-15 available"):  # 45 - 60: counted twice
        _ask(node, ReserveFunds(reservation_id="v-2", asset="USDT", amount=D(1)))
    node.tell("/risk", FundsAtVenue(reservation_id="v-1", locked=D(55)))
    node.tell("/risk", FundsAtVenue(reservation_id="v-1", locked=D(99)))  # idempotent
    node.tell("/risk", FundsAtVenue(reservation_id="never-held", locked=D(50)))  # ignored
    with pytest.raises(InsufficientFunds, match=r"40 available"):  # 45 + 55 - 60
        _ask(node, ReserveFunds(reservation_id="v-2", asset="USDT", amount=D(41)))
    _ask(node, ReserveFunds(reservation_id="v-2", asset="USDT", amount=D(40)))
    assert _ask(node, GetRisk()).usage["at_venue"] == {"v-1": "USDT 55"}
    _ask(node, ReleaseFunds(reservation_id="v-1"))  # its order ended: nothing added back
    node.ask("/exchanges/paper", D(100))
    assert _ask(node, GetRisk()).usage["at_venue"] == {}
    with pytest.raises(InsufficientFunds, match=r"60 available"):  # 100 - 40
        _ask(node, ReserveFunds(reservation_id="v-3", asset="USDT", amount=D(61)))


def test_a_balance_read_before_the_order_was_acknowledged_still_counts_it(
    node: ActorSystem,
) -> None:
    node.spawn(LockingExchange, "/exchanges/paper")
    start_risk(node, exchange="paper", balance_ttl_s=3600.0)
    _ask(node, ReserveFunds(reservation_id="c-1", asset="USDT", amount=D(60)))  # reads 100
    node.ask("/exchanges/paper", D(45))
    node.tell("/risk", FundsAtVenue(reservation_id="c-1", locked=D(55)))
    # The cached 100 predates the lock: adding 55 back would count it as free twice.
    with pytest.raises(InsufficientFunds, match=r"40 available"):
        _ask(node, ReserveFunds(reservation_id="c-2", asset="USDT", amount=D(41)))


def test_reservations_are_idempotent_and_limited_by_free_minus_held(node: ActorSystem) -> None:
    start_risk(node, balance=lambda: {"USDT": D(100)})
    first = _ask(node, ReserveFunds(reservation_id="s-1", asset="USDT", amount=D(70)))
    again = _ask(node, ReserveFunds(reservation_id="s-1", asset="USDT", amount=D(70)))
    assert first == again == Reservation(reservation_id="s-1", asset="USDT", amount=D(70))
    with pytest.raises(InsufficientFunds, match="30 available"):
        _ask(node, ReserveFunds(reservation_id="s-2", asset="USDT", amount=D(31)))
    _ask(node, ReserveFunds(reservation_id="s-2", asset="USDT", amount=D(30)))
    assert _ask(node, GetRisk()).usage["reserved"] == {"USDT": "100"}
    _ask(node, ReleaseFunds(reservation_id="s-1"))
    _ask(node, ReleaseFunds(reservation_id="s-1"))  # idempotent
    _ask(node, ReleaseFunds(reservation_id="never-made"))
    snap = _ask(node, GetRisk())
    assert snap.reservations == {"s-2": "USDT 30"}
    # A replayed reserve of a released id does not hold the funds again.
    _ask(node, ReserveFunds(reservation_id="s-1", asset="USDT", amount=D(70)))
    assert _ask(node, GetRisk()).usage["reserved"] == {"USDT": "30"}


def test_reservations_and_counters_survive_a_kill_of_the_actor(node: ActorSystem) -> None:
    clock = Clock()
    start_risk(
        node, RiskLimits(max_trades_per_day=2), balance=lambda: {"USDT": D(100)}, clock=clock
    )
    _ask(node, ReserveFunds(reservation_id="k-1", asset="USDT", amount=D(80)))
    assert _ask(node, _check("k-1")).allowed
    node.kill("/risk")
    snap = _ask(node, GetRisk())
    assert node.stats("/risk")["incarnation"] == 2
    assert snap.reservations == {"k-1": "USDT 80"}
    assert snap.usage["trades_today"] == 1
    with pytest.raises(InsufficientFunds):
        _ask(node, ReserveFunds(reservation_id="k-2", asset="USDT", amount=D(21)))
    assert _ask(node, _check("k-1")).allowed  # counted once, not again after the restart


def test_state_reservations_and_counters_survive_a_node_restart(var_dir: Path) -> None:
    clock = Clock()
    limits = RiskLimits(max_trades_per_day=2, max_daily_drawdown=D(10))
    with _system(var_dir) as system:
        start_risk(system, limits, balance=lambda: {"USDT": D(100)}, clock=clock)
        _ask(system, ReserveFunds(reservation_id="n-1", asset="USDT", amount=D(90)))
        assert _ask(system, _check("n-1")).allowed
        pnl = PnlUpdate(
            symbol=SYMBOL, quantity=D(1), notional=D(99), realized_pnl=D(0), unrealized_pnl=D(5)
        )
        system.tell("/risk", pnl)
        _ask(system, SetTradingState(state="reducing", reason="operator"))
    with _system(var_dir) as system:
        start_risk(system, limits, balance=lambda: {"USDT": D(100)}, clock=clock)
        snap = _ask(system, GetRisk())
        assert isinstance(snap, RiskSnapshot)
        assert snap.trading_state == "reducing"
        assert snap.reservations == {"n-1": "USDT 90"}
        assert (snap.usage["trades_today"], snap.usage["exposure"]) == (1, "99")
        with pytest.raises(InsufficientFunds, match="10 available"):
            _ask(system, ReserveFunds(reservation_id="n-2", asset="USDT", amount=D(11)))
        # The day's PnL peak survived too: a fall of 10 from it reaches the limit.
        sub = system.events.subscribe(kinds=["alert_fired"])
        system.tell("/risk", pnl.model_copy(update={"unrealized_pnl": D(-5)}))
        assert _ask(system, GetRisk()).usage["drawdown"] == "10"
        alert = sub.wait_for(lambda e: e.fields.get("alert") == "max_daily_drawdown", 5.0)
        assert alert is not None  # fired though the operator had already set reducing
        assert _ask(system, GetRisk()).trading_state == "reducing"
        sub.close()


def test_trades_per_day_roll_over_at_utc_midnight(node: ActorSystem) -> None:
    clock = Clock()
    start_risk(node, RiskLimits(max_trades_per_day=1), clock=clock)
    assert _ask(node, _check("d-1")).allowed
    assert _ask(node, _check("d-1")).allowed  # the same order is counted once
    assert _ask(node, _check("d-2")).blocking_limit == "max_trades_per_day"
    clock.now += DAY
    assert _ask(node, _check("d-2")).allowed
    assert _ask(node, GetRisk()).usage["trades_today"] == 1


def test_daily_drawdown_switches_to_reducing_so_only_loss_cutting_orders_pass(
    node: ActorSystem,
) -> None:
    sub = node.events.subscribe(kinds=["alert_fired", "trading_state"])
    start_risk(node, RiskLimits(max_daily_drawdown=D(100)), clock=Clock())

    def pnl(realized: int, unrealized: int) -> PnlUpdate:
        return PnlUpdate(
            symbol=SYMBOL, quantity=D(1), notional=D(100), realized_pnl=D(realized),
            unrealized_pnl=D(unrealized),
        )  # fmt: skip

    node.tell("/risk", pnl(0, 50))  # peak 50
    node.tell("/risk", pnl(0, -40))  # drawdown 90: still trading
    assert _ask(node, GetRisk()).trading_state == "active"
    node.tell("/risk", pnl(-10, -40))  # drawdown 100: reducing
    snap = _ask(node, GetRisk())
    assert snap.trading_state == "reducing"
    assert snap.usage["state_reason"] == "daily drawdown 100 >= 100"
    assert snap.usage["drawdown"] == "100"
    alert = sub.wait_for(lambda e: e.kind == "alert_fired", timeout=5.0)
    assert alert is not None
    assert alert.fields["severity"] == "warning"
    assert alert.fields["alert"] == "max_daily_drawdown"
    assert _ask(node, _check("dd-1")).blocking_limit == "trading_state"  # a buy adds risk
    assert _ask(node, _check("dd-1", is_cancel=True)).allowed
    assert _ask(node, _check("dd-2", side="sell", amount=D("0.5"))).allowed  # cuts the loss
    assert _ask(node, _check("dd-3", side="sell", amount=D(2))).blocking_limit == "trading_state"
    node.tell("/risk", pnl(-30, -40))  # deeper: still reducing, no second alert
    assert _ask(node, GetRisk()).trading_state == "reducing"
    changes = [e.fields["new"] for e in node.events.recent(50, kind="trading_state")]
    assert changes == ["reducing"]  # one switch, not one per PnL update
    assert len(node.events.recent(50, kind="alert_fired")) == 1
    _ask(node, SetTradingState(state="halted", reason="operator"))
    node.tell("/risk", pnl(-40, -40))
    assert _ask(node, GetRisk()).trading_state == "halted"  # never loosened by the limit
    sub.close()


def test_initial_halted_holds_until_enabled_and_a_crash_does_not_undo_it(
    var_dir: Path,
) -> None:
    with _system(var_dir) as system:
        start_risk(system, initial_state="halted")
        assert _ask(system, GetRisk()).trading_state == "halted"
        _ask(system, SetTradingState(state="active", reason="reconciled"))
        system.kill("/risk")
        assert _ask(system, GetRisk()).trading_state == "active"
        assert system.stats("/risk")["incarnation"] == 2
    with _system(var_dir) as system:  # a new node boots halted again
        start_risk(system, initial_state="halted")
        assert _ask(system, GetRisk()).trading_state == "halted"


def test_unreadable_market_filters_block_the_market_check(node: ActorSystem) -> None:
    def broken() -> dict[str, Any]:
        raise KeyError("markets not loaded")

    start_risk(node, markets=broken)
    decision = _ask(node, _check("m-1"))
    assert decision.blocking_limit == "market"
    assert "markets not loaded" in decision.checks["market"]["error"]
    assert _ask(node, _check("m-1", is_cancel=True)).allowed


def test_old_days_trade_markers_are_purged_at_rollover(node: ActorSystem) -> None:
    clock = Clock()
    start_risk(node, clock=clock)
    for i in range(3):
        assert _ask(node, _check(f"p-{i}")).allowed
    clock.now += DAY
    assert _ask(node, _check("p-new")).allowed
    store = RiskStore(node.storage)
    assert store.load().counted == {"p-new"}
    assert store.purge_trades_before("2999-01-01") == 1


def test_a_bad_reservation_is_refused_without_restarting_risk(node: ActorSystem) -> None:
    start_risk(node, balance=lambda: {"USDT": D(100)})
    with pytest.raises(InvalidReservation, match="amount must be > 0"):
        _ask(node, ReserveFunds(reservation_id="z-1", asset="USDT", amount=D(0)))
    assert _ask(node, GetRisk()).reservations == {}
    assert node.stats("/risk")["incarnation"] == 1


def test_a_zero_drawdown_limit_does_not_stop_a_flat_day(node: ActorSystem) -> None:
    start_risk(node, RiskLimits(max_daily_drawdown=D(0)))
    pnl = PnlUpdate(
        symbol=SYMBOL, quantity=D(1), notional=D(100), realized_pnl=D(0), unrealized_pnl=D(0)
    )
    node.tell("/risk", pnl)
    assert _ask(node, GetRisk()).trading_state == "active"
    assert _ask(node, _check("zd-1")).allowed
    node.tell("/risk", pnl.model_copy(update={"unrealized_pnl": D("-0.01")}))
    assert _ask(node, GetRisk()).trading_state == "reducing"
