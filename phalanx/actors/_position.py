"""The Position actor: one per symbol at ``/positions/<BTC-USDT>`` (issue 5, DESIGN 6).

It derives quantity, average entry and realized PnL (fees included) from
fills, through the pure :mod:`phalanx.actors._position_model`. Each
``ApplyFill`` commits the fill's trade id and the new model state in ONE LMDB
transaction (:class:`~phalanx.storage._positions.PositionStore`), so a
replayed fill, a kill or a node restart never counts a fill twice.
``Ticker`` messages move the mark: unrealized PnL, then the take-profit /
stop-loss evaluation (``sell_trigger_eval``), which tells :class:`SellTrigger`
to ``notify`` once per crossing (re-armed by the next fill or when the mark
comes back inside both levels; the latch is in memory, so after a restart a
level still crossed is told again: the receiver must treat SellTrigger as
at-least-once). Every change tells :class:`PnlUpdate` to Risk, and a
restarted Position tells its state again (a crash between commit and tell
must not leave Risk stale).

Messages: ``ApplyFill`` -> :class:`PositionSnapshot` (also for a replay),
``Ticker`` -> None, ``GetPosition`` -> :class:`PositionSnapshot`.
A fill applies the net quantity and quote-valued fee of
:func:`~phalanx.actors._position_terms.position_terms` (fees in any asset);
``fees`` sums the fees in the quote. A fill for another symbol, with a
non-positive amount or price, a negative fee or a base fee a buy cannot pay
is refused with :class:`~phalanx.actors._position_terms.InvalidFill`
(permanent). The ``/positions`` tree that starts these actors is in
:mod:`phalanx.actors._position_tree`.
"""

from __future__ import annotations

import time
from decimal import Decimal
from typing import Any

from phalanx.actors._position_model import PositionState, evaluate_triggers, unrealized_pnl
from phalanx.actors._position_terms import InvalidFill, position_terms
from phalanx.actors._risk_model import split_symbol
from phalanx.protocols.exchange import SubscribeTicker, Ticker
from phalanx.protocols.trading import (
    ApplyFill,
    GetPosition,
    OrderFill,
    PnlUpdate,
    PositionSnapshot,
    SellTrigger,
)
from phalanx.runtime import Actor
from phalanx.storage._positions import PositionStore

__all__ = ["Position"]

ZERO = Decimal(0)


