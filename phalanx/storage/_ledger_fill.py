"""A fill's double-entry postings: the pure part of the ledger (DESIGN section 5).

Accounts are named ``assets:<ASSET>`` (holdings), ``expenses:fees:<ASSET>``
(fees, one account per asset they were paid in) and ``equity:opening:<ASSET>``.
Every posting carries a ``value`` in the fill's quote currency (what must
balance; the record's ``currency``) and a ``quantity`` in its account's own
asset (what reconciles with the venue). With ``n = quantity * price``:

- fee ``f`` in the quote (Binance sells, and buys paying in the quote):
  buy:  Dr assets:BASE (n, +q), Dr expenses:fees:QUOTE (f, +f), Cr assets:QUOTE (n + f, -(n + f));
  sell: Dr assets:QUOTE (n - f, +(n - f)), Dr expenses:fees:QUOTE (f, +f), Cr assets:BASE (n, -q).
- fee ``f`` in the base (Binance buys without BNB: you receive ``q - f``),
  the fee valued at the fill price, ``v = f * price``:
  buy:  Dr assets:BASE (n - v, +(q - f)), Dr expenses:fees:BASE (v, +f), Cr assets:QUOTE (n, -n);
  sell: Dr assets:QUOTE (n, +n), Dr expenses:fees:BASE (v, +f), Cr assets:BASE (n + v, -(q + f)).
  A buy whose base fee is not below its quantity is refused (``ValueError``).
- fee ``f`` in a third asset X (BNB): the trade legs of a zero fee, plus
  Dr expenses:fees:X (0, +f), Cr assets:X (0, -f). The fill carries no price
  of X in the quote, so the fee is booked in quantity only (valued 0, never
  guessed); ``expenses:fees:X`` holds what was paid, in X.

So ``assets:A`` moves by exactly what the venue's balance of A moves by, in
every case, and every transaction balances in value: sum(debits) ==
sum(credits), in its one valuation currency (the quote). A zero fee, in any
currency, is booked as a zero quote fee (the same bytes as before fees in
other assets were accepted). Sells are valued at their notional, not cost
basis: realized PnL belongs to the Position actor.

Arithmetic is exact: every product and sum runs in ``_EXACT`` (unbounded
precision, ``Inexact`` trapped), explicitly or under ``localcontext``.

The encoding of these postings for LMDB (records, balance deltas and the
hot path that builds them straight from a fill) is in
:mod:`phalanx.storage._ledger_encode`.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import MAX_EMAX, MAX_PREC, MIN_EMIN, Context, Decimal, Inexact, InvalidOperation
from typing import Literal

__all__ = ["Fill", "Posting", "Transaction", "fee_kind", "fill_key", "plan_fill"]

ZERO = Decimal(0)
# The context of every ledger computation: exact (unbounded precision), or it raises.
_EXACT = Context(prec=MAX_PREC, Emax=MAX_EMAX, Emin=MIN_EMIN, traps=[InvalidOperation, Inexact])
FeeKind = Literal["quote", "base", "other"]


@dataclass(frozen=True)
class Fill:
    """One execution at the venue (a trade), identified by ``fill_id``.

    ``fee`` is in ``fee_currency`` (None: the quote asset).
    """

    fill_id: str  # e.g. "paper:BTCUSDT:123": unique per venue trade
    side: Literal["buy", "sell"]
    base: str
    quote: str
    quantity: Decimal
    price: Decimal
    fee: Decimal
    order_id: str | None = None
    fee_currency: str | None = None


@dataclass(frozen=True)
class Posting:
    """One leg: ``side`` is debit or credit; ``value`` in the quote currency."""

    account: str
    side: Literal["debit", "credit"]
    value: Decimal
    quantity: Decimal  # signed change of the account's own asset


@dataclass(frozen=True)
class Transaction:
    """Balanced postings for one event, with the key that makes it idempotent.

    ``currency`` names what the values are in (a fill's quote; None: not
    stated, as for openings valued at mixed prices).
    """

    key: str
    postings: tuple[Posting, ...]
    memo: str = ""
    currency: str | None = None

    def balanced(self) -> bool:
        """True when the debit values sum exactly to the credit values."""
        debits = credits = ZERO
        for p in self.postings:
            if p.side == "debit":
                debits = _EXACT.add(debits, p.value)
            elif p.side == "credit":
                credits = _EXACT.add(credits, p.value)
        return debits == credits


def _posting(
    account: str, side: Literal["debit", "credit"], value: Decimal, quantity: Decimal
) -> Posting:
    # The same object as Posting(...), built without the frozen __init__ (one
    # object.__setattr__ per field): measured 1.2 µs instead of 3.4 µs, on the
    # hot path of every fill. tests/test_ledger.py checks it stays equal.
    posting = _new(Posting)
    posting.__dict__.update(account=account, side=side, value=value, quantity=quantity)
    return posting


_new = object.__new__


def fill_key(fill_id: str) -> str:
    """The transaction key (and idempotency marker) of a fill."""
    return f"fill:{fill_id}"


def fee_kind(fill: Fill) -> FeeKind:
    """Which asset pays the fee: ``quote`` (also any zero fee), ``base`` or ``other``."""
    currency = fill.fee_currency
    if currency is None or currency == fill.quote or not fill.fee:
        return "quote"
    return "base" if currency == fill.base else "other"


def _check(fill: Fill, kind: FeeKind) -> None:
    if fill.quantity <= ZERO or fill.price <= ZERO or fill.fee < ZERO:
        raise ValueError(f"fill {fill.fill_id}: quantity and price must be > 0, fee >= 0")
    if kind == "base" and fill.side == "buy" and fill.fee >= fill.quantity:
        raise ValueError(
            f"fill {fill.fill_id}: a base-asset fee {fill.fee} must be below the "
            f"quantity bought {fill.quantity}"
        )


def plan_fill(fill: Fill) -> Transaction:
    """The balanced postings of a fill (pure: no I/O); balanced by construction."""
    kind = fee_kind(fill)
    _check(fill, kind)
    q, fee = fill.quantity, fill.fee
    notional = _EXACT.multiply(q, fill.price)
    base, cash = f"assets:{fill.base}", f"assets:{fill.quote}"
    memo = f"{fill.side} {fill.order_id or ''}"
    key = fill_key(fill.fill_id)
    buy = fill.side == "buy"
    legs: tuple[Posting, ...]
    if kind == "quote":
        fees = f"expenses:fees:{fill.quote}"
        if buy:
            paid = _EXACT.add(notional, fee)  # debits notional + fee == credit paid
            legs = (
                _posting(base, "debit", notional, q),
                _posting(fees, "debit", fee, fee),
                _posting(cash, "credit", paid, paid.copy_negate()),
            )
        else:
            received = _EXACT.subtract(notional, fee)  # debits received + fee == notional
            legs = (
                _posting(cash, "debit", received, received),
                _posting(fees, "debit", fee, fee),
                _posting(base, "credit", notional, q.copy_negate()),
            )
        return Transaction(key, legs, memo=memo, currency=fill.quote)
    if kind == "base":
        fees = f"expenses:fees:{fill.base}"
        valued = _EXACT.multiply(fee, fill.price)
        if buy:  # receive q - fee: the base account holds the net, valued at the price
            legs = (
                _posting(base, "debit", _EXACT.subtract(notional, valued), _EXACT.subtract(q, fee)),
                _posting(fees, "debit", valued, fee),
                _posting(cash, "credit", notional, notional.copy_negate()),
            )
        else:  # deliver q + fee
            legs = (
                _posting(cash, "debit", notional, notional),
                _posting(fees, "debit", valued, fee),
                _posting(
                    base, "credit", _EXACT.add(notional, valued), _EXACT.add(q, fee).copy_negate()
                ),
            )
        return Transaction(key, legs, memo=memo, currency=fill.quote)
    other = str(fill.fee_currency)
    fees, held = f"expenses:fees:{other}", f"assets:{other}"
    if buy:
        trade = (
            _posting(base, "debit", notional, q),
            _posting(cash, "credit", notional, notional.copy_negate()),
        )
    else:
        trade = (
            _posting(cash, "debit", notional, notional),
            _posting(base, "credit", notional, q.copy_negate()),
        )
    legs = (
        *trade,
        _posting(fees, "debit", ZERO, fee),
        _posting(held, "credit", ZERO, fee.copy_negate()),
    )
    return Transaction(key, legs, memo=memo, currency=fill.quote)
