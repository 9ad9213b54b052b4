"""Wiring the trading core: ``start_trading`` builds the tree in the documented order.

Order (docs/trading-core.md): ``/exchanges``, ``/ledger``, ``/risk``,
``/positions``, ``/orders``, then reconciliation (trading stays ``halted`` if
it fails), then ``/sagas`` (and every journaled saga resumes), then the
strategy. The :class:`TradingNode` it returns holds the pieces and computes
the run summary (DESIGN section 10) from the stores, never from guesses.
The fill sink handed to every Order actor applies each fill to its Position
(``ApplyFill``) and posts it to the Ledger; both are idempotent by trade id.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import ccxt

from phalanx.actors._ledger_actor import ledger_fill_from, start_ledger
from phalanx.actors._position import ensure_position, start_positions
from phalanx.actors._reconcile import ReconciliationResult, reconcile
from phalanx.actors._risk import start_risk
from phalanx.actors._risk_model import RiskLimits, market_filters_from_ccxt
from phalanx.actors._strategy import (
    MeanReversion,
    Strategy,
    StrategyPause,
    StrategyState,
    TradeIdea,
)
from phalanx.actors._trade_input import buy_input, sell_input
from phalanx.actors._trade_sagas import BUY, SELL, register_trade_sagas
from phalanx.actors.exchange import ConnectionState, connection_spec
from phalanx.actors.order import (
    OrderServices,
    SinkOp,
    adopt_external,
    resume_orders,
    start_order_supervisor,
)
from phalanx.actors.saga import resume_sagas, start_saga, start_saga_supervisor
from phalanx.actors.venue import PaperVenue
from phalanx.errors import ConfigError, PhalanxError
from phalanx.protocols.exchange import Balance, FetchBalance
from phalanx.protocols.trading import (
    ApplyFill,
    GetRisk,
    OrderFill,
    RiskSnapshot,
    SetTradingState,
)
from phalanx.runtime import ActorSystem
from phalanx.runtime._config import NodeConfig, TradingConfig
from phalanx.storage import Ledger
from phalanx.storage._journal import SagaJournal
from phalanx.storage._orders import OrderStore
from phalanx.supervision import Retry

__all__ = ["TradingNode", "market_filters", "start_exchanges", "start_trading"]

ZERO = Decimal(0)
STRATEGY = "/strategy"
_OURS = ("reconcil", "initial")  # the reasons start_trading itself gives a halt


def start_exchanges(
    system: ActorSystem, config: NodeConfig, venue: PaperVenue | None
) -> dict[str, ConnectionState]:
    """Start ``/exchanges`` with one connection per configured exchange; their states.

    ``use_venue`` connections point at the embedded venue (URLs and keys).
    The states outlive restarts and carry the loaded markets (``state.markets``).
    """
    specs, states = [], {}
    for configured in config.exchanges:
        exchange, client = configured, {}
        if exchange.use_venue:
            if venue is None:
                raise ConfigError(f"exchanges.{exchange.name}.use_venue needs [venue] enabled")
            cc = venue.ccxt_config()
            exchange = exchange.model_copy(update={"urls": cc["urls"], "options": cc["options"]})
            client = {"apiKey": cc["apiKey"], "secret": cc["secret"]}
        states[exchange.name] = ConnectionState(exchange)
        specs.append(connection_spec(exchange, client_config=client, state=states[exchange.name]))
    if specs:
        system.supervise(
            "/exchanges", strategy="one_for_one", intensity=10, period=5, children=specs
        )
    return states


def market_filters(markets: Mapping[str, Any] | None) -> dict[str, dict[str, Decimal | None]]:
    """Per symbol ``{amount_step, price_step, min_notional, min_amount, max_amount}`` (ccxt)."""
    out: dict[str, dict[str, Decimal | None]] = {}
    for symbol, m in (markets or {}).items():
        precision = m.get("precision") or {}
        limits = m.get("limits") or {}

        def dec(value: Any) -> Decimal | None:
            return None if value is None else Decimal(str(value))

        out[symbol] = {
            "amount_step": dec(precision.get("amount")),
            "price_step": dec(precision.get("price")),
            "min_notional": dec((limits.get("cost") or {}).get("min")),
            "min_amount": dec((limits.get("amount") or {}).get("min")),
            "max_amount": dec((limits.get("amount") or {}).get("max")),
        }
    return out


@dataclass
class TradingNode:
    """The running trading core of one node: its parts, its counters, its summary."""

    system: ActorSystem
    config: TradingConfig
    exchange: str
    ledger: Ledger
    orders: OrderStore
    journal: SagaJournal
    filters: dict[str, dict[str, Decimal | None]]
    venue: PaperVenue | None = None
    reconciliation: ReconciliationResult | None = None
    strategy: StrategyState | None = None
    launched: list[str] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    # --- the fill sink and launching sagas ------------------------------------------

    def apply_fill(self, fill: OrderFill) -> None:
        """Position then ledger, both idempotent by trade id (reconciliation's sink)."""
        ensure_position(self.system, fill.symbol).ask(ApplyFill(fill=fill), timeout=10.0)
        self.ledger.post_fill(ledger_fill_from(fill))

    def fill_sink(self, fill: OrderFill) -> SinkOp:
        """The Order actors' sink: :meth:`apply_fill`, its ledger posting returned as an op.

        The Order actor commits the op in the txn that journals the fill sunk
        (one write per fill instead of two; posting and marker commit together).
        """
        ensure_position(self.system, fill.symbol).ask(ApplyFill(fill=fill), timeout=10.0)
        return self.ledger.post_fill_op(ledger_fill_from(fill))

    def saga_input(self, idea: TradeIdea) -> dict[str, Any]:
        """The journaled input of the saga that trades ``idea``."""
        make = buy_input if idea.side == "buy" else sell_input
        return make(
            idea.symbol, idea.amount, idea.price, exchange=self.exchange,
            fill_timeout_s=self.config.strategy.fill_timeout_s,
            filters=self.filters.get(idea.symbol),
        )  # fmt: skip

    def launch(self, saga_id: str, idea: TradeIdea) -> None:
        """Start the buy or sell saga for ``idea`` (a known id is not started twice)."""
        start_saga(self.system, BUY if idea.side == "buy" else SELL, saga_id, self.saga_input(idea))
        with self._lock:
            self.launched.append(saga_id)

    def in_flight(self) -> int:
        """Sagas of this node still running."""
        return self.journal.outcomes()["running"]

    # --- summary ------------------------------------------------------------------------

    def venue_totals(self) -> dict[str, Decimal] | None:
        """The venue's balances (free + locked): from the embedded engine, else asked of the
        connection; None if the venue cannot be reached."""
        if self.venue is not None:
            return {
                asset: Decimal(v["free"]) + Decimal(v["locked"])
                for asset, v in self.venue.engine.balances(
                    self.venue.ccxt_config()["apiKey"]
                ).items()
            }
        try:
            balance: Balance = self.system.ask(
                f"/exchanges/{self.exchange}", FetchBalance(), timeout=10.0
            )
        except (PhalanxError, ccxt.BaseError):
            return None
        return dict(balance.total)

    def duplicates(self) -> int:
        """Venue-accepted orders beyond the first per intent (embedded venue only).

        An intent is a client id without its generation (``px-<hash>-``); ids
        that phalanx did not mint are not intents and are not counted.
        """
        if self.venue is None:
            return 0
        seen: dict[str, int] = {}
        for accepted in list(self.venue.engine.accepted):
            cid = str(accepted["clientOrderId"])
            if cid.startswith("px-"):
                intent = cid.rsplit("-", 1)[0]
                seen[intent] = seen.get(intent, 0) + 1
        return sum(n - 1 for n in seen.values())

    def ledger_balanced(self) -> bool:
        """Trial balance zero AND holdings equal to the venue's (False if it cannot be asked)."""
        if self.ledger.trial_balance()["difference"] != 0:
            return False
        totals = self.venue_totals()
        return totals is not None and not self.ledger.verify(totals)

    def counts(self) -> dict[str, int]:
        """Order and saga counters from the idempotency store and the journal."""
        records = self.orders.list()
        outcomes = self.journal.outcomes()
        return {
            "orders_placed": sum(1 for r in records if r.exchange_order_id and not r.external),
            "orders_filled": sum(1 for r in records if r.filled > 0 and not r.external),
            "orders_canceled": sum(1 for r in records if r.status == "canceled"),
            "orders_rejected": sum(1 for r in records if r.status == "rejected"),
            "sagas_completed": outcomes["completed"],
            "sagas_compensated": outcomes["compensated"],
            "sagas_compensation_failed": outcomes["compensation_failed"],
            "sagas_running": outcomes["running"],
        }

    def summary(self) -> dict[str, Any]:
        """The trading fields of DESIGN section 10 (valid while storage is open)."""
        return {
            **self.counts(),
            "duplicates_detected": self.duplicates(),
            "ledger_balanced": self.ledger_balanced(),
            "reconciliation_ok": bool(self.reconciliation and self.reconciliation.ok),
        }

    def wait_idle(self, timeout: float) -> bool:
        """Wait (bounded) until no saga runs; True if idle. For an orderly stop."""
        deadline = time.monotonic() + timeout
        while self.in_flight():
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)  # sleep-ok: polling the journal at a bounded rate
        return True

    def stop_strategy(self) -> None:
        """Stop launching sagas (the running ones finish)."""
        if self.system.is_alive(STRATEGY):
            self.system.ask(STRATEGY, StrategyPause(), timeout=10.0)  # no tick left behind
            self.system.stop(STRATEGY)


