"""A transaction encoded for LMDB: its record bytes and balance deltas (DESIGN section 5).

An entry is ``(marker key, msgpack record, balance deltas)``: what
:class:`~phalanx.storage._ledger.Ledger` writes, in one write transaction,
as the fill's idempotency marker, its record under the same key, and the
signed ``(account key, value, quantity)`` changes it adds to the balances.

:func:`_entry` encodes any :class:`Transaction`, refusing one whose values
do not balance. :func:`_fill_entry` is the hot path (every fill, single or
batched): it encodes a fill straight to the entry ``_entry(plan_fill(fill))``
gives, the same bytes and deltas, without the objects in between. The
postings themselves (the chart of accounts) are in
:mod:`phalanx.storage._ledger_fill`.

Arithmetic is exact: every product and sum runs in ``_EXACT`` (unbounded
precision, ``Inexact`` trapped), explicitly or under ``localcontext``.

On disk: ``{"key", "memo", "postings": [[account, side, value, quantity]],
"currency"}`` (``currency``: the quote the values are in; absent on
openings and on records written before it existed).
"""

from __future__ import annotations

import threading
from decimal import Decimal

import msgpack

from phalanx.errors import StorageError
from phalanx.storage._ledger_fill import _EXACT, ZERO, Fill, Transaction, _check

_local = threading.local()


def _packer() -> msgpack.Packer:
    # msgpack.packb builds a Packer per call (~2 µs measured): keep one per thread.
    try:
        packer: msgpack.Packer = _local.packer
    except AttributeError:
        packer = _local.packer = msgpack.Packer()
    return packer


# One transaction ready to write: (marker key, msgpack record, balance deltas
# (account key, signed value, quantity)).
_Entry = tuple[bytes, bytes, list[tuple[bytes, Decimal, Decimal]]]


def _record(txn: Transaction, legs: list[list[str]]) -> bytes:
    fields: dict[str, object] = {"key": txn.key, "memo": txn.memo, "postings": legs}
    if txn.currency is not None:
        fields["currency"] = txn.currency
    packed: bytes = _packer().pack(fields)
    return packed


def _entry(txn: Transaction) -> _Entry:
    """Check ``txn`` balances and encode it (the general path, for any transaction)."""
    net = ZERO
    legs = []
    deltas = []
    for p in txn.postings:
        if p.side == "debit":
            signed = p.value
        elif p.side == "credit":
            signed = p.value.copy_negate()
        else:
            raise StorageError(f"ledger: transaction {txn.key} has a posting side {p.side!r}")
        net = _EXACT.add(net, signed)
        legs.append([p.account, p.side, str(p.value), str(p.quantity)])
        deltas.append((p.account.encode(), signed, p.quantity))
    if net:
        raise StorageError(f"ledger: transaction {txn.key} does not balance")
    return txn.key.encode(), _record(txn, legs), deltas


# asset -> (assets:<A>, expenses:fees:<A>) as str, then as bytes (db keys).
_Names = tuple[str, str, bytes, bytes]
_accounts: dict[str, _Names] = {}
# (base, quote) -> the names and keys of assets:BASE, assets:QUOTE, expenses:fees:QUOTE
# and expenses:fees:BASE: one lookup per fill.
_Pair = tuple[str, str, str, str, bytes, bytes, bytes, bytes]
_pairs: dict[tuple[str, str], _Pair] = {}


def _pair_of(base: str, quote: str) -> _Pair:
    names = _pairs.get((base, quote))
    if names is None:
        if len(_pairs) >= 4096:  # bounded: symbols are few, inputs may not be
            _pairs.clear()
        b, bf, bk, bfk = _accounts_of(base)
        c, cf, ck, cfk = _accounts_of(quote)
        names = _pairs[(base, quote)] = (b, c, cf, bf, bk, ck, cfk, bfk)
    return names


def _accounts_of(asset: str) -> _Names:
    names = _accounts.get(asset)
    if names is None:
        if len(_accounts) >= 4096:  # bounded: assets are few, inputs may not be
            _accounts.clear()
        held, fees = f"assets:{asset}", f"expenses:fees:{asset}"
        names = _accounts[asset] = (held, fees, held.encode(), fees.encode())
    return names


