"""Pure: what one venue order reply does to an order's record (no I/O).

The actor gathers the I/O first (the reply, and the account's trades when the
reply's own trades fall short of its executed quantity), then commits the
planned record in ONE write: the exchange id, the fills and the status move
together, so a crash can never leave an acknowledged order without its fills.
"""

from __future__ import annotations

from decimal import Decimal

from phalanx.actors.order._ids import generation_of
from phalanx.actors.order._machine import OrderEvent, reply_event, transition
from phalanx.errors import InvalidTransition
from phalanx.protocols.exchange import OrderReply
from phalanx.protocols.trading import OrderFill, OrderStatus
from phalanx.storage._orders import OrderRecord, add_fills, evolve

__all__ = ["FINAL_EVENTS", "plan_reply"]

FINAL_EVENTS: frozenset[OrderEvent] = frozenset({"venue_filled", "venue_canceled", "venue_expired"})


def plan_reply(
    record: OrderRecord,
    reply: OrderReply,
    fills: list[OrderFill],
    venue_filled: Decimal,
) -> tuple[OrderRecord, list[InvalidTransition]]:
    """The record after ``reply`` and ``fills``, and the transitions the table refused.

    Steps: the live status (``open``/``partially_filled``, or ``canceling`` kept)
    with the exchange id; the new fills (deduplicated by trade id), each a
    ``fill`` event; then the terminal status, but only once the journaled fills
    cover ``venue_filled``, so a terminal record is final. A refused transition
    keeps the state and is returned for the caller to log and audit.
    """
    refused: list[InvalidTransition] = []

    def step(state: OrderStatus, event: OrderEvent) -> OrderStatus:
        try:
            return transition(state, event)
        except InvalidTransition as exc:
            refused.append(exc)
            return state

    event = reply_event(reply)
    final = event in FINAL_EVENTS
    executed = reply.filled or Decimal(0)
    status = record.status
    if not record.terminal:
        live: OrderEvent = ("venue_partial" if executed > 0 else "venue_open") if final else event
        status = step(status, live)
    cid, gen = record.client_order_id, record.generation
    if reply.client_order_id and reply.client_order_id != cid:
        found = generation_of(record.order_req_id, reply.client_order_id)
        if found is not None:  # an earlier generation turned up after all
            cid, gen = reply.client_order_id, found
    merged = add_fills(record, fills)
    for _ in range(len(merged.fills) - len(record.fills)):
        status = step(status, "fill")
    if final and merged.filled >= venue_filled:
        status = step(status, event)
    planned = evolve(
        merged, exchange_order_id=reply.id, client_order_id=cid, generation=gen, status=status
    )
    return planned, refused
