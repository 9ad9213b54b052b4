"""The double-entry ledger in LMDB (DESIGN section 5).

Pure part: :func:`plan_fill` turns a fill into a balanced :class:`Transaction`.
I/O part: :class:`Ledger` commits the postings, the account balances and the
fill's idempotency marker in ONE LMDB write transaction, so replaying a fill
never posts it twice and a crash never leaves half a transaction.

Accounts are named ``assets:<ASSET>`` (holdings), ``expenses:fees:<QUOTE>``
and ``equity:opening:<ASSET>`` (opening balances). Every posting carries a
``value`` in the quote currency (what must balance) and a ``quantity`` in its
account's own asset (what reconciles with the venue):
- buy:  debit assets:BASE (value notional, +qty), debit expenses:fees (fee),
        credit assets:QUOTE (value and quantity notional + fee);
- sell: debit assets:QUOTE (notional - fee), debit expenses:fees (fee),
        credit assets:BASE (value notional, -qty).
Invariant: in every transaction, sum(debit values) == sum(credit values).
Sells are valued at their notional, not cost basis: realized PnL belongs to
the Position actor, not to this ledger.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal

import msgpack

from phalanx.errors import StorageError
from phalanx.storage._env import Storage

__all__ = ["Fill", "Ledger", "Posting", "Transaction", "plan_fill", "plan_opening"]

ZERO = Decimal(0)
_TXNS, _BALANCES, _MARKERS = "ledger", "ledger_balances", "ledger_fills"


@dataclass(frozen=True)
class Fill:
    """One execution at the venue (a trade), identified by ``fill_id``."""

    fill_id: str  # e.g. "paper:BTCUSDT:123": unique per venue trade
    side: Literal["buy", "sell"]
    base: str
    quote: str
    quantity: Decimal
    price: Decimal
    fee: Decimal  # in the quote asset
    order_id: str | None = None


@dataclass(frozen=True)
class Posting:
    """One leg: ``side`` is debit or credit; ``value`` in the quote currency."""

    account: str
    side: Literal["debit", "credit"]
    value: Decimal
    quantity: Decimal  # signed change of the account's own asset


@dataclass(frozen=True)
class Transaction:
    """Balanced postings for one event, with the key that makes it idempotent."""

    key: str
    postings: tuple[Posting, ...]
    memo: str = ""

    def balanced(self) -> bool:
        debits = sum((p.value for p in self.postings if p.side == "debit"), ZERO)
        credits = sum((p.value for p in self.postings if p.side == "credit"), ZERO)
        return debits == credits


def plan_fill(fill: Fill) -> Transaction:
    """The balanced postings of a fill (pure: no I/O)."""
    if fill.quantity <= 0 or fill.price <= 0 or fill.fee < 0:
        raise ValueError(f"fill {fill.fill_id}: quantity and price must be > 0, fee >= 0")
    notional = fill.quantity * fill.price
    base, cash, fees = f"assets:{fill.base}", f"assets:{fill.quote}", f"expenses:fees:{fill.quote}"
    if fill.side == "buy":
        postings = (
            Posting(base, "debit", notional, fill.quantity),
            Posting(fees, "debit", fill.fee, fill.fee),
            Posting(cash, "credit", notional + fill.fee, -(notional + fill.fee)),
        )
    else:
        postings = (
            Posting(cash, "debit", notional - fill.fee, notional - fill.fee),
            Posting(fees, "debit", fill.fee, fill.fee),
            Posting(base, "credit", notional, -fill.quantity),
        )
    return Transaction(f"fill:{fill.fill_id}", postings, memo=f"{fill.side} {fill.order_id or ''}")


def plan_opening(
    key: str, holdings: Mapping[str, Decimal], prices: Mapping[str, Decimal]
) -> Transaction:
    """Opening balances: debit each asset, credit equity, valued at ``prices`` (quote=1)."""
    postings: list[Posting] = []
    for asset, quantity in sorted(holdings.items()):
        value = quantity * prices.get(asset, Decimal(1))
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
        if not txn.balanced():
            raise StorageError(f"ledger: transaction {txn.key} does not balance")
        record = msgpack.packb(
            {
                "key": txn.key,
                "memo": txn.memo,
                "postings": [
                    [p.account, p.side, str(p.value), str(p.quantity)] for p in txn.postings
                ],
            },
            use_bin_type=True,
        )
        marker = txn.key.encode()
        txns, balances, markers = self._txns, self._balances, self._markers

        def op(t: Any) -> bool:
            # Invariant: marker, postings and balances commit together or not at all.
            if not t.put(marker, b"1", db=markers, overwrite=False):
                return False  # already posted: a replay
            t.put(marker, record, db=txns)
            for p in txn.postings:
                name = p.account.encode()
                raw = t.get(name, db=balances)
                value, quantity = msgpack.unpackb(raw, raw=False) if raw is not None else ["0", "0"]
                signed = p.value if p.side == "debit" else -p.value
                t.put(
                    name,
                    msgpack.packb([str(_dec(value) + signed), str(_dec(quantity) + p.quantity)]),
                    db=balances,
                )
            return True

        return bool(self._storage.write_now(op))

    def post_fill(self, fill: Fill) -> bool:
        """Post a fill; replaying the same ``fill_id`` posts nothing and returns False."""
        return self.post(plan_fill(fill))

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
                        debits += _dec(value)
                    else:
                        credits += _dec(value)
            return {"debits": debits, "credits": credits, "difference": debits - credits}

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
            delta = ours.get(asset, ZERO) - Decimal(venue_totals.get(asset, ZERO))
            if delta:
                diff[asset] = delta
        return diff
