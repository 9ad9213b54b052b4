"""Wiring the trading core: ``start_trading`` builds the tree in the documented order.

Order (docs/trading-core.md): ``/exchanges``, ``/ledger``, ``/risk``,
``/positions``, ``/orders``, then reconciliation (trading stays ``halted`` if
it fails), then ``/sagas`` (and every journaled saga resumes), then the
strategy. The :class:`~phalanx.actors._trading_node.TradingNode` it returns
holds the pieces and computes the run summary (DESIGN section 10) from the
stores, never from guesses; its fill sink is every Order actor's.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from phalanx.actors._ledger_actor import start_ledger
from phalanx.actors._position_tree import start_positions
from phalanx.actors._reconcile import reconcile
from phalanx.actors._risk import start_risk
from phalanx.actors._risk_model import RiskLimits, market_filters_from_ccxt
from phalanx.actors._strategy import MeanReversion, Strategy, StrategyState
from phalanx.actors._trade_sagas import register_trade_sagas
from phalanx.actors._trading_exchanges import market_filters, start_exchanges
from phalanx.actors._trading_node import STRATEGY, TradingNode
from phalanx.actors.order import (
    OrderServices,
    adopt_external,
    resume_orders,
    start_order_supervisor,
)
from phalanx.actors.saga import resume_sagas, start_saga_supervisor
from phalanx.actors.venue import PaperVenue
from phalanx.errors import ConfigError
from phalanx.protocols.trading import GetRisk, RiskSnapshot, SetTradingState
from phalanx.runtime import ActorSystem
from phalanx.runtime._config import NodeConfig, TradingConfig
from phalanx.storage import Ledger
from phalanx.storage._journal import SagaJournal
from phalanx.storage._orders import OrderStore
from phalanx.supervision import Retry

__all__ = ["start_trading"]

_OURS = ("reconcil", "initial")  # the reasons start_trading itself gives a halt


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
