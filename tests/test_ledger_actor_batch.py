"""LedgerActor PostFills: many fills in one commit, one reply per fill, all or nothing."""

from __future__ import annotations

from decimal import Decimal

import pytest

from phalanx import ActorSystem
from phalanx.actors._ledger_actor import (
    LEDGER,
    GetTrialBalance,
    PostFill,
    PostFills,
    ledger_fill_from,
    start_ledger,
)
from phalanx.actors._position_terms import InvalidFill
from phalanx.protocols import decode, encode
from phalanx.protocols.trading import OrderFill
from phalanx.storage import Ledger

D = Decimal


def _fill(
    trade_id: str, side: str = "buy", fee_currency: str = "USDT", fee: str = "0.5"
) -> OrderFill:
    return OrderFill(
        trade_id=trade_id,
        order_req_id="s-1",
        exchange_order_id="x-1",
        symbol="BTC/USDT",
        side=side,  # type: ignore[arg-type]
        price=D(50),
        amount=D(2),
        fee=D(fee),
        fee_currency=fee_currency,
    )


def test_post_fills_replies_once_per_fill_and_counts_replays(system: ActorSystem) -> None:
    start_ledger(system)
    assert system.ask(LEDGER, PostFill(fill=_fill("1"))) is True
    fills = (_fill("1"), _fill("2", "sell"), _fill("2", "sell"), _fill("3"))
    assert system.ask(LEDGER, PostFills(fills=fills)) == [False, True, False, True]
    assert system.ask(LEDGER, GetTrialBalance())["difference"] == 0
    state = system.inspect(LEDGER)["state"]
    assert (state["posted"], state["replayed"]) == (3, 2)
    ledger = Ledger(system.storage)
    assert not ledger.post_fill(ledger_fill_from(_fill("3")))  # the same markers


def test_post_fills_with_an_invalid_fill_posts_none_and_the_actor_survives(
    system: ActorSystem,
) -> None:
    start_ledger(system)
    fills = (_fill("1"), _fill("2", fee_currency="BTC", fee="2"))  # a fee of the whole buy
    with pytest.raises(InvalidFill, match="leaves nothing"):
        system.ask(LEDGER, PostFills(fills=fills))
    assert not Ledger(system.storage).has_fill("BTC-USDT:1")
    assert system.ask(LEDGER, PostFills(fills=fills[:1])) == [True]
    assert system.stats(LEDGER)["incarnation"] == 1


def test_post_fills_round_trips_through_the_codec() -> None:
    message = PostFills(fills=(_fill("1"), _fill("2", "sell")))
    assert decode(encode(message)) == message
