"""The journaled input of the buy and sell sagas (docs/trading-core.md, "The buy saga").

The saga input is plain data (Decimals as strings) because it is journaled::

    buy_input("BTC/USDT", Decimal("0.001"), Decimal("42000"), exchange="paper")

The steps read its Decimals back with ``_dec``.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any, Literal

from phalanx.actors.saga._model import StepContext

__all__ = ["DEFAULT_FEE_RATE", "buy_input", "sell_input"]

DEFAULT_FEE_RATE = Decimal("0.001")  # the reservation's fee headroom (the venue's taker fee)


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
