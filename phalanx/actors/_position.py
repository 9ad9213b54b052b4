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
Fees in any asset (:func:`position_terms`): ``quantity`` is the net quantity
held, what the venue holds (a buy paying ``f`` of the base in fees adds
``amount - f``); the entry price of that quantity is the fill price and the
fee, valued at the fill price in the quote (``f * price``), is realized at
once, as a quote fee is. So a round trip's realized PnL is exactly what the
quote balance gained: buy ``q`` at ``p`` with base fee ``f``, sell ``q - f``
at ``p'`` with quote fee ``g``: ``(p' - p) * (q - f) - f * p - g``. A fee in
a third asset (BNB) changes neither quantity nor quote PnL (no price for it
in the fill; the Ledger books it in that asset). ``fees`` sums the fees in
the quote. A negative fee, or a base fee a buy cannot pay, is refused with
:class:`InvalidFill` (permanent).

Usage::

    start_positions(system, ["BTC/USDT"], notify="/strategy", risk_path="/risk",
                    take_profit_pct=Decimal(2), stop_loss_pct=Decimal(1),
                    exchange="paper")           # subscribes to the connection's tickers
    ref = ensure_position(system, "ETH/USDT")   # added at runtime, same defaults
    snap = ref.ask(ApplyFill(fill=order_fill))  # idempotent by order_fill.trade_id
"""

from __future__ import annotations

import time
import weakref
from decimal import Decimal, localcontext
from typing import Any

from phalanx.actors._position_model import (
    POSITION_CONTEXT,
    PositionState,
    evaluate_triggers,
    unrealized_pnl,
)
from phalanx.actors._risk_model import split_symbol
from phalanx.errors import AlreadyPresent, AlreadyStarted, PhalanxError
from phalanx.protocols.exchange import SubscribeTicker, Ticker
from phalanx.protocols.trading import (
    ApplyFill,
    GetPosition,
    OrderFill,
    PnlUpdate,
    PositionSnapshot,
    SellTrigger,
    symbol_segment,
)
from phalanx.runtime import Actor, ActorSystem, Ref
from phalanx.storage._positions import PositionStore
from phalanx.supervision import ChildSpec, Retry
from phalanx.supervision._supervisor import SupervisorRef

__all__ = [
    "POSITIONS",
    "InvalidFill",
    "Position",
    "check_fee",
    "ensure_position",
    "fee_in_quote",
    "position_path",
    "position_spec",
    "position_terms",
    "start_positions",
]

POSITIONS = "/positions"
ZERO = Decimal(0)


class InvalidFill(PhalanxError, ValueError):
    """A fill the position or ledger cannot apply (wrong symbol, bad numbers, unpayable fee).

    Permanent: the asker gets it, a told fill is dead-lettered; never retried.
    """

    phalanx_error_class = "permanent"


def position_path(symbol: str) -> str:
    """``BTC/USDT`` -> ``/positions/BTC-USDT``."""
    return f"{POSITIONS}/{symbol_segment(symbol)}"


def position_terms(fill: OrderFill) -> tuple[Decimal, Decimal]:
    """``(quantity, fee in the quote)`` that ``fill`` applies to its position.

    The position holds what the venue holds: a fee ``f`` paid in the base
    asset leaves ``amount - f`` of a buy (and takes ``amount + f`` for a
    sell), that quantity trades at the fill price, and the fee costs
    ``f * price`` in the quote, realized at once like a quote fee. A fee in
    a third asset (BNB) moves neither: the fill has no price for it in the
    quote (the Ledger books it in that asset). :class:`InvalidFill` for a
    negative fee or a base fee a buy cannot pay.
    """
    base, quote = split_symbol(fill.symbol)
    check_fee(fill, base)
    fee, currency = fill.fee, fill.fee_currency
    if not fee or currency is None or currency == quote:
        return fill.amount, fee
    if currency != base:
        return fill.amount, ZERO
    with localcontext(POSITION_CONTEXT):
        net = fill.amount - fee if fill.side == "buy" else fill.amount + fee
        return net, fee * fill.price


def check_fee(fill: OrderFill, base: str) -> None:
    """:class:`InvalidFill` for a negative fee, or a fee in ``base`` a buy cannot pay."""
    fee = fill.fee
    if fee < 0:
        raise InvalidFill(f"fill {fill.trade_id}: negative fee {fee}")
    if fee and fill.fee_currency == base and fill.side == "buy" and fee >= fill.amount:
        raise InvalidFill(
            f"fill {fill.trade_id}: a fee of {fee} {base} leaves nothing of the "
            f"{fill.amount} {base} bought"
        )


def fee_in_quote(fill: OrderFill) -> Decimal:
    """The fill's fee valued in the quote asset (:func:`position_terms`)."""
    return position_terms(fill)[1]


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


# --- tree ----------------------------------------------------------------------

# Per-system defaults given to start_positions, reused by ensure_position.
_defaults: weakref.WeakKeyDictionary[ActorSystem, dict[str, Any]] = weakref.WeakKeyDictionary()


def position_spec(
    symbol: str,
    *,
    notify: str | None = None,
    risk_path: str | None = "/risk",
    take_profit_pct: Decimal | None = None,
    stop_loss_pct: Decimal | None = None,
    exchange: str | None = None,
    retry: Retry | None = None,
) -> ChildSpec:
    """The child spec of one Position (child id ``BTC-USDT``)."""
    return ChildSpec(
        symbol_segment(symbol),
        Position,
        args=(symbol,),
        kwargs={
            "notify": notify,
            "risk_path": risk_path,
            "take_profit_pct": take_profit_pct,
            "stop_loss_pct": stop_loss_pct,
            "exchange": exchange,
        },
        retry=retry or Retry(max_attempts=5, backoff="exponential", base=0.05, max=1.0),
    )


def start_positions(
    system: ActorSystem,
    symbols: list[str] | tuple[str, ...] = (),
    notify: str | None = None,
    risk_path: str | None = "/risk",
    *,
    take_profit_pct: Decimal | None = None,
    stop_loss_pct: Decimal | None = None,
    exchange: str | None = None,
    intensity: int = 10,
    period: float = 5.0,
) -> SupervisorRef:
    """Start the one_for_one ``/positions`` supervisor with one Position per symbol."""
    defaults: dict[str, Any] = {
        "notify": notify,
        "risk_path": risk_path,
        "take_profit_pct": take_profit_pct,
        "stop_loss_pct": stop_loss_pct,
        "exchange": exchange,
    }
    _defaults[system] = defaults
    return system.supervise(
        POSITIONS,
        "one_for_one",
        intensity=intensity,
        period=period,
        children=[position_spec(s, **defaults) for s in dict.fromkeys(symbols)],
    )


def ensure_position(system: ActorSystem, symbol: str, **overrides: Any) -> Ref:
    """The Position of ``symbol``, started under ``/positions`` if it is not there yet.

    Uses the defaults given to :func:`start_positions` (``overrides`` win).
    Safe to call concurrently: a lost race returns the winner's ref.
    """
    path = position_path(symbol)
    if system.is_alive(path):
        return system.ref(path)
    sup = SupervisorRef(system, POSITIONS)
    spec = position_spec(symbol, **{**_defaults.get(system, {}), **overrides})
    try:
        return sup.start_child(spec)
    except AlreadyStarted:
        return system.ref(path)
    except AlreadyPresent:
        return sup.restart_child(spec.id)
