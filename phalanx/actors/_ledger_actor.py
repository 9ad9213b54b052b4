"""The LedgerActor at ``/ledger``: messages and introspection over the thread-safe Ledger.

:class:`~phalanx.storage.Ledger` may be posted to from any thread (each post
is one group-committed LMDB transaction, idempotent by fill id); this actor
exists so the shell can ``inspect /ledger`` (trial balance, balances) and so
other actors can post by message.

Messages: :class:`PostFill` -> bool (False for a replayed fill),
:class:`PostFills` -> ``list[bool]`` (many fills, one commit: the actor-level
group commit; all validated before any is written),
:class:`GetTrialBalance` -> ``{debits, credits, difference}`` (Decimal),
:class:`GetBalances` -> ``{account: (value, quantity)}``.

:func:`ledger_fill_from` is the one conversion from an Order actor's
:class:`OrderFill` to a ledger :class:`Fill` (the fill sink uses it, so every
path names a fill the same way: ``fill:<BTC-USDT>:<trade_id>``). Usage::

    ledger = Ledger(system.storage)
    start_ledger(system, ledger)
    ledger.post_fill(ledger_fill_from(order_fill))          # from any thread, or:
    system.ask("/ledger", PostFill(fill=order_fill))         # True once, then False
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from phalanx.actors._position_terms import InvalidFill, check_fee
from phalanx.actors._risk_model import split_symbol
from phalanx.protocols import Message
from phalanx.protocols.trading import OrderFill, symbol_segment
from phalanx.runtime import Actor, ActorSystem, Ref
from phalanx.storage import Fill, Ledger
from phalanx.supervision import Retry

__all__ = [
    "LEDGER",
    "GetBalances",
    "GetTrialBalance",
    "LedgerActor",
    "PostFill",
    "PostFills",
    "ledger_fill_from",
    "start_ledger",
]

LEDGER = "/ledger"


class PostFill(Message):
    """Post one order fill to the ledger; replies True, or False for a replay."""

    type_name = "trading.post_fill"
    fill: OrderFill
    base: str | None = None  # default: from fill.symbol
    quote: str | None = None


class PostFills(Message):
    """Post many order fills in ONE commit; replies one bool per fill, in order.

    False for a fill posted before or earlier in the list. All or nothing: an
    invalid fill (``InvalidFill``) fails the message and posts none of them.
    One actor turn and one fsync for them all: bench/ledger.py measured
    ~30k postings/s with 100 fills per message against ~1k with one
    :class:`PostFill` per fill, so a caller holding several fills sends them
    together.
    """

    type_name = "trading.post_fills"
    fills: tuple[OrderFill, ...]
    base: str | None = None  # default: from each fill's symbol
    quote: str | None = None


class GetTrialBalance(Message):
    """Ask ``/ledger`` for ``{debits, credits, difference}``."""

    type_name = "trading.get_trial_balance"


class GetBalances(Message):
    """Ask ``/ledger`` for ``{account: (value, quantity)}``."""

    type_name = "trading.get_balances"


def ledger_fill_from(
    order_fill: OrderFill, base: str | None = None, quote: str | None = None
) -> Fill:
    """The ledger :class:`Fill` of an order fill, its fee in whichever asset paid it.

    ``fill_id`` is ``<BTC-USDT>:<trade_id>``: venue trade ids are unique per
    symbol, so the symbol scopes them. The fee keeps its currency (quote,
    base or a third asset such as BNB; the postings of each are in
    :mod:`phalanx.storage._ledger_fill`). Raises :class:`InvalidFill`
    (permanent) for bad numbers, a negative fee or a base fee a buy cannot
    pay: the same fills the Position refuses.
    """
    try:
        sym_base, sym_quote = split_symbol(order_fill.symbol)
    except ValueError as exc:
        raise InvalidFill(f"fill {order_fill.trade_id}: {exc}") from None
    base, quote = base or sym_base, quote or sym_quote
    if quote != sym_quote or base != sym_base:
        raise InvalidFill(
            f"fill {order_fill.trade_id}: {base}/{quote} does not match {order_fill.symbol}"
        )
    if order_fill.amount <= 0 or order_fill.price <= 0:
        raise InvalidFill(f"fill {order_fill.trade_id}: amount and price must be > 0")
    check_fee(order_fill, base)  # the Position's check: both refuse the same fills
    return Fill(
        fill_id=f"{symbol_segment(order_fill.symbol)}:{order_fill.trade_id}",
        side=order_fill.side,
        base=base,
        quote=quote,
        quantity=order_fill.amount,
        price=order_fill.price,
        fee=order_fill.fee,
        order_id=order_fill.exchange_order_id or order_fill.order_req_id,
        fee_currency=order_fill.fee_currency if order_fill.fee else None,
    )


class LedgerActor(Actor):
    """A view over the node's Ledger; posts by message, shows the books in ``introspect``."""

    def __init__(self, ledger: Ledger | None = None) -> None:
        super().__init__()
        self._given = ledger

    def on_start(self) -> None:
        self.ledger = self._given or Ledger(self.system.storage)
        self.posted = 0
        self.replayed = 0

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, PostFill):
            posted = self.ledger.post_fill(
                ledger_fill_from(message.fill, message.base, message.quote)
            )
            if posted:
                self.posted += 1
            else:
                self.replayed += 1
            return posted
        if isinstance(message, PostFills):
            fills = [ledger_fill_from(f, message.base, message.quote) for f in message.fills]
            results = self.ledger.post_fills(fills)
            done = sum(results)
            self.posted += done
            self.replayed += len(results) - done
            return results
        if isinstance(message, GetTrialBalance):
            return self.ledger.trial_balance()
        if isinstance(message, GetBalances):
            return self.ledger.balances()
        return super().on_receive(message)

    def introspect(self) -> dict[str, Any]:
        tb = self.ledger.trial_balance()
        return {
            "class": "LedgerActor",
            "trial_balance": {k: str(v) for k, v in tb.items()},
            "balanced": tb["difference"] == Decimal(0),
            "balances": {
                account: {"value": str(v), "quantity": str(q)}
                for account, (v, q) in sorted(self.ledger.balances().items())
            },
            "posted": self.posted,
            "replayed": self.replayed,
        }


def start_ledger(system: ActorSystem, ledger: Ledger | None = None, *, path: str = LEDGER) -> Ref:
    """Spawn the LedgerActor at ``/ledger`` over ``ledger`` (default: a new one on storage)."""
    return system.spawn(
        LedgerActor,
        path,
        ledger,
        retry=Retry(max_attempts=5, backoff="exponential", base=0.05, max=1.0),
    )
