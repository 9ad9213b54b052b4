"""The Risk actor at ``/risk``: pre-trade limits, trading state, fund reservations (issue 5).

Decisions come from the pure :func:`phalanx.actors._risk_model.evaluate`;
this actor only gathers the inputs (positions from ``PnlUpdate``, free
balance, reservations, today's counters) and persists what must survive a
restart in LMDB db ``risk`` (:class:`~phalanx.storage._risk.RiskStore`).

Messages (each ``ask`` replies as listed):

- ``RiskCheck`` -> :class:`RiskDecision`; logs ``risk_limits_eval`` (decision
  taxonomy) with every check and the blocking limit. An allowed order is
  counted once (by ``order_req_id``) in today's trades.
- ``ReserveFunds`` / ``ReleaseFunds`` / ``FundsAtVenue``: fund reservations
  and the free balance (:mod:`phalanx.actors._risk_funds`).
- ``SetTradingState`` / ``PnlUpdate``: trading state, PnL and the daily
  drawdown (:mod:`phalanx.actors._risk_state`).
- ``GetRisk`` -> :class:`RiskSnapshot`.

The trading state at start is the stricter of the persisted one (a drawdown
halt survives restarts) and ``initial_state`` (first incarnation only): pass
``initial_state="halted"`` to keep trading off until reconciliation sends
``SetTradingState("active")``. Filters or a balance that cannot be read block
their check (``market`` / ``free_balance``, with ``error``), never pass.

Usage::

    start_risk(system, RiskLimits(max_exposure=Decimal(5000)),
               markets={"BTC/USDT": {"amount_step": "0.0001", "price_step": "0.01",
                                     "min_notional": "10"}},
               balance=ledger.holdings)
    decision = system.ask("/risk", RiskCheck(order_req_id="s-1", symbol="BTC/USDT",
                                             side="buy", amount=Decimal("0.01"),
                                             price=Decimal(30000)))
    system.ask("/risk", ReserveFunds(reservation_id="s-1", asset="USDT", amount=Decimal(301)))
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any

from phalanx.actors._risk_checks import _fail, _log_checks
from phalanx.actors._risk_funds import _RiskFunds
from phalanx.actors._risk_model import (
    MarketFilter,
    RiskLimits,
    evaluate,
    market_filters_from_ccxt,
)
from phalanx.actors._risk_state import _DayClock, _RiskState
from phalanx.actors._risk_views import _RiskViews
from phalanx.protocols.trading import (
    FundsAtVenue,
    GetRisk,
    PnlUpdate,
    ReleaseFunds,
    ReserveFunds,
    RiskCheck,
    RiskDecision,
    SetTradingState,
    TradingState,
)
from phalanx.runtime import ActorSystem, Ref
from phalanx.storage._risk import RiskStore
from phalanx.supervision import Retry

__all__ = [
    "RISK",
    "MarketsSource",
    "Risk",
    "market_filters_from_ccxt",
    "start_risk",
]

RISK = "/risk"

MarketsSource = (
    Mapping[str, MarketFilter | Mapping[str, Any]]
    | Callable[[], Mapping[str, MarketFilter | Mapping[str, Any]]]
)
"""Market filters per symbol, or a callable returning them (read at each check)."""


_STRICTNESS = {"active": 0, "reducing": 1, "halted": 2}


class Risk(_RiskViews, _RiskState, _RiskFunds):
    """Pre-trade risk: limits, trading state, reservations; one per node at ``/risk``."""

    def __init__(
        self,
        limits: RiskLimits | None = None,
        *,
        markets: MarketsSource | None = None,
        balance: Callable[[], Mapping[str, Decimal]] | None = None,
        exchange: str | None = None,
        balance_ttl_s: float = 1.0,
        initial_state: TradingState = "active",
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__()
        self.limits = limits or RiskLimits()
        # A mapping is converted once (a venue lists thousands of symbols); a
        # callable is read at each check.
        self._markets_source: MarketsSource | None = markets
        self._markets: dict[str, MarketFilter] | None = None
        if markets is not None and not callable(markets):
            self._markets = {sym: MarketFilter.of(f) for sym, f in markets.items()}
        self._balance = balance
        self._exchange = exchange
        self._balance_ttl_s = balance_ttl_s
        self._initial_state = initial_state
        self._clock = clock
        self._balance_cache: tuple[float, dict[str, Decimal]] | None = None
        self._days = _DayClock()
        self._handlers: dict[type, Callable[[Any], Any]] = {
            RiskCheck: self._check,
            ReserveFunds: self._reserve,
            ReleaseFunds: self._release,
            FundsAtVenue: self._at_venue,
            PnlUpdate: self._pnl,
        }

    # --- lifecycle -----------------------------------------------------------

    def on_start(self) -> None:
        self.store = RiskStore(self.system.storage)
        self.log = self.system.logs.logger("decision")
        rec = self.store.load()
        # The stricter of the persisted state (a halt survives restarts) and, for
        # the first incarnation only, initial_state ("halted" keeps trading off
        # until reconciliation enables it; a later crash must not undo that).
        persisted: TradingState = rec.state or "active"  # type: ignore[assignment]
        initial = self._initial_state if self.incarnation == 1 else "active"
        if _STRICTNESS[initial] > _STRICTNESS[persisted]:
            self.state, self.state_reason = self._initial_state, "initial state at start"
        else:
            self.state, self.state_reason = persisted, rec.state_reason
        self.day, self.trades, self.counted = rec.day, rec.trades, set(rec.counted)
        self.peak = rec.peak
        self.held: dict[str, tuple[str, Decimal]] = {}
        # Derived from ``held`` and ``pnl``, kept in step with them by _hold/_unhold and
        # _pnl (the only writers), in the same key order as rebuilding them would give,
        # so sums come out identical; ``usage()`` rebuilds them (the reference).
        self._reserved: dict[str, dict[str, Decimal]] = {}  # asset -> {id: amount}
        for rid, (asset, amount) in rec.held.items():
            self._hold(rid, asset, amount)
        # reservation id -> (asset, locked, monotonic time of FundsAtVenue); memory only.
        self.at_venue: dict[str, tuple[str, Decimal, float]] = {}
        self.pnl = rec.pnl  # symbol -> {quantity, notional, realized, unrealized}
        self._positions = {s: p["quantity"] for s, p in self.pnl.items()}
        self._notional = {s: p["notional"] for s, p in self.pnl.items()}
        self._total = self._sum_pnl()
        self._breached_day: str | None = None  # the day the drawdown limit was last reached
        self._roll_day()

    def introspect(self) -> dict[str, Any]:
        return {"class": "Risk", **self.snapshot().model_dump(mode="json")}

    # --- messages --------------------------------------------------------------

    def on_receive(self, message: Any) -> Any:
        handler = self._handlers.get(type(message))  # by exact type: the hot path
        if handler is None:  # a subclass of one of them
            handler = next((h for t, h in self._handlers.items() if isinstance(message, t)), None)
        if handler is not None:
            return handler(message)
        if isinstance(message, SetTradingState):
            self._set_state(message.state, message.reason or "requested")
            return None
        if isinstance(message, GetRisk):
            return self.snapshot()
        return super().on_receive(message)

    def _check(self, check: RiskCheck) -> RiskDecision:
        self._roll_day()
        if check.is_cancel:
            return self._log_decision(check, evaluate(self.limits, self._live_usage(), check))
        free, balance_error = self._free()
        try:
            markets, markets_error = self.markets(), None
        except Exception as exc:  # an unreadable filter source blocks, never passes
            markets, markets_error = {}, f"{type(exc).__name__}: {exc}"
        decision = evaluate(self.limits, self._live_usage(free, markets), check)
        # An input that could not be read blocks its check (never passes unchecked).
        for name, error in (("market", markets_error), ("free_balance", balance_error)):
            if error is not None:
                decision = _fail(decision, name, error)
        if decision.allowed and check.order_req_id not in self.counted:
            self.trades = self.store.count_trade(self.day, check.order_req_id)
            self.counted.add(check.order_req_id)
        return self._log_decision(check, decision)

    def _log_decision(self, check: RiskCheck, decision: RiskDecision) -> RiskDecision:
        self.log.info(
            "risk_limits_eval", order_req_id=check.order_req_id, symbol=check.symbol,
            side=check.side, amount=str(check.amount), price=str(check.price),
            is_cancel=check.is_cancel, reduce_only=check.reduce_only,
            allowed=decision.allowed, blocking_limit=decision.blocking_limit,
            trading_state=decision.trading_state, checks=_log_checks(decision.checks),
        )  # fmt: skip
        return decision

    def markets(self) -> dict[str, MarketFilter]:
        """The market filters now (from the constructor's mapping or callable)."""
        if self._markets is not None:
            return self._markets
        src = self._markets_source
        raw = src() if callable(src) else src
        return {s: MarketFilter.of(f) for s, f in (raw or {}).items()}


def start_risk(
    system: ActorSystem,
    limits: RiskLimits | None = None,
    *,
    path: str = RISK,
    retry: Retry | None = None,
    **kwargs: Any,
) -> Ref:
    """Spawn the Risk actor at ``/risk`` (kwargs as for :class:`Risk`)."""
    return system.spawn(
        Risk,
        path,
        limits,
        retry=retry or Retry(max_attempts=5, backoff="exponential", base=0.05, max=1.0),
        **kwargs,
    )
