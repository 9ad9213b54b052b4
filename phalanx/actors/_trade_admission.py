"""Admitting a trade: the steps before the order (docs/trading-core.md, "The buy saga").

``validate`` (pure: the market's filters), ``risk_check`` (an ask to ``/risk``)
and ``reserve_funds`` (compensation: ``_release_funds``, which ``finalize``
calls too). A buy reserves the quote asset (notional plus fee headroom), a
sell the base asset. The reservation id is the saga id, so a resumed saga that
re-runs a step repeats nothing, and releasing an unknown id is a no-op.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from phalanx.actors._trade_input import _dec
from phalanx.actors.saga._model import StepContext
from phalanx.errors import PhalanxError
from phalanx.protocols.trading import ReleaseFunds, ReserveFunds, RiskCheck, RiskDecision

__all__ = ["RiskBlocked", "TradeInvalid"]


class TradeInvalid(PhalanxError, ValueError):
    """The order breaks the market's filters (symbol, step, tick, min notional). Permanent."""

    phalanx_error_class = "permanent"


class RiskBlocked(PhalanxError):
    """Risk refused the order; the message names the blocking limit. Permanent."""

    phalanx_error_class = "permanent"


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
