"""The buy and sell sagas (docs/trading-core.md, "The buy saga"; DESIGN section 6).

Steps, in order: ``validate``, ``risk_check``, ``reserve_funds`` (compensation:
release), ``place_order`` (compensation: cancel), ``await_fill``,
``update_position``, ``post_ledger``, ``finalize``. A sell mirrors a buy and
reserves the base asset instead of the quote.

Every effect is keyed by the saga id, so a resumed saga that re-runs the step
in flight repeats nothing: the reservation id, the order's ``order_req_id``
(hence its client order id) and the fills' trade ids are all derived from it.
``await_fill`` polls (``Pending``), so a kill lands between polls; at its soft
deadline (``fill_timeout_s`` into the step) it cancels and keeps polling until
the order is terminal. Nothing filled is a permanent failure: the saga
compensates (cancel, release). A partial fill continues with what filled.

The saga input is plain data (Decimals as strings) because it is journaled::

    buy_input("BTC/USDT", Decimal("0.001"), Decimal("42000"), exchange="paper")
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from decimal import Decimal
from typing import Any, Literal

from phalanx.actors._ledger_actor import ledger_fill_from
from phalanx.actors._reconcile import ledger_marker
from phalanx.actors.saga._model import Pending, SagaDefinition, Step, StepContext, register_saga
from phalanx.errors import PhalanxError
from phalanx.protocols.trading import (
    ApplyFill,
    CancelIntent,
    FundsAtVenue,
    GetOrder,
    OrderFill,
    OrderIntent,
    OrderSnapshot,
    ReleaseFunds,
    ReserveFunds,
    RiskCheck,
    RiskDecision,
    symbol_segment,
)
from phalanx.storage import Ledger
from phalanx.storage._orders import OrderRecord, OrderStore
from phalanx.storage._positions import PositionStore
from phalanx.supervision import Retry

__all__ = [
    "BUY",
    "SELL",
    "NothingFilled",
    "OrderRejected",
    "RiskBlocked",
    "TradeInvalid",
    "buy_input",
    "order_path",
    "register_trade_sagas",
    "sell_input",
    "trade_saga",
]

BUY, SELL = "buy_order", "sell_order"
ZERO = Decimal(0)
DEFAULT_FEE_RATE = Decimal("0.001")  # the reservation's fee headroom (the venue's taker fee)
_HARD_TIMEOUT_S = 600.0  # await_fill's step timeout; its soft one is fill_timeout_s
_ACK_STATUSES = frozenset({"new", "submitting", "unknown"})


class TradeInvalid(PhalanxError, ValueError):
    """The order breaks the market's filters (symbol, step, tick, min notional). Permanent."""

    phalanx_error_class = "permanent"


class RiskBlocked(PhalanxError):
    """Risk refused the order; the message names the blocking limit. Permanent."""

    phalanx_error_class = "permanent"


class OrderRejected(PhalanxError):
    """The venue refused the order (insufficient funds, invalid). Permanent: compensate."""

    phalanx_error_class = "permanent"


class NothingFilled(PhalanxError):
    """The order ended (canceled, expired) with nothing filled. Permanent: compensate."""

    phalanx_error_class = "permanent"


def order_path(saga_id: str) -> str:
    """The Order actor of a saga's order: ``/orders/o-<saga_id>``."""
    return f"/orders/o-{saga_id}"


def _input(
    side: Literal["buy", "sell"],
    symbol: str,
    amount: Decimal,
    price: Decimal,
    exchange: str,
    fill_timeout_s: float,
    fee_rate: Decimal,
    filters: Mapping[str, Decimal | None] | None,
) -> dict[str, Any]:
    base, quote = symbol.split("/", 1)
    return {
        "side": side, "symbol": symbol, "base": base, "quote": quote, "amount": str(amount),
        "price": str(price), "exchange": exchange, "fill_timeout_s": fill_timeout_s,
        "fee_rate": str(fee_rate),
        "filters": {k: None if v is None else str(v) for k, v in (filters or {}).items()},
    }  # fmt: skip


