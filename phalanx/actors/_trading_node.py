"""TradingNode: the running trading core of one node, its fill sink and its run summary.

``start_trading`` (:mod:`phalanx.actors._trading`) builds it and wires it in.
The fill sink handed to every Order actor applies each fill to its Position
(``ApplyFill``) and posts it to the Ledger; both are idempotent by trade id.
The run summary (DESIGN section 10) is computed from the stores (the
idempotency store, the saga journal, the ledger) and the venue, never from
guesses; it is valid while storage is open.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import ccxt

from phalanx.actors._ledger_actor import ledger_fill_from
from phalanx.actors._position_tree import ensure_position
from phalanx.actors._reconcile import ReconciliationResult
from phalanx.actors._strategy import StrategyPause, StrategyState, TradeIdea
from phalanx.actors._trade_input import buy_input, sell_input
from phalanx.actors._trade_sagas import BUY, SELL
from phalanx.actors.order import SinkOp
from phalanx.actors.saga import start_saga
from phalanx.actors.venue import PaperVenue
from phalanx.errors import PhalanxError
from phalanx.protocols.exchange import Balance, FetchBalance
from phalanx.protocols.trading import ApplyFill, OrderFill
from phalanx.runtime import ActorSystem
from phalanx.runtime._config import TradingConfig
from phalanx.storage import Ledger
from phalanx.storage._journal import SagaJournal
from phalanx.storage._orders import OrderStore

__all__ = ["STRATEGY", "TradingNode"]

STRATEGY = "/strategy"


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
