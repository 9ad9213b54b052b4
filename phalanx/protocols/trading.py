"""Typed messages between the trading actors: Order, Position, Risk and Saga.

This module is the contract between those actors (see ``docs/trading-core.md``).
Every class has an explicit ``type_name`` because these messages are stored
(durable mailboxes, dead letters, journals): a rename must not orphan records.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Literal

from phalanx.protocols._message import Message

__all__ = [
    "ApplyFill",
    "CancelIntent",
    "FundsAtVenue",
    "GetOrder",
    "GetPosition",
    "GetRisk",
    "GetSaga",
    "OrderFill",
    "OrderIntent",
    "OrderSnapshot",
    "OrderStatus",
    "OrderUpdate",
    "PnlUpdate",
    "PositionSnapshot",
    "ReleaseFunds",
    "Reservation",
    "ReserveFunds",
    "RiskCheck",
    "RiskDecision",
    "RiskSnapshot",
    "SagaSnapshot",
    "SellTrigger",
    "SetTradingState",
    "TradingState",
    "symbol_segment",
]

Side = Literal["buy", "sell"]
OrderStatus = Literal[
    "new",
    "submitting",
    "unknown",
    "open",
    "partially_filled",
    "filled",
    "canceling",
    "canceled",
    "rejected",
    "expired",
]
"""The Order actor's states (DESIGN section 6)."""

TradingState = Literal["active", "reducing", "halted"]
"""Risk's trading state: ``reducing`` only lets through orders that shrink a position."""


def symbol_segment(symbol: str) -> str:
    """The path segment of a unified symbol: ``BTC/USDT`` -> ``BTC-USDT``."""
    return symbol.replace("/", "-")


# --- orders -----------------------------------------------------------------


class OrderIntent(Message):
    """What to place, once. ``order_req_id`` is the idempotency key of the whole order.

    The Order actor derives a deterministic ``client_order_id`` from it, so a
    restart, a redelivery or a second actor for the same intent can never
    place a second order (DESIGN section 6, exactly-once placement).
    """

    type_name = "trading.order_intent"
    order_req_id: str
    symbol: str
    side: Side
    type: Literal["limit", "market"]
    amount: Decimal
    price: Decimal | None = None
    exchange: str = "paper"  # the connection at /exchanges/<exchange>
    saga_id: str | None = None
    notify: str | None = None  # a path told every OrderUpdate (usually the saga)


class OrderFill(Message):
    """One venue trade of one order; ``trade_id`` is unique per venue trade."""

    type_name = "trading.order_fill"
    trade_id: str
    order_req_id: str
    exchange_order_id: str | None
    symbol: str
    side: Side
    price: Decimal
    amount: Decimal
    fee: Decimal  # in fee_currency
    fee_currency: str | None
    timestamp: int | None = None


class OrderSnapshot(Message):
    """The Order actor's view of one order (its reply to :class:`GetOrder`)."""

    type_name = "trading.order_snapshot"
    order_req_id: str
    client_order_id: str
    exchange_order_id: str | None
    status: OrderStatus
    symbol: str
    side: Side
    amount: Decimal
    filled: Decimal
    average: Decimal | None
    # The fills' fees added up as numbers, each in its own fee_currency: a buy
    # paying in the base and a sell in the quote differ, and an order whose
    # fills paid in two currencies (BNB ran out) mixes them. ``fees`` is exact.
    fee: Decimal
    fills: list[OrderFill] = []
    external: bool = False  # adopted by reconciliation: the node did not place it
    terminal: bool = False  # filled, canceled, rejected or expired
    fees: dict[str, Decimal] = {}  # fee per currency ("" when the venue named none)


class OrderUpdate(Message):
    """Told to ``OrderIntent.notify`` on every state change or new fill."""

    type_name = "trading.order_update"
    snapshot: OrderSnapshot


class GetOrder(Message):
    """Ask an Order actor for its :class:`OrderSnapshot`."""

    type_name = "trading.get_order"


class CancelIntent(Message):
    """Ask an Order actor to cancel; replies the :class:`OrderSnapshot` after the attempt.

    Idempotent: canceling a terminal order replies its snapshot unchanged.
    """

    type_name = "trading.cancel_intent"
    reason: str = "requested"


# --- positions ----------------------------------------------------------------


