"""The pure position model behind the Position actor (issue 5): no I/O, no threads.

A position is derived from fills only. Average-cost accounting:
- a fill that adds to the position (same direction) moves the average entry;
- a fill that reduces it realizes ``(exit - entry) * qty`` (sign by direction);
- every fee is realized at once as a cost (fees are in the quote asset);
- a fill that crosses zero closes the old side and opens the new one at the
  fill price.
Invariant: ``realized_pnl`` is the sum of closed gains minus every fee, and
``quantity`` is the signed sum of fill quantities.

The arithmetic runs in :data:`POSITION_CONTEXT`, never the calling thread's
context: decimal contexts are per thread and libraries change them (ccxt's
``decimal_to_precision`` sets ROUND_HALF_UP on the thread that calls it), and
an average entry is usually inexact, so the live Position actor and replay
must round it the same way. Measured before this: replay reported a
mismatch in the 28th digit of ``average_entry`` after a chaos run.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from decimal import (
    ROUND_HALF_EVEN,
    Context,
    Decimal,
    DivisionByZero,
    InvalidOperation,
    Overflow,
    localcontext,
)
from typing import Literal

__all__ = [
    "POSITION_CONTEXT",
    "PositionState",
    "TriggerDecision",
    "apply_fill",
    "evaluate_triggers",
    "unrealized_pnl",
]

ZERO = Decimal(0)
#: Python's default context, pinned: what every stored position was computed with.
POSITION_CONTEXT = Context(
    prec=28, rounding=ROUND_HALF_EVEN, traps=[InvalidOperation, DivisionByZero, Overflow]
)


@dataclass(frozen=True)
class PositionState:
    """One symbol's position: signed quantity (long > 0), average entry, realized PnL."""

    symbol: str
    quantity: Decimal = ZERO
    average_entry: Decimal = ZERO
    realized_pnl: Decimal = ZERO
    fees: Decimal = ZERO
    fills: int = 0

    @property
    def is_flat(self) -> bool:
        return self.quantity == 0


def apply_fill(
    state: PositionState,
    side: Literal["buy", "sell"],
    quantity: Decimal,
    price: Decimal,
    fee: Decimal,
) -> PositionState:
    """The position after one fill (pure; computed in :data:`POSITION_CONTEXT`)."""
    if quantity <= 0 or price <= 0 or fee < 0:
        raise ValueError("a fill needs quantity > 0, price > 0 and fee >= 0")
    with localcontext(POSITION_CONTEXT):
        return _apply_fill(state, side, quantity, price, fee)


def _apply_fill(
    state: PositionState, side: str, quantity: Decimal, price: Decimal, fee: Decimal
) -> PositionState:
    signed = quantity if side == "buy" else -quantity
    q, avg, realized = state.quantity, state.average_entry, state.realized_pnl - fee
    if q == 0 or (q > 0) == (signed > 0):
        new_q = q + signed
        avg = (abs(q) * avg + quantity * price) / abs(new_q)
        return replace(state, quantity=new_q, average_entry=avg, realized_pnl=realized,
                       fees=state.fees + fee, fills=state.fills + 1)  # fmt: skip
    closing = min(abs(q), quantity)
    direction = 1 if q > 0 else -1
    realized += (price - avg) * closing * direction
    new_q = q + signed
    if new_q == 0:
        avg = ZERO
    elif (new_q > 0) != (q > 0):
        avg = price  # crossed zero: the remainder opens at this fill's price
    return replace(state, quantity=new_q, average_entry=avg, realized_pnl=realized,
                   fees=state.fees + fee, fills=state.fills + 1)  # fmt: skip


def unrealized_pnl(state: PositionState, mark: Decimal) -> Decimal:
    """Open gain or loss at ``mark`` (before exit fees)."""
    with localcontext(POSITION_CONTEXT):
        return (mark - state.average_entry) * state.quantity


@dataclass(frozen=True)
class TriggerDecision:
    """What ``evaluate_triggers`` found: the trigger that fired (if any) and why."""

    fired: Literal["take_profit", "stop_loss"] | None
    mark: Decimal
    pnl_pct: Decimal | None


def evaluate_triggers(
    state: PositionState,
    mark: Decimal,
    take_profit_pct: Decimal | None,
    stop_loss_pct: Decimal | None,
) -> TriggerDecision:
    """Take-profit / stop-loss on the move from average entry, in the position's favour."""
    if state.is_flat or state.average_entry == 0:
        return TriggerDecision(None, mark, None)
    with localcontext(POSITION_CONTEXT):
        move = (mark - state.average_entry) / state.average_entry * 100
    pnl_pct = move if state.quantity > 0 else -move
    if take_profit_pct is not None and pnl_pct >= take_profit_pct:
        return TriggerDecision("take_profit", mark, pnl_pct)
    if stop_loss_pct is not None and pnl_pct <= -stop_loss_pct:
        return TriggerDecision("stop_loss", mark, pnl_pct)
    return TriggerDecision(None, mark, pnl_pct)