def _records(node: TradingNode) -> list[Mapping[str, Any]]:
    return [r.to_wire() for r in node.orders.list()]


def start_trading(
    system: ActorSystem,
    config: NodeConfig,
    venue: PaperVenue | None = None,
    *,
    order_options: Mapping[str, Any] | None = None,
    risk_options: Mapping[str, Any] | None = None,
) -> TradingNode:
    """Build the trading tree on a started system; returns its :class:`TradingNode`.

    Reconciliation runs before sagas resume and before the strategy starts;
    if it fails, Risk is set ``halted`` and no strategy is started (the
    result names why, in ``node.reconciliation``). ``order_options`` are
    extra :class:`OrderServices` fields (poll rates; tests' crash switches),
    ``risk_options`` extra :class:`Risk` keyword arguments.
    """
    trading = config.trading or TradingConfig()
    if not config.exchanges:
        raise ConfigError("trading needs at least one [[exchanges]] entry")
    exchange = trading.exchange
    states = start_exchanges(system, config, venue)
    if exchange not in states:
        raise ConfigError(f"trading.exchange {exchange!r} is not configured")
    register_trade_sagas()
    node = TradingNode(
        system=system, config=trading, exchange=exchange, ledger=Ledger(system.storage),
        orders=OrderStore(system.storage), journal=SagaJournal(system.storage),
        filters=market_filters(states[exchange].markets), venue=venue,
    )  # fmt: skip
    symbols = list(trading.strategy.symbols)
    markets = states[exchange].markets or {}
    start_ledger(system, node.ledger)
    start_risk(
        system, RiskLimits(**trading.risk.model_dump()), exchange=exchange,
        markets=market_filters_from_ccxt(markets), initial_state="halted",
        **dict(risk_options or {}),
    )  # fmt: skip
    start_positions(system, symbols, exchange=exchange)
    options = {"poll_interval_s": trading.order_poll_s, **dict(order_options or {})}
    services = OrderServices(store=node.orders, fill_sink=node.fill_sink, **options)
    start_order_supervisor(system, services)
    # A halt or reduce set by an operator or a limit (persisted by Risk) outlives a
    # restart; only the halts this function set itself are lifted after reconciling.
    prior: RiskSnapshot = system.ask("/risk", GetRisk(), timeout=5.0)
    prior_reason = str(prior.usage.get("state_reason") or "")
    inherited = prior.trading_state != "active" and not prior_reason.startswith(_OURS)
    system.ask("/risk", SetTradingState(state="halted", reason="reconciling"), timeout=5.0)
    node.reconciliation = reconcile(
        system, exchange=exchange, ledger=node.ledger, symbols=symbols,
        records=lambda: _records(node), apply_fill=node.apply_fill,
        adopt=lambda order: adopt_external(system, order, exchange=exchange, store=node.orders),
        timeout=10.0,
    )  # fmt: skip
    if not node.reconciliation.ok:
        system.ask(
            "/risk",
            SetTradingState(state="halted", reason=f"reconciliation failed: "
                            f"{node.reconciliation.get('error')}"),
            timeout=5.0,
        )  # fmt: skip
        start_saga_supervisor(system)
        return node
    after = (
        SetTradingState(state=prior.trading_state, reason=prior_reason)
        if inherited
        else SetTradingState(state="active", reason="reconciled")
    )
    system.ask("/risk", after, timeout=5.0)
    node.reconciliation["trading_state"] = after.state
    start_saga_supervisor(system)
    resume_sagas(system)
    resume_orders(system, store=node.orders)  # orders whose saga ended (external ones)
    if trading.strategy.enabled and symbols:
        _start_strategy(node, symbols)
    return node


def _start_strategy(node: TradingNode, symbols: list[str]) -> None:
    cfg = node.config.strategy
    tick = {s: node.filters.get(s, {}).get("price_step") or Decimal("0.01") for s in symbols}
    step = {s: node.filters.get(s, {}).get("amount_step") or Decimal("0.0001") for s in symbols}
    prefix = f"s{cfg.seed}-"
    already = sum(1 for snap in node.journal.snapshots() if str(snap["saga_id"]).startswith(prefix))
    node.strategy = StrategyState(MeanReversion(cfg, tick, step), prefix, seq=already)
    node.system.spawn(
        Strategy, STRATEGY, cfg, node.exchange, node.strategy, node.launch, node.in_flight,
        retry=Retry(max_attempts=3, backoff="exponential", base=0.05, max=1.0),
    )  # fmt: skip
