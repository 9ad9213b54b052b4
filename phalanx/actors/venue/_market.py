"""The paper venue's vocabulary: markets and their filters, defaults, errors, numbers.

All amounts are ``Decimal``; ``_fmt`` renders them as Binance does (no
exponent, no trailing zeros, ``"0"`` for zero). The default markets, fees
and balances are what a ``MatchingEngine`` starts with unless told otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

__all__ = ["Market", "VenueError"]

D = Decimal
ZERO = D(0)


class VenueError(Exception):
    """A Binance-style error: ``{"code": code, "msg": msg}`` with an HTTP status."""

    def __init__(self, code: int, msg: str, status: int = 400) -> None:
        super().__init__(msg)
        self.code = code
        self.msg = msg
        self.status = status


@dataclass(frozen=True)
class Market:
    """One spot symbol with its Binance filters."""

    symbol: str  # BTCUSDT
    base: str
    quote: str
    start_price: Decimal
    tick: Decimal
    step: Decimal
    min_qty: Decimal
    max_qty: Decimal
    min_notional: Decimal
    depth: Decimal  # quantity available at each synthetic book level


DEFAULT_MARKETS = (
    Market("BTCUSDT", "BTC", "USDT", D("43000"), D("0.01"), D("0.00001"), D("0.00001"),
           D("100"), D("5"), D("0.05")),
    Market("ETHUSDT", "ETH", "USDT", D("2300"), D("0.01"), D("0.0001"), D("0.0001"),
           D("1000"), D("5"), D("1")),
)  # fmt: skip
MAKER_FEE, TAKER_FEE = D("0.0008"), D("0.001")
DEFAULT_BALANCES = {"USDT": D("100000"), "BTC": D("1"), "ETH": D("10")}


def _fmt(value: Decimal) -> str:
    return format(value.normalize(), "f") if value else "0"
