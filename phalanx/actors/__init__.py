"""Actors: the trading core (exchange, orders, positions, risk, ledger, sagas) and the demos.

``start_trading(system, config, venue)`` builds the trading tree in the
documented order (docs/trading-core.md) and returns a :class:`TradingNode`.
"""

from phalanx.actors._demo import DemoJob, DemoTick, Ticker, TickerPrinter, Worker, spawn_demo
from phalanx.actors._reconcile import ReconciliationResult, reconcile
from phalanx.actors._reconcile_plan import plan_reconciliation
from phalanx.actors._strategy import (
    MeanReversion,
    Strategy,
    StrategyPause,
    StrategyState,
    StrategyTick,
    TradeIdea,
)
from phalanx.actors._trade_admission import RiskBlocked, TradeInvalid
from phalanx.actors._trade_input import buy_input, sell_input
from phalanx.actors._trade_orders import NothingFilled, OrderRejected
from phalanx.actors._trade_sagas import BUY, SELL, register_trade_sagas, trade_saga
from phalanx.actors._trading import start_trading
from phalanx.actors._trading_exchanges import market_filters, start_exchanges
from phalanx.actors._trading_node import TradingNode

__all__ = [
    "BUY",
    "SELL",
    "DemoJob",
    "DemoTick",
    "MeanReversion",
    "NothingFilled",
    "OrderRejected",
    "ReconciliationResult",
    "RiskBlocked",
    "Strategy",
    "StrategyPause",
    "StrategyState",
    "StrategyTick",
    "Ticker",
    "TickerPrinter",
    "TradeIdea",
    "TradeInvalid",
    "TradingNode",
    "Worker",
    "buy_input",
    "market_filters",
    "plan_reconciliation",
    "reconcile",
    "register_trade_sagas",
    "sell_input",
    "spawn_demo",
    "start_exchanges",
    "start_trading",
    "trade_saga",
]