def buy_input(
    symbol: str,
    amount: Decimal,
    price: Decimal,
    *,
    exchange: str = "paper",
    fill_timeout_s: float = 2.0,
    fee_rate: Decimal = DEFAULT_FEE_RATE,
    filters: Mapping[str, Decimal | None] | None = None,
) -> dict[str, Any]:
    """The journaled input of a limit buy saga.

    ``filters``: ``{amount_step, price_step, min_notional, min_amount, max_amount}``
    from the venue's markets (any may be missing: not enforced).
    """
    return _input("buy", symbol, amount, price, exchange, fill_timeout_s, fee_rate, filters)


def sell_input(
    symbol: str,
    amount: Decimal,
    price: Decimal,
    *,
    exchange: str = "paper",
    fill_timeout_s: float = 2.0,
    fee_rate: Decimal = DEFAULT_FEE_RATE,
    filters: Mapping[str, Decimal | None] | None = None,
) -> dict[str, Any]:
    """The journaled input of a limit sell saga (same fields as :func:`buy_input`)."""
    return _input("sell", symbol, amount, price, exchange, fill_timeout_s, fee_rate, filters)


def _dec(ctx: StepContext, name: str) -> Decimal:
    return Decimal(str(ctx.input[name]))


# --- steps ----------------------------------------------------------------------


def _validate(ctx: StepContext) -> dict[str, Any]:
    i = ctx.input
    symbol, amount, price = str(i["symbol"]), _dec(ctx, "amount"), _dec(ctx, "price")
    if i.get("side") not in ("buy", "sell"):
        raise TradeInvalid(f"side must be buy or sell, got {i.get('side')!r}")
    if symbol.count("/") != 1:
        raise TradeInvalid(f"not a BASE/QUOTE symbol: {symbol!r}")
    if amount <= 0 or price <= 0:
        raise TradeInvalid(f"amount and price must be > 0 (amount={amount}, price={price})")
    f = {k: Decimal(v) for k, v in (i.get("filters") or {}).items() if v is not None}
    if f.get("amount_step") and amount % f["amount_step"]:
        raise TradeInvalid(f"amount {amount} is not a multiple of the step {f['amount_step']}")
    if f.get("price_step") and price % f["price_step"]:
        raise TradeInvalid(f"price {price} is not a multiple of the tick {f['price_step']}")
    if f.get("min_amount") and amount < f["min_amount"]:
        raise TradeInvalid(f"amount {amount} is below the minimum {f['min_amount']}")
    if f.get("max_amount") and amount > f["max_amount"]:
        raise TradeInvalid(f"amount {amount} is above the maximum {f['max_amount']}")
    if f.get("min_notional") and amount * price < f["min_notional"]:
        raise TradeInvalid(f"notional {amount * price} is below the minimum {f['min_notional']}")
    return {"notional": str(amount * price)}


def _risk_check(ctx: StepContext) -> dict[str, Any]:
    i = ctx.input
    decision: RiskDecision = ctx.system.ask(
        "/risk",
        RiskCheck(order_req_id=ctx.saga_id, symbol=i["symbol"], side=i["side"],
                  amount=_dec(ctx, "amount"), price=_dec(ctx, "price")),
        timeout=5.0,
    )  # fmt: skip
    if not decision.allowed:
        check = decision.checks.get(decision.blocking_limit or "", {})
        raise RiskBlocked(f"risk blocked by {decision.blocking_limit}: {check}")
    return {"allowed": True, "trading_state": decision.trading_state}


def _reserve_spec(ctx: StepContext) -> tuple[str, Decimal]:
    amount, price = _dec(ctx, "amount"), _dec(ctx, "price")
    if ctx.input["side"] == "buy":
        return str(ctx.input["quote"]), amount * price * (1 + _dec(ctx, "fee_rate"))
    return str(ctx.input["base"]), amount


def _reserve_funds(ctx: StepContext) -> dict[str, Any]:
    asset, amount = _reserve_spec(ctx)
    ctx.system.ask(
        "/risk", ReserveFunds(reservation_id=ctx.saga_id, asset=asset, amount=amount), timeout=5.0
    )
    return {"asset": asset, "amount": str(amount)}


def _release_funds(ctx: StepContext) -> None:
    ctx.system.ask("/risk", ReleaseFunds(reservation_id=ctx.saga_id), timeout=5.0)


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


