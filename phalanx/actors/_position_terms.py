"""What one fill applies to its position: its quantity and its fee in the quote (pure).

Fees in any asset (:func:`position_terms`): ``quantity`` is the net quantity
held, what the venue holds (a buy paying ``f`` of the base in fees adds
``amount - f``); the entry price of that quantity is the fill price and the
fee, valued at the fill price in the quote (``f * price``), is realized at
once, as a quote fee is. So a round trip's realized PnL is exactly what the
quote balance gained: buy ``q`` at ``p`` with base fee ``f``, sell ``q - f``
at ``p'`` with quote fee ``g``: ``(p' - p) * (q - f) - f * p - g``. A fee in
a third asset (BNB) changes neither quantity nor quote PnL (no price for it
in the fill; the Ledger books it in that asset). A negative fee, or a base
fee a buy cannot pay, is refused with :class:`InvalidFill` (permanent); the
Ledger runs the same :func:`check_fee`, so both refuse the same fills.

No I/O, no state: the Position actor, the Ledger actor and replay all call
these, and the arithmetic runs in
:data:`~phalanx.actors._position_model.POSITION_CONTEXT` so they all round alike.
"""

from __future__ import annotations

from decimal import Decimal, localcontext

from phalanx.actors._position_model import POSITION_CONTEXT
from phalanx.actors._risk_model import split_symbol
from phalanx.errors import PhalanxError
from phalanx.protocols.trading import OrderFill

__all__ = ["InvalidFill", "check_fee", "fee_in_quote", "position_terms"]

ZERO = Decimal(0)


class InvalidFill(PhalanxError, ValueError):
    """A fill the position or ledger cannot apply (wrong symbol, bad numbers, unpayable fee).

    Permanent: the asker gets it, a told fill is dead-lettered; never retried.
    """

    phalanx_error_class = "permanent"


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
