"""The order steps of the buy and sell sagas: ``place_order`` and ``await_fill``.

``place_order`` (compensation: ``_cancel_order``) starts the saga's Order actor
at :func:`order_path` from an intent whose ``order_req_id`` (hence its client
order id) is the saga id, so a resumed saga that re-runs the step places
nothing twice. Once the venue acknowledges, the venue locks the order's funds
and ``/risk`` is told (``FundsAtVenue``).

``await_fill`` polls (``Pending``), so a kill lands between polls; at its soft
deadline (``fill_timeout_s`` into the step) it cancels and keeps polling until
the order is terminal. Nothing filled is a permanent failure: the saga
compensates (cancel, release). A partial fill continues with what filled.
Either step's timeout (``on_timeout``) cancels, then waits for the terminal
snapshot.
"""

from __future__ import annotations

import time
from decimal import Decimal
from typing import Any

from phalanx.actors._trade_input import _dec
from phalanx.actors.saga._model import Pending, StepContext
from phalanx.errors import PhalanxError
from phalanx.protocols.trading import (
    CancelIntent,
    FundsAtVenue,
    GetOrder,
    OrderIntent,
    OrderSnapshot,
)
from phalanx.storage._orders import OrderRecord, OrderStore

__all__ = ["NothingFilled", "OrderRejected", "order_path"]

ZERO = Decimal(0)
_HARD_TIMEOUT_S = 600.0  # await_fill's step timeout; its soft one is fill_timeout_s
_ACK_STATUSES = frozenset({"new", "submitting", "unknown"})


class OrderRejected(PhalanxError):
    """The venue refused the order (insufficient funds, invalid). Permanent: compensate."""

    phalanx_error_class = "permanent"


class NothingFilled(PhalanxError):
    """The order ended (canceled, expired) with nothing filled. Permanent: compensate."""

    phalanx_error_class = "permanent"


def order_path(saga_id: str) -> str:
    """The Order actor of a saga's order: ``/orders/o-<saga_id>``."""
    return f"/orders/o-{saga_id}"


def _intent(ctx: StepContext) -> OrderIntent:
    i = ctx.input
    return OrderIntent(
        order_req_id=ctx.saga_id, symbol=i["symbol"], side=i["side"], type="limit",
        amount=_dec(ctx, "amount"), price=_dec(ctx, "price"), exchange=i["exchange"],
        saga_id=ctx.saga_id, notify=ctx.path,
    )  # fmt: skip


def _snapshot(ctx: StepContext) -> OrderSnapshot | None:
    """The order's snapshot, or None while its actor is settling or restarting.

    A terminal record is final once its actor has stopped (the actor stops
    only once every venue fill is journaled and sunk), or at once when it is
    ``filled`` with trades journaled for its whole amount: no fill can follow
    then, and the saga's own position and ledger steps apply any fill the
    sink has not handed over yet (both deduplicate by trade id). Otherwise
    the actor is (re)started from the intent if needed (idempotent) and asked.
    """
    from phalanx.actors.order import place_order, snapshot_of  # noqa: PLC0415

    path = order_path(ctx.saga_id)
    record = OrderStore(ctx.system.storage).get(ctx.saga_id)
    if record is not None and record.terminal:
        if _fully_filled(record) or not ctx.system.is_alive(path):
            return snapshot_of(record)
        return None
    alive = ctx.system.is_alive(path)
    if not alive:
        place_order(ctx.system, _intent(ctx), known_absent=record is None)
    snap: OrderSnapshot = ctx.system.ask(path, GetOrder(), timeout=5.0)
    return snap


def _fully_filled(record: OrderRecord) -> bool:
    """``filled``, and the journaled trades add up to the whole amount."""
    traded = sum((f.amount for f in record.fills.values()), ZERO)
    return record.status == "filled" and traded == record.filled == record.amount


def _place_order(ctx: StepContext) -> dict[str, Any] | Pending:
    snap = _snapshot(ctx)
    if snap is None:
        return Pending(0.02)
    if snap.status == "rejected":
        raise OrderRejected(f"order {snap.client_order_id} rejected by the venue")
    if snap.status in _ACK_STATUSES:
        return Pending(0.02)  # not acknowledged yet: the Order actor resolves it
    # Acknowledged: the venue locks the order's funds itself now (a limit buy its
    # notional, a sell its amount), so Risk stops counting them twice.
    amount = _dec(ctx, "amount")
    locked = amount * _dec(ctx, "price") if ctx.input["side"] == "buy" else amount
    ctx.system.tell("/risk", FundsAtVenue(reservation_id=ctx.saga_id, locked=locked))
    return {"client_order_id": snap.client_order_id, "exchange_order_id": snap.exchange_order_id}


def _cancel_then(ctx: StepContext, reason: str) -> OrderSnapshot | None:
    """Ask for a cancel (idempotent); the final snapshot once the order is terminal."""
    snap = _snapshot(ctx)
    if snap is None:
        return None
    if not snap.terminal:
        ctx.system.ask(order_path(ctx.saga_id), CancelIntent(reason=reason), timeout=10.0)
        return None
    return snap


def _place_timeout(ctx: StepContext) -> dict[str, Any] | Pending:
    """``place_order`` overran its timeout: cancel, then go on with any fill, else fail."""
    snap = _cancel_then(ctx, "place_timeout")
    if snap is None:
        return Pending(0.05)
    if snap.filled <= 0:
        raise OrderRejected(f"order {snap.client_order_id} not acknowledged in time; canceled")
    return {"client_order_id": snap.client_order_id, "exchange_order_id": snap.exchange_order_id}


def _await_timeout(ctx: StepContext) -> dict[str, Any] | Pending:
    """``await_fill`` overran its hard timeout: cancel, wait for the terminal snapshot."""
    snap = _cancel_then(ctx, "fill_timeout")
    if snap is None:
        return Pending(0.05)
    if snap.filled <= 0:
        raise NothingFilled(f"order {snap.client_order_id} ended {snap.status} with no fill")
    return _fills_result(snap)


def _cancel_order(ctx: StepContext) -> dict[str, Any] | Pending:
    snap = _snapshot(ctx)
    if snap is not None and not snap.terminal:
        ctx.system.ask(
            order_path(ctx.saga_id), CancelIntent(reason="saga_compensation"), timeout=10.0
        )
        return Pending(0.05)
    if snap is None:
        return Pending(0.05)
    return {"status": snap.status, "filled": str(snap.filled)}


def _fills_result(snap: OrderSnapshot) -> dict[str, Any]:
    return {
        "status": snap.status,
        "filled": str(snap.filled),
        "average": None if snap.average is None else str(snap.average),
        "fee": str(snap.fee),
        "fills": [f.model_dump(mode="json") for f in snap.fills],
    }


def _await_fill(ctx: StepContext) -> dict[str, Any] | Pending:
    snap = _snapshot(ctx)
    if snap is None:
        return Pending(0.02)
    if not snap.terminal:
        # Step start + fill_timeout_s, from the journaled deadline: survives restarts.
        started = (ctx.deadline or time.time()) - _HARD_TIMEOUT_S
        if time.time() >= started + float(ctx.input["fill_timeout_s"]):
            ctx.system.ask(
                order_path(ctx.saga_id), CancelIntent(reason="fill_timeout"), timeout=10.0
            )
            return Pending(0.02)
        return Pending(0.05)
    if snap.filled <= 0:
        raise NothingFilled(f"order {snap.client_order_id} ended {snap.status} with no fill")
    return _fills_result(snap)