class Position(Actor):
    """One symbol's position; state in LMDB, mark in memory (from tickers)."""

    def __init__(
        self,
        symbol: str,
        *,
        notify: str | None = None,
        risk_path: str | None = "/risk",
        take_profit_pct: Decimal | None = None,
        stop_loss_pct: Decimal | None = None,
        exchange: str | None = None,
    ) -> None:
        super().__init__()
        split_symbol(symbol)  # a bad symbol fails the start, loudly
        self.symbol = symbol
        self.notify = notify
        self.risk_path = risk_path
        self.take_profit_pct = None if take_profit_pct is None else Decimal(take_profit_pct)
        self.stop_loss_pct = None if stop_loss_pct is None else Decimal(stop_loss_pct)
        self.exchange = exchange
        self.last: Decimal | None = None
        self._fired: str | None = None  # the trigger told since the last re-arm

    def on_start(self) -> None:
        self.store = PositionStore(self.system.storage)
        self.state: PositionState = self.store.load(self.symbol)
        self.log = self.system.logs.logger("decision")
        if self.state.fills:
            # A crash between the commit and the tell must not leave Risk stale.
            self._tell_risk()
        if self.exchange is not None:
            self.system.tell(
                f"/exchanges/{self.exchange}",
                SubscribeTicker(symbol=self.symbol, subscriber=self.path),
            )

    def introspect(self) -> dict[str, Any]:
        return {"class": "Position", **self.snapshot().model_dump(mode="json")}

    def snapshot(self) -> PositionSnapshot:
        """The current :class:`PositionSnapshot`."""
        s = self.state
        return PositionSnapshot(
            symbol=self.symbol, quantity=s.quantity, average_entry=s.average_entry,
            realized_pnl=s.realized_pnl, unrealized_pnl=self._unrealized(), fees=s.fees,
            last_price=self.last, fills_applied=s.fills,
        )  # fmt: skip

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, ApplyFill):
            return self._apply(message.fill)
        if isinstance(message, Ticker):
            if message.symbol == self.symbol and message.last is not None:
                self._mark(message.last)
            return None
        if isinstance(message, GetPosition):
            return self.snapshot()
        return super().on_receive(message)

    # --- fills -------------------------------------------------------------

    def _apply(self, fill: OrderFill) -> PositionSnapshot:
        if fill.symbol != self.symbol:
            raise InvalidFill(f"fill {fill.trade_id} is for {fill.symbol}, not {self.symbol}")
        if fill.amount <= 0 or fill.price <= 0:
            raise InvalidFill(f"fill {fill.trade_id}: amount and price must be > 0")
        quantity, fee = position_terms(fill)
        before = self.state
        applied, self.state = self.store.apply_fill(
            self.symbol, fill.trade_id, fill.side, quantity, fill.price, fee, time.time()
        )
        if not applied:
            return self.snapshot()  # a replay: counted once already
        self._fired = None  # a new fill re-arms the triggers
        after = self.state
        common = {
            "symbol": self.symbol, "trade_id": fill.trade_id, "side": fill.side,
            "amount": fill.amount, "price": fill.price, "fee": fee,
            "fee_paid": fill.fee, "fee_currency": fill.fee_currency, "applied_amount": quantity,
            "order_req_id": fill.order_req_id, "quantity": after.quantity,
            "average_entry": after.average_entry, "realized_pnl": after.realized_pnl,
        }  # fmt: skip
        if before.quantity != 0 and (
            after.quantity == 0 or (before.quantity > 0) != (after.quantity > 0)
        ):
            self.log.info("position_closed", **common, closed_quantity=before.quantity)
        if after.quantity != 0 and (
            before.quantity == 0 or (before.quantity > 0) != (after.quantity > 0)
        ):
            self.log.info("position_opened", **common)
        elif after.quantity != 0:
            self.log.info("position_updated", **common, previous_quantity=before.quantity)
        self._tell_risk()
        if self.last is not None:
            self._evaluate(self.last)
        return self.snapshot()

    # --- mark and triggers -------------------------------------------------------

    def _unrealized(self) -> Decimal:
        return ZERO if self.last is None else unrealized_pnl(self.state, self.last)

    def _mark(self, last: Decimal) -> None:
        changed = last != self.last
        self.last = last
        if self.state.is_flat:
            return
        self._evaluate(last)
        if changed:
            self._tell_risk()

    def _evaluate(self, mark: Decimal) -> None:
        if self.state.is_flat or (self.take_profit_pct is None and self.stop_loss_pct is None):
            return
        d = evaluate_triggers(self.state, mark, self.take_profit_pct, self.stop_loss_pct)
        tell = d.fired is not None and d.fired != self._fired
        self.log.info(
            "sell_trigger_eval", symbol=self.symbol, mark=mark, pnl_pct=d.pnl_pct,
            take_profit_pct=self.take_profit_pct, stop_loss_pct=self.stop_loss_pct,
            fired=d.fired, told=tell and self.notify is not None, notify=self.notify,
            quantity=self.state.quantity, average_entry=self.state.average_entry,
        )  # fmt: skip
        self._fired = d.fired if d.fired is not None else None
        if tell and d.fired is not None and self.notify is not None:
            self.system.tell(
                self.notify,
                SellTrigger(
                    symbol=self.symbol, reason=d.fired, price=mark, quantity=self.state.quantity
                ),
            )

    def _tell_risk(self) -> None:
        if self.risk_path is None:
            return
        s = self.state
        mark = self.last if self.last is not None else s.average_entry
        self.system.tell(
            self.risk_path,
            PnlUpdate(
                symbol=self.symbol, quantity=s.quantity, notional=abs(s.quantity) * mark,
                realized_pnl=s.realized_pnl, unrealized_pnl=self._unrealized(),
            ),
        )  # fmt: skip