def _fill_entry(fill: Fill) -> _Entry:
    """``_entry(plan_fill(fill))`` without the objects in between (the hot path).

    Call it under ``localcontext(_EXACT)``: its operators then compute
    exactly, as ``_EXACT.add`` does, at a fifth of the cost (0.08 against
    0.45 µs measured, entering the context once costs ~1 µs).
    The same bytes and deltas for a fee in any asset (tests/test_ledger_batch.py
    and tests/trading/test_base_fee_books.py check it against plan_fill with
    hypothesis), balanced by construction as plan_fill is.
    ``str(-x) == "-" + str(x)`` for the positive ``paid``, ``quantity``.
    """
    quantity, price, fee = fill.quantity, fill.price, fill.fee
    if quantity <= ZERO or price <= ZERO or fee < ZERO:
        raise ValueError(f"fill {fill.fill_id}: quantity and price must be > 0, fee >= 0")
    notional = quantity * price  # exact: the caller runs this under localcontext(_EXACT)
    base, cash, fees, base_fees, base_key, cash_key, fees_key, base_fees_key = _pair_of(
        fill.base, fill.quote
    )
    currency = fill.fee_currency
    fee_s, qty_s, notional_s = str(fee), str(quantity), str(notional)
    buy = fill.side == "buy"
    deltas: list[tuple[bytes, Decimal, Decimal]]
    if currency is None or currency == fill.quote or not fee:
        if buy:
            paid = notional + fee
            paid_s = str(paid)
            legs = [
                [base, "debit", notional_s, qty_s],
                [fees, "debit", fee_s, fee_s],
                [cash, "credit", paid_s, "-" + paid_s],
            ]
            negated = paid.copy_negate()
            deltas = [
                (base_key, notional, quantity),
                (fees_key, fee, fee),
                (cash_key, negated, negated),
            ]
        else:
            received = notional - fee  # may be <= 0: str() keeps its sign
            received_s = str(received)
            legs = [
                [cash, "debit", received_s, received_s],
                [fees, "debit", fee_s, fee_s],
                [base, "credit", notional_s, "-" + qty_s],
            ]
            deltas = [
                (cash_key, received, received),
                (fees_key, fee, fee),
                (base_key, notional.copy_negate(), quantity.copy_negate()),
            ]
    elif currency == fill.base:
        valued = fee * price
        valued_s = str(valued)
        if buy:
            if fee >= quantity:
                _check(fill, "base")  # raises, with plan_fill's message
            held, net = notional - valued, quantity - fee
            legs = [
                [base, "debit", str(held), str(net)],
                [base_fees, "debit", valued_s, fee_s],
                [cash, "credit", notional_s, "-" + notional_s],
            ]
            negated = notional.copy_negate()
            deltas = [
                (base_key, held, net),
                (base_fees_key, valued, fee),
                (cash_key, negated, negated),
            ]
        else:
            given, out = notional + valued, quantity + fee
            legs = [
                [cash, "debit", notional_s, notional_s],
                [base_fees, "debit", valued_s, fee_s],
                [base, "credit", str(given), "-" + str(out)],
            ]
            deltas = [
                (cash_key, notional, notional),
                (base_fees_key, valued, fee),
                (base_key, given.copy_negate(), out.copy_negate()),
            ]
    else:
        other, other_fees, other_key, other_fees_key = _accounts_of(currency)
        negated = notional.copy_negate()
        if buy:
            legs = [
                [base, "debit", notional_s, qty_s],
                [cash, "credit", notional_s, "-" + notional_s],
            ]
            deltas = [(base_key, notional, quantity), (cash_key, negated, negated)]
        else:
            legs = [
                [cash, "debit", notional_s, notional_s],
                [base, "credit", notional_s, "-" + qty_s],
            ]
            deltas = [(cash_key, notional, notional), (base_key, negated, quantity.copy_negate())]
        legs.append([other_fees, "debit", "0", fee_s])
        legs.append([other, "credit", "0", "-" + fee_s])
        deltas.append((other_fees_key, ZERO, fee))
        deltas.append((other_key, ZERO, fee.copy_negate()))
    key = "fill:" + fill.fill_id
    memo = f"{fill.side} {fill.order_id or ''}"
    record = {"key": key, "memo": memo, "postings": legs, "currency": fill.quote}
    return key.encode(), _packer().pack(record), deltas
