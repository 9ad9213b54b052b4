"""The Order state machine: an explicit transition table, nothing else (DESIGN 6).

States are :data:`phalanx.protocols.trading.OrderStatus`. Events name what
the actor learned or decided:

- ``submit``: the idempotency record is written, ``submitting`` (before a send);
- ``ambiguous``: a send or an earlier incarnation's send has no known outcome;
- ``regenerate``: repeated misses plus the open-orders/trades check: a new
  client id is journaled and will be sent;
- ``venue_open`` / ``venue_partial`` / ``venue_filled`` / ``venue_canceled`` /
  ``venue_expired`` / ``venue_rejected``: the venue reported that status
  (``venue_partial`` is "open with a fill");
- ``rejected``: the venue refused the create (permanent error);
- ``cancel``: a cancel was requested on a live order;
- ``abandon``: a cancel was requested before the order was ever placed and
  the lookup proved it absent;
- ``fill``: a new trade was journaled.

Invariants (checked by hypothesis in ``tests/trading/test_order_machine.py``):
a terminal state only ever goes to itself; a ``fill`` never changes a state
that is ``canceling``, ``canceled``, ``expired`` or ``filled`` (a late fill
still counts, the status stays); every pair not in the table raises
:class:`~phalanx.errors.InvalidTransition`.
"""

from __future__ import annotations

from typing import Literal, get_args

from phalanx.errors import InvalidTransition
from phalanx.protocols.exchange import OrderReply
from phalanx.protocols.trading import OrderStatus

__all__ = [
    "EVENTS",
    "STATES",
    "TERMINAL",
    "TRANSITIONS",
    "OrderEvent",
    "is_terminal",
    "reply_event",
    "transition",
]

OrderEvent = Literal[
    "submit",
    "ambiguous",
    "regenerate",
    "venue_open",
    "venue_partial",
    "venue_filled",
    "venue_canceled",
    "venue_expired",
    "venue_rejected",
    "rejected",
    "cancel",
    "abandon",
    "fill",
]
STATES: tuple[OrderStatus, ...] = get_args(OrderStatus)
EVENTS: tuple[OrderEvent, ...] = get_args(OrderEvent)
TERMINAL: frozenset[OrderStatus] = frozenset({"filled", "canceled", "rejected", "expired"})

_UNPLACED: tuple[OrderStatus, ...] = ("submitting", "unknown")
_LIVE: tuple[OrderStatus, ...] = ("open", "partially_filled")


def _table() -> dict[tuple[OrderStatus, OrderEvent], OrderStatus]:
    t: dict[tuple[OrderStatus, OrderEvent], OrderStatus] = {
        ("new", "submit"): "submitting",
        ("submitting", "ambiguous"): "unknown",
        ("unknown", "ambiguous"): "unknown",
        ("unknown", "regenerate"): "submitting",
        ("submitting", "rejected"): "rejected",
        ("unknown", "abandon"): "canceled",
        ("submitting", "abandon"): "canceled",
        ("open", "cancel"): "canceling",
        ("partially_filled", "cancel"): "canceling",
        ("canceling", "cancel"): "canceling",
        ("open", "fill"): "partially_filled",
        ("partially_filled", "fill"): "partially_filled",
    }
    # What the venue reports about an order that may exist.
    for state in (*_UNPLACED, *_LIVE, "canceling"):
        t[(state, "venue_partial")] = "partially_filled"
        t[(state, "venue_filled")] = "filled"
        t[(state, "venue_canceled")] = "canceled"
        t[(state, "venue_expired")] = "expired"
    for state in (*_UNPLACED, "open"):
        t[(state, "venue_open")] = "open"
    for state in _UNPLACED:
        t[(state, "venue_rejected")] = "rejected"
    # A cancel in flight: the venue still reporting it open or partial keeps it canceling.
    t[("canceling", "venue_open")] = "canceling"
    t[("canceling", "venue_partial")] = "canceling"
    t[("canceling", "fill")] = "canceling"
    # Terminal states: confirmations and late fills keep them as they are.
    for state in TERMINAL:
        t[(state, _VENUE_OF[state])] = state
    for state in ("filled", "canceled", "expired"):
        t[(state, "fill")] = state
    t[("rejected", "rejected")] = "rejected"
    return t


_VENUE_OF: dict[OrderStatus, OrderEvent] = {
    "filled": "venue_filled",
    "canceled": "venue_canceled",
    "rejected": "venue_rejected",
    "expired": "venue_expired",
}
TRANSITIONS: dict[tuple[OrderStatus, OrderEvent], OrderStatus] = _table()
"""``(state, event) -> next state``; every pair absent from it is invalid."""


def transition(state: OrderStatus, event: OrderEvent) -> OrderStatus:
    """The next state, or :class:`InvalidTransition` if the table has no such edge."""
    try:
        return TRANSITIONS[(state, event)]
    except KeyError:
        raise InvalidTransition(state, event) from None


def is_terminal(state: OrderStatus) -> bool:
    """True for ``filled``, ``canceled``, ``rejected`` and ``expired``."""
    return state in TERMINAL


def reply_event(reply: OrderReply) -> OrderEvent:
    """The event a venue order reply stands for (``open`` with a fill is partial)."""
    if reply.status == "open":
        return "venue_partial" if (reply.filled or 0) > 0 else "venue_open"
    if reply.status == "closed":
        return "venue_filled"
    return {
        "canceled": "venue_canceled",
        "expired": "venue_expired",
        "rejected": "venue_rejected",
    }[reply.status]  # type: ignore[return-value]
