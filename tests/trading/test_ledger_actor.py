"""LedgerActor: posts order fills once, shows the books; ledger_fill_from converts fills."""

from __future__ import annotations

from decimal import Decimal

import pytest

from phalanx import ActorSystem
from phalanx.actors._ledger_actor import (
    GetBalances,
    GetTrialBalance,
    PostFill,
    ledger_fill_from,
    start_ledger,
)
from phalanx.actors._position_terms import InvalidFill
from phalanx.protocols import decode, encode
from phalanx.protocols.trading import OrderFill
from phalanx.storage import Fill, Ledger

D = Decimal


def _fill(trade_id: str = "7", side: str = "buy", fee: str = "0.5") -> OrderFill:
    return OrderFill(
        trade_id=trade_id,
        order_req_id="s-1",
        exchange_order_id="x-1",
        symbol="BTC/USDT",
        side=side,  # type: ignore[arg-type]
        price=D(50),
        amount=D(2),
        fee=D(fee),
        fee_currency="USDT",
    )


def test_ledger_fill_from_names_the_fill_by_symbol_and_trade_id() -> None:
    assert ledger_fill_from(_fill()) == Fill(
        fill_id="BTC-USDT:7",
        side="buy",
        base="BTC",
        quote="USDT",
        quantity=D(2),
        price=D(50),
        fee=D("0.5"),
        order_id="x-1",
        fee_currency="USDT",
    )
    assert ledger_fill_from(_fill(), "BTC", "USDT") == ledger_fill_from(_fill())


def test_ledger_fill_from_keeps_the_fee_currency_and_refuses_an_unpayable_fee_or_a_wrong_pair() -> (
    None
):
    in_base = _fill(fee="0.002").model_copy(update={"fee_currency": "BTC"})
    assert (ledger_fill_from(in_base).fee, ledger_fill_from(in_base).fee_currency) == (
        D("0.002"),
        "BTC",
    )
    all_of_it = _fill(fee="2").model_copy(update={"fee_currency": "BTC"})  # amount is 2
    with pytest.raises(InvalidFill, match="leaves nothing of the 2 BTC bought"):
        ledger_fill_from(all_of_it)
    with pytest.raises(InvalidFill, match="negative fee"):
        ledger_fill_from(_fill(fee="-0.1"))
    with pytest.raises(InvalidFill, match="does not match"):
        ledger_fill_from(_fill(), "ETH", "USDT")
    zero_fee_elsewhere = _fill(fee="0").model_copy(update={"fee_currency": "BNB"})
    assert ledger_fill_from(zero_fee_elsewhere).fee == 0
    assert ledger_fill_from(zero_fee_elsewhere).fee_currency is None  # booked as no fee


def test_post_fill_posts_once_and_the_books_balance(system: ActorSystem) -> None:
    start_ledger(system)
    assert system.ask("/ledger", PostFill(fill=_fill())) is True
    assert system.ask("/ledger", PostFill(fill=_fill())) is False  # a replay
    assert system.ask("/ledger", PostFill(fill=_fill("8", side="sell"))) is True
    tb = system.ask("/ledger", GetTrialBalance())
    assert tb["difference"] == 0
    assert tb["debits"] == D(100) + D("0.5") + D(100) - D("0.5") + D("0.5")
    balances = system.ask("/ledger", GetBalances())
    assert balances["assets:BTC"][1] == 0
    assert balances["expenses:fees:USDT"] == (D(1), D(1))
    # The same fill posted directly (another thread, another path) is still a replay.
    assert Ledger(system.storage).post_fill(ledger_fill_from(_fill())) is False


def test_introspect_shows_the_trial_balance_and_counts(system: ActorSystem) -> None:
    start_ledger(system)
    system.ask("/ledger", PostFill(fill=_fill()))
    system.ask("/ledger", PostFill(fill=_fill()))
    state = system.inspect("/ledger")["state"]
    assert state["balanced"] is True
    assert state["trial_balance"]["difference"] in ("0", "0.0")
    assert state["balances"]["assets:BTC"] == {"value": "100", "quantity": "2"}
    assert (state["posted"], state["replayed"]) == (1, 1)


def test_post_fill_round_trips_through_the_codec() -> None:
    message = PostFill(fill=_fill())
    assert decode(encode(message)) == message


def test_a_bad_fill_is_refused_and_the_ledger_actor_keeps_running(system: ActorSystem) -> None:
    start_ledger(system)
    unpayable = _fill(fee="2").model_copy(update={"fee_currency": "BTC"})  # all of the buy
    with pytest.raises(InvalidFill):
        system.ask("/ledger", PostFill(fill=unpayable))
    assert system.ask("/ledger", PostFill(fill=_fill())) is True
    assert system.stats("/ledger")["incarnation"] == 1


def test_a_symbol_without_a_quote_is_an_invalid_fill() -> None:
    with pytest.raises(InvalidFill, match="BASE/QUOTE"):
        ledger_fill_from(_fill().model_copy(update={"symbol": "BTCUSDT"}))
