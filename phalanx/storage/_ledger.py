"""The double-entry ledger in LMDB (DESIGN section 5).

Pure part: :func:`plan_fill` turns a fill into a balanced :class:`Transaction`.
I/O part: :class:`Ledger` commits the postings, the account balances and the
fill's idempotency marker in ONE LMDB write transaction, so replaying a fill
never posts it twice and a crash never leaves half a transaction.

The postings of a fill, fees in the quote, the base or a third asset
included, are in :mod:`phalanx.storage._ledger_fill` (its docstring is the
chart of accounts). In short: every posting carries a ``value`` in the
fill's quote currency (what must balance) and a ``quantity`` in its
account's own asset (what reconciles with the venue); ``assets:<ASSET>``
moves by exactly what the venue's balance of that asset moves by.
Invariant: in every transaction, sum(debit values) == sum(credit values),
and :meth:`Ledger.trial_balances` checks it per valuation currency.

Arithmetic is exact: every product and sum runs in ``_EXACT`` (unbounded
precision, and ``Inexact`` trapped), explicitly or under ``localcontext``,
never the thread's default context, which silently rounds to 28 digits.

On disk (read by other tools, keep it): ``ledger`` maps the txn key to
msgpack ``{"key", "memo", "postings": [[account, side, value, quantity]],
"currency"}`` (``currency``, the quote the values are in, on fills only),
``ledger_balances`` maps the account to msgpack ``[value, quantity]`` (decimal
strings), ``ledger_fills`` maps the key to ``b"1"`` (the idempotency marker).

Throughput (``bench/ledger.py``, durable): a fill is encoded straight to its
record and balance deltas (``_fill_entry``, equal to encoding ``plan_fill``'s
transaction, checked with hypothesis); an op writes markers and records, and
adds its deltas to per-txn sums that ONE ``before_commit`` hook writes, once
per account per txn, from balances cached across this Storage's own commits
(``Storage.txn_cache``: never read back, never stale). ``post_fills`` puts
many fills in one op, so the per-call cost (a thread woken per caller, ~20
µs here) is paid once per batch: post it all when you hold several fills.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal, localcontext
from typing import Any

import msgpack

from phalanx.storage._env import Storage
from phalanx.storage._ledger_encode import _Entry, _entry, _fill_entry, _packer
from phalanx.storage._ledger_fill import (
    _EXACT,
    ZERO,
    Fill,
    Posting,
    Transaction,
    fee_kind,
    fill_key,
    plan_fill,
)

__all__ = [
    "Fill",
    "Ledger",
    "Posting",
    "Transaction",
    "fee_kind",
    "fill_key",
    "plan_fill",
    "plan_opening",
]

_TXNS, _BALANCES, _MARKERS = "ledger", "ledger_balances", "ledger_fills"
_PENDING = "ledger_balances:pending"  # the txn_cache of sums not yet written
_Balance = tuple[Decimal, Decimal]


def plan_opening(
    key: str, holdings: Mapping[str, Decimal], prices: Mapping[str, Decimal]
) -> Transaction:
    """Opening balances: debit each asset, credit equity, valued at ``prices`` (quote=1)."""
    postings: list[Posting] = []
    for asset, quantity in sorted(holdings.items()):
        value = _EXACT.multiply(quantity, prices.get(asset, Decimal(1)))
        postings.append(Posting(f"assets:{asset}", "debit", value, quantity))
        postings.append(Posting(f"equity:opening:{asset}", "credit", value, ZERO))
    return Transaction(f"opening:{key}", tuple(postings), memo="opening balances")


def _dec(raw: Any) -> Decimal:
    return Decimal(raw.decode() if isinstance(raw, bytes) else raw)


class Ledger:
    """Balances per account, a trial balance, and venue verification, on LMDB."""

    def __init__(self, storage: Storage) -> None:
        self._storage = storage
        self._txns = storage.db(_TXNS)
        self._balances = storage.db(_BALANCES)
        self._markers = storage.db(_MARKERS)

    def post(self, txn: Transaction) -> bool:
        """Commit ``txn`` once. False (and nothing written) if its key was posted before."""
        return self._post_one(_entry(txn))

    def has_fill(self, fill_id: str) -> bool:
        """True once the fill with ``fill_id`` is posted (its marker exists)."""
        key, markers = fill_key(fill_id).encode(), self._markers
        return self._storage.read(lambda t: t.get(key, db=markers)) is not None

    def post_fill(self, fill: Fill) -> bool:
        """Post a fill; replaying the same ``fill_id`` posts nothing and returns False."""
        return bool(self._storage.write_now(self.post_fill_op(fill)))

    def post_fill_op(self, fill: Fill) -> Callable[[Any], bool]:
        """:meth:`post_fill` as a write op, for a caller committing it in its own txn.

        Validated now (``ValueError`` naming the fill, before anything runs);
        the op returns what :meth:`post_fill` returns. The Order actor commits
        it with the fill's sunk marker: posting and marker together or not at all.
        """
        with localcontext(_EXACT):
            entry = _fill_entry(fill)
        op = self._op([entry])
        return lambda t: op(t)[0]

    def post_fills(self, fills: Sequence[Fill]) -> list[bool]:
        """Post many fills in ONE write op (one commit): per fill, True if posted now.

        False for a fill posted before, or earlier in ``fills`` (same
        ``fill_id``): a fill is never posted twice. All or nothing: every fill
        is validated before anything is written, so one invalid fill raises
        ``ValueError`` naming it and posts none of them; a storage failure
        (``StorageError``) likewise leaves none of them posted.
        """
        if not fills:
            return []
        with localcontext(_EXACT):
            entries = [_fill_entry(fill) for fill in fills]
        return self._commit(entries)

    def post_many(self, txns: Sequence[Transaction]) -> list[bool]:
        """:meth:`post` for many transactions in one write op; all checked before any write."""
        return self._commit([_entry(txn) for txn in txns]) if txns else []

    def _post_one(self, entry: _Entry) -> bool:
        op = self._op([entry])
        return bool(self._storage.write_now(lambda t: op(t)[0]))

    def _commit(self, entries: list[_Entry]) -> list[bool]:
        posted: list[bool] = self._storage.write_now(self._op(entries))
        return posted

    def _op(self, entries: list[_Entry]) -> Callable[[Any], list[bool]]:
        """The write op posting ``entries`` in order (a pure function of the txn)."""
        txns, markers, storage, flush = self._txns, self._markers, self._storage, self._flush

        def op(t: Any) -> list[bool]:
            # Invariant: markers, postings and balances commit together or not at
            # all (the balances in a hook of the same txn). Rebuilt on every run:
            # an op may run again after an abort.
            posted: list[bool] = []
            # What this txn's ledger ops add per account, written once before
            # the commit (_flush): a balance is written once per txn, not per leg.
            sums: dict[bytes, list[Decimal]] = storage.txn_cache(_PENDING)
            storage.before_commit(_BALANCES, flush)
            with localcontext(_EXACT):  # every + below is exact
                for marker, record, deltas in entries:
                    if not t.put(marker, b"1", db=markers, overwrite=False):
                        posted.append(False)  # posted before, or earlier in this batch
                        continue
                    t.put(marker, record, db=txns)
                    posted.append(True)
                    for name, signed, quantity in deltas:
                        acc = sums.get(name)
                        if acc is None:
                            sums[name] = [signed, quantity]
                        else:
                            acc[0] += signed
                            acc[1] += quantity
            return posted

        return op

    def _flush(self, t: Any) -> None:
        """Before the commit: add the txn's pending sums to the balances, write each once."""
        storage, balances = self._storage, self._balances
        sums: dict[bytes, list[Decimal]] = storage.txn_cache(_PENDING)
        # The decoded balances as committed (only Ledger writes them): no read-back.
        known: dict[bytes, _Balance] = storage.txn_cache(_BALANCES)
        pack = _packer().pack
        with localcontext(_EXACT):
            for name, (signed, quantity) in sums.items():
                old = known.get(name)
                if old is None:
                    raw = t.get(name, db=balances)
                    if raw is None:
                        old = (ZERO, ZERO)
                    else:
                        value, held = msgpack.unpackb(raw)
                        old = (_dec(value), _dec(held))
                new = known[name] = (old[0] + signed, old[1] + quantity)
                t.put(name, pack([str(new[0]), str(new[1])]), db=balances)
        sums.clear()  # kept only when this txn commits; an abort empties every cache

    def balances(self) -> dict[str, tuple[Decimal, Decimal]]:
        """``{account: (value balance (debit positive), quantity)}``."""

        def op(t: Any) -> dict[str, tuple[Decimal, Decimal]]:
            out = {}
            for key, raw in t.cursor(db=self._balances):
                value, quantity = msgpack.unpackb(bytes(raw), raw=False)
                out[bytes(key).decode()] = (_dec(value), _dec(quantity))
            return out

        return self._storage.read(op)

    def trial_balance(self) -> dict[str, Decimal]:
        """Total debits and credits over every transaction (equal when the books balance)."""

        def op(t: Any) -> dict[str, Decimal]:
            debits = credits = ZERO
            for _, raw in t.cursor(db=self._txns):
                for _account, side, value, _qty in msgpack.unpackb(bytes(raw), raw=False)[
                    "postings"
                ]:
                    if side == "debit":
                        debits = _EXACT.add(debits, _dec(value))
                    else:
                        credits = _EXACT.add(credits, _dec(value))
            return {
                "debits": debits,
                "credits": credits,
                "difference": _EXACT.subtract(debits, credits),
            }

        return self._storage.read(op)

    def trial_balances(self) -> dict[str, dict[str, Decimal]]:
        """:meth:`trial_balance` per valuation currency (a fill's quote; ``""``: unstated).

        Each is zero when the books balance: every transaction balances in
        its own currency, so currencies never offset each other's errors.
        """

        def op(t: Any) -> dict[str, dict[str, Decimal]]:
            sums: dict[str, list[Decimal]] = {}
            for _, raw in t.cursor(db=self._txns):
                record = msgpack.unpackb(bytes(raw), raw=False)
                acc = sums.setdefault(str(record.get("currency") or ""), [ZERO, ZERO])
                for _account, side, value, _qty in record["postings"]:
                    i = 0 if side == "debit" else 1
                    acc[i] = _EXACT.add(acc[i], _dec(value))
            return {
                currency: {"debits": d, "credits": c, "difference": _EXACT.subtract(d, c)}
                for currency, (d, c) in sorted(sums.items())
            }

        return self._storage.read(op)

    def holdings(self) -> dict[str, Decimal]:
        """Quantity per asset from the ``assets:`` accounts (what the venue should hold)."""
        return {
            account.split(":", 1)[1]: quantity
            for account, (_, quantity) in self.balances().items()
            if account.startswith("assets:")
        }

    def verify(self, venue_totals: Mapping[str, Decimal]) -> dict[str, Decimal]:
        """Differences ledger - venue per asset (empty when they agree)."""
        ours = self.holdings()
        diff = {}
        for asset in sorted(set(ours) | set(venue_totals)):
            delta = _EXACT.subtract(ours.get(asset, ZERO), Decimal(venue_totals.get(asset, ZERO)))
            if delta:
                diff[asset] = delta
        return diff