class ApplyFill(Message):
    """Apply one fill to the symbol's position. Idempotent by ``fill.trade_id``."""

    type_name = "trading.apply_fill"
    fill: OrderFill


class GetPosition(Message):
    """Ask a Position actor for its :class:`PositionSnapshot`."""

    type_name = "trading.get_position"


class PositionSnapshot(Message):
    """One symbol's position (signed quantity: long > 0)."""

    type_name = "trading.position_snapshot"
    symbol: str
    quantity: Decimal
    average_entry: Decimal
    realized_pnl: Decimal  # fees included
    unrealized_pnl: Decimal
    fees: Decimal
    last_price: Decimal | None
    fills_applied: int


class PnlUpdate(Message):
    """Position -> Risk after every change: the inputs of the drawdown and exposure limits."""

    type_name = "trading.pnl_update"
    symbol: str
    quantity: Decimal
    notional: Decimal  # |quantity| * last (or entry) price, in the quote asset
    realized_pnl: Decimal
    unrealized_pnl: Decimal


class SellTrigger(Message):
    """Position -> its ``notify`` path: a take-profit or stop-loss level was crossed."""

    type_name = "trading.sell_trigger"
    symbol: str
    reason: Literal["take_profit", "stop_loss"]
    price: Decimal
    quantity: Decimal


# --- risk -----------------------------------------------------------------------


class RiskCheck(Message):
    """Ask Risk whether an order may be placed; replies :class:`RiskDecision`."""

    type_name = "trading.risk_check"
    order_req_id: str
    symbol: str
    side: Side
    amount: Decimal
    price: Decimal  # the limit price, or the current price estimate for a market order
    reduce_only: bool = False
    is_cancel: bool = False  # cancels always pass, whatever the trading state


class RiskDecision(Message):
    """Every check with its value and limit; ``blocking_limit`` names the first that failed."""

    type_name = "trading.risk_decision"
    allowed: bool
    blocking_limit: str | None
    checks: dict[str, dict[str, Any]]
    trading_state: TradingState


class ReserveFunds(Message):
    """Hold ``amount`` of ``asset`` for one order. Idempotent by ``reservation_id``.

    Replies :class:`Reservation`; raises ``InsufficientFunds`` (permanent) when
    free balance minus existing reservations is short.
    """

    type_name = "trading.reserve_funds"
    reservation_id: str
    asset: str
    amount: Decimal


class Reservation(Message):
    """A held amount (the reply to :class:`ReserveFunds`)."""

    type_name = "trading.reservation"
    reservation_id: str
    asset: str
    amount: Decimal


class ReleaseFunds(Message):
    """Release a reservation. Idempotent: releasing an unknown or released id is a no-op."""

    type_name = "trading.release_funds"
    reservation_id: str


class FundsAtVenue(Message):
    """The order holding ``reservation_id`` is acknowledged: the venue locks ``locked``.

    From then on the venue's free balance excludes those funds itself, so Risk
    stops counting them a second time against balances read after this
    arrived (a balance read before it still counts the reservation). A tell;
    idempotent; ignored for an id not held.
    """

    type_name = "trading.funds_at_venue"
    reservation_id: str
    locked: Decimal


class SetTradingState(Message):
    """Operator or alert: switch Risk to ``active``, ``reducing`` or ``halted``."""

    type_name = "trading.set_trading_state"
    state: TradingState
    reason: str = ""


class GetRisk(Message):
    """Ask Risk for its :class:`RiskSnapshot`."""

    type_name = "trading.get_risk"


class RiskSnapshot(Message):
    """Risk's state: limits, usage, reservations and the trading state."""

    type_name = "trading.risk_snapshot"
    trading_state: TradingState
    limits: dict[str, Any]
    usage: dict[str, Any]
    reservations: dict[str, str]  # reservation_id -> "ASSET amount"


# --- sagas -------------------------------------------------------------------


class GetSaga(Message):
    """Ask a Saga actor for its :class:`SagaSnapshot`."""

    type_name = "trading.get_saga"


class SagaSnapshot(Message):
    """A saga's status and each step's status."""

    type_name = "trading.saga_snapshot"
    saga_id: str
    kind: str
    status: Literal["running", "compensating", "completed", "compensated", "compensation_failed"]
    steps: dict[str, str]  # step name -> pending|running|done|failed|compensating|compensated
    error: str | None = None
    results: dict[str, Any] = {}