def _fills(ctx: StepContext) -> list[OrderFill]:
    raw = ctx.results["await_fill"]["fills"]
    return [OrderFill.model_validate(f) for f in raw]


def _update_position(ctx: StepContext) -> dict[str, Any]:
    from phalanx.actors._position import ensure_position  # noqa: PLC0415

    symbol = str(ctx.input["symbol"])
    store = PositionStore(ctx.system.storage)
    # The fill sink applied them already (a read, not a write, to find out).
    missing = [f for f in _fills(ctx) if not store.applied(symbol, f.trade_id)]
    if missing:
        ref = ensure_position(ctx.system, symbol)
        for fill in missing:
            ref.ask(ApplyFill(fill=fill), timeout=5.0)
    return {"applied": len(missing), "path": f"/positions/{symbol_segment(symbol)}"}


def _post_ledger(ctx: StepContext) -> dict[str, Any]:
    ledger = Ledger(ctx.system.storage)
    posted_before = ledger_marker(ctx.system)
    fills = [ledger_fill_from(f) for f in _fills(ctx)]
    # One commit for all of the order's new fills (all or nothing); the marker
    # reads skip the commit entirely when a resumed step finds them all posted.
    posted = sum(ledger.post_fills([f for f in fills if not posted_before(f)]))
    return {"posted": posted, "fills": len(fills)}


def _finalize(ctx: StepContext) -> dict[str, Any]:
    _release_funds(ctx)
    got = ctx.results["await_fill"]
    outcome = "filled" if got["status"] == "filled" else "partial"
    return {"outcome": outcome, "filled": got["filled"], "average": got["average"]}


def trade_saga(kind: str) -> SagaDefinition:
    """The buy or sell saga definition (the side comes from the input)."""
    ask_retry = Retry(max_attempts=6, backoff="exponential", base=0.05, max=1.0, jitter=0.1)
    # Polls outlive kills and lost asks: a placement step that gave up would leave
    # its order unwatched, so its budget is large (about a minute of backoff).
    poll_retry = Retry(max_attempts=60, backoff="exponential", base=0.05, max=1.0, jitter=0.1)
    return SagaDefinition(
        kind,
        [
            # Effect-free (Step.effects): their success records ride on the commit
            # made before reserve_funds runs. validate is pure; risk_check's ask
            # changes nothing but today's trade count, keyed by order_req_id (the
            # saga id) in /risk's store: a re-run after a crash counts nothing twice.
            # finalize is NOT effect-free: it releases the reservation.
            Step("validate", _validate, retry=Retry(max_attempts=1), effects=False),
            Step("risk_check", _risk_check, retry=ask_retry, depends_on=("validate",),
                 effects=False),
            # A reserve whose every ask timed out may still have been held by
            # /risk: releasing an unknown id is a no-op, so release on failure too.
            Step("reserve_funds", _reserve_funds, compensation=_release_funds,
                 retry=ask_retry, depends_on=("risk_check",), compensate_on_failure=True),
            # The cancel gets the polls' budget too: the default (5 attempts, ~0.8 s
            # of backoff) ended compensation_failed in a one-second venue brownout.
            Step("place_order", _place_order, compensation=_cancel_order, timeout_s=120.0,
                 retry=poll_retry, compensation_retry=poll_retry, depends_on=("reserve_funds",),
                 on_timeout=_place_timeout),
            Step("await_fill", _await_fill, timeout_s=_HARD_TIMEOUT_S, retry=poll_retry,
                 depends_on=("place_order",), on_timeout=_await_timeout),
            Step("update_position", _update_position, retry=ask_retry,
                 depends_on=("await_fill",)),
            Step("post_ledger", _post_ledger, retry=ask_retry, depends_on=("update_position",)),
            Step("finalize", _finalize, retry=ask_retry, depends_on=("post_ledger",)),
        ],
    )  # fmt: skip


def register_trade_sagas() -> tuple[SagaDefinition, SagaDefinition]:
    """Register the ``buy_order`` and ``sell_order`` kinds (idempotent)."""
    return register_saga(trade_saga(BUY)), register_saga(trade_saga(SELL))
