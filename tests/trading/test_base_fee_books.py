"""Fees in the base asset (Binance without BNB) and in a third asset: books, positions, replay.

The ledger must stay balanced per currency and hold exactly what the venue
holds; the position must hold the net quantity; a replayed fill changes
nothing. The venue side is the paper venue's matching engine itself.
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal, localcontext
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from phalanx import ActorSystem
from phalanx.actors._ledger_actor import ledger_fill_from
from phalanx.actors._position import Position
from phalanx.actors._position_model import PositionState
from phalanx.actors._position_terms import position_terms
from phalanx.actors._replay import replay
from phalanx.actors._replay_model import LiveState, ReplaySources
from phalanx.actors.venue import MatchingEngine
from phalanx.protocols.trading import ApplyFill, GetPosition, OrderFill, PositionSnapshot
from phalanx.storage import Fill, Ledger, Storage, plan_fill, plan_opening
from phalanx.storage._ledger_encode import _entry, _fill_entry
from phalanx.storage._ledger_fill import _EXACT
from phalanx.storage._positions import PositionStore
from phalanx.testing import check_ledger_balanced, check_ledger_matches_venue
from tests.trading._rig import quick_system

D = Decimal
ACCOUNT = "acct"


@pytest.fixture
def storage(tmp_path: Path) -> Iterator[Storage]:
    with Storage(tmp_path / "state.lmdb", sync=False) as st:
        yield st


def _fill(
    trade_id: str,
    side: str,
    amount: str,
    price: str,
    fee: str,
    fee_currency: str | None,
    symbol: str = "BTC/USDT",
) -> OrderFill:
    return OrderFill(
        trade_id=trade_id, order_req_id=f"o-{trade_id}", exchange_order_id=f"x-{trade_id}",
        symbol=symbol, side=side, price=D(price), amount=D(amount),  # type: ignore[arg-type]
        fee=D(fee), fee_currency=fee_currency, timestamp=int(trade_id) if trade_id.isdigit() else 1,
    )  # fmt: skip


def _engine_fills(engine: MatchingEngine, symbol: str = "BTCUSDT") -> list[OrderFill]:
    """The account's venue trades as the node would see them (Binance myTrades fields)."""
    market = engine.market(symbol)
    return [
        _fill(str(t["id"]), "buy" if t["isBuyer"] else "sell", t["qty"], t["price"],
              t["commission"], t["commissionAsset"], f"{market.base}/{market.quote}")
        for t in engine.my_trades(ACCOUNT, symbol)
    ]  # fmt: skip


def _totals(engine: MatchingEngine) -> dict[str, Decimal]:
    return {a: D(v["free"]) + D(v["locked"]) for a, v in engine.balances(ACCOUNT).items()}


def _opened(storage: Storage, engine: MatchingEngine) -> Ledger:
    ledger = Ledger(storage)
    ledger.post(plan_opening("paper", _totals(engine), {"BTC": D(43000), "ETH": D(2300)}))
    return ledger


def _by_account(fill: OrderFill) -> dict[str, tuple[str, Decimal, Decimal]]:
    return {
        p.account: (p.side, p.value, p.quantity) for p in plan_fill(ledger_fill_from(fill)).postings
    }


# --- postings -------------------------------------------------------------------------


def test_a_buy_paying_its_fee_in_the_base_debits_the_net_quantity_at_the_fill_price() -> None:
    legs = _by_account(_fill("1", "buy", "0.001", "43000", "0.000001", "BTC"))
    assert legs == {
        "assets:BTC": ("debit", D("42.957"), D("0.000999")),  # 0.000999 BTC * 43000
        "expenses:fees:BTC": ("debit", D("0.043"), D("0.000001")),  # valued at the fill price
        "assets:USDT": ("credit", D("43"), D("-43")),  # the notional, no fee on top
    }


def test_a_sell_paying_its_fee_in_the_quote_is_booked_as_before() -> None:
    legs = _by_account(_fill("2", "sell", "0.001", "43000", "0.043", "USDT"))
    assert legs == {
        "assets:USDT": ("debit", D("42.957"), D("42.957")),
        "expenses:fees:USDT": ("debit", D("0.043"), D("0.043")),
        "assets:BTC": ("credit", D("43"), D("-0.001")),
    }


def test_a_sell_paying_its_fee_in_the_base_delivers_quantity_plus_fee() -> None:
    legs = _by_account(_fill("3", "sell", "0.001", "43000", "0.000001", "BTC"))
    assert legs == {
        "assets:USDT": ("debit", D("43"), D("43")),
        "expenses:fees:BTC": ("debit", D("0.043"), D("0.000001")),
        "assets:BTC": ("credit", D("43.043"), D("-0.001001")),
    }


def test_a_fee_in_a_third_asset_moves_that_asset_only_in_quantity() -> None:
    legs = _by_account(_fill("4", "buy", "0.001", "43000", "0.0001", "BNB"))
    assert legs == {
        "assets:BTC": ("debit", D("43"), D("0.001")),
        "assets:USDT": ("credit", D("43"), D("-43")),
        "expenses:fees:BNB": ("debit", D(0), D("0.0001")),  # no BNB price in the fill: unvalued
        "assets:BNB": ("credit", D(0), D("-0.0001")),  # the venue's BNB falls by the fee
    }


_decimals = st.decimals(allow_nan=False, allow_infinity=False, min_value=D("1e-12"),
                        max_value=D(10**9))  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(
    side=st.sampled_from(["buy", "sell"]),
    qty=_decimals,
    price=_decimals,
    fee_share=st.one_of(st.just(D(0)), st.decimals(min_value=D("1e-9"), max_value=D("0.999"))),
    currency=st.sampled_from([None, "USDT", "BTC", "BNB"]),
)
def test_the_fast_encoding_equals_the_planned_transaction_for_a_fee_in_any_asset(
    side: str, qty: Decimal, price: Decimal, fee_share: Decimal, currency: str | None
) -> None:
    fee = qty * fee_share  # below the quantity, so a base fee of a buy stays payable
    fill = Fill("f:1", side, "BTC", "USDT", qty, price, fee, "o", currency)  # type: ignore[arg-type]
    with localcontext(_EXACT):
        fast = _fill_entry(fill)
    planned = _entry(plan_fill(fill))
    assert fast == planned  # same marker, record bytes and balance deltas
    assert plan_fill(fill).balanced()


def test_both_encodings_refuse_a_base_fee_a_buy_cannot_pay() -> None:
    fill = Fill("f:2", "buy", "BTC", "USDT", D("0.001"), D(1), D("0.001"), None, "BTC")
    with pytest.raises(ValueError, match="must be below the quantity bought"):
        plan_fill(fill)
    with localcontext(_EXACT), pytest.raises(ValueError, match="must be below the quantity"):
        _fill_entry(fill)


# --- ledger against the paper venue's own balances --------------------------------------


def test_a_base_fee_buy_then_a_quote_fee_sell_keep_the_books_balanced_and_equal_to_the_venue(
    storage: Storage,
) -> None:
    engine = MatchingEngine(3, accounts=(ACCOUNT,), fee_in_base=True)
    ledger = _opened(storage, engine)
    _, ask = engine.best_prices("BTCUSDT")
    engine.place(ACCOUNT, {"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT",
                           "quantity": "0.001", "price": str(ask)})  # fmt: skip
    (buy,) = _engine_fills(engine)
    assert (buy.fee_currency, buy.fee) == ("BTC", D("0.000001"))  # 0.1% taker of 0.001 BTC
    assert _totals(engine)["BTC"] == D(1) + D("0.000999")  # Binance: receive amount - fee
    assert ledger.post_fill(ledger_fill_from(buy))
    assert ledger.verify(_totals(engine)) == {}

    bid, _ = engine.best_prices("BTCUSDT")
    engine.place(ACCOUNT, {"symbol": "BTCUSDT", "side": "SELL", "type": "LIMIT",
                           "quantity": "0.0005", "price": str(bid)})  # fmt: skip
    sell = _engine_fills(engine)[1]
    assert sell.fee_currency == "USDT"  # a sell pays in the asset it receives
    assert ledger.post_fills([ledger_fill_from(sell), ledger_fill_from(buy)]) == [True, False]

    assert ledger.verify(_totals(engine)) == {}
    assert ledger.trial_balance()["difference"] == 0
    assert {c: tb["difference"] for c, tb in ledger.trial_balances().items()} == {
        "": 0,  # the opening
        "USDT": 0,
    }
    assert check_ledger_balanced(ledger).ok
    assert check_ledger_matches_venue(ledger, _totals(engine)).ok


def test_a_replayed_base_fee_fill_posts_nothing_twice(storage: Storage) -> None:
    ledger = Ledger(storage)
    fill = ledger_fill_from(_fill("5", "buy", "0.002", "43000", "0.000002", "BTC"))
    assert ledger.post_fill(fill)
    before = ledger.balances()
    assert not ledger.post_fill(fill)
    assert ledger.post_fills([fill, fill]) == [False, False]
    assert ledger.balances() == before
    assert ledger.holdings()["BTC"] == D("0.001998")


def test_a_bnb_fee_lowers_the_bnb_held_and_the_books_still_balance(storage: Storage) -> None:
    ledger = Ledger(storage)
    ledger.post(plan_opening("paper", {"USDT": D(1000), "BNB": D(1)}, {"BNB": D(300)}))
    assert ledger.post_fill(ledger_fill_from(_fill("6", "buy", "0.01", "43000", "0.0003", "BNB")))
    venue = {"USDT": D(1000) - D(430), "BNB": D(1) - D("0.0003"), "BTC": D("0.01")}
    assert ledger.verify(venue) == {}
    assert ledger.balances()["expenses:fees:BNB"] == (D(0), D("0.0003"))
    assert ledger.trial_balance()["difference"] == 0


# --- positions --------------------------------------------------------------------------


def test_position_terms_net_a_base_fee_and_value_it_at_the_fill_price() -> None:
    assert position_terms(_fill("1", "buy", "0.001", "43000", "0.000001", "BTC")) == (
        D("0.000999"), D("0.043"),
    )  # fmt: skip
    assert position_terms(_fill("2", "sell", "0.001", "43000", "0.000001", "BTC")) == (
        D("0.001001"), D("0.043"),
    )  # fmt: skip
    assert position_terms(_fill("3", "sell", "0.001", "43000", "0.043", "USDT")) == (
        D("0.001"), D("0.043"),
    )  # fmt: skip
    assert position_terms(_fill("4", "buy", "0.001", "43000", "0.0001", "BNB")) == (
        D("0.001"), D(0),
    )  # fmt: skip


def _ask(system: ActorSystem, fill: OrderFill) -> PositionSnapshot:
    snap: PositionSnapshot = system.ask("/positions/BTC-USDT", ApplyFill(fill=fill), timeout=5.0)
    return snap


def test_the_position_holds_the_net_quantity_and_a_round_trip_realizes_what_the_quote_lost(
    tmp_path: Path,
) -> None:
    with quick_system(tmp_path / "var", "pos-base-fee") as system:
        system.spawn(Position, "/positions/BTC-USDT", "BTC/USDT", risk_path=None)
        buy = _fill("1", "buy", "0.001", "40000", "0.000001", "BTC")
        snap = _ask(system, buy)
        assert snap.quantity == D("0.000999")  # what the venue credited
        assert snap.average_entry == D(40000)  # the net quantity's price: the fill price
        assert snap.realized_pnl == D("-0.04")  # the fee, 0.000001 BTC at 40000, at once
        assert _ask(system, buy) == snap  # a replay counts nothing
        sell = _fill("2", "sell", "0.000999", "41000", "0.040959", "USDT")  # 0.1% of 40.959
        flat = _ask(system, sell)
        quote_change = -D(40) + D("40.959") - D("0.040959")  # paid 40, received 40.959 - fee
        assert flat.quantity == 0
        assert flat.realized_pnl == quote_change
        assert flat.fees == D("0.04") + D("0.040959")
        bnb = _ask(system, _fill("3", "buy", "0.001", "41000", "0.0001", "BNB"))
        assert (bnb.quantity, bnb.realized_pnl) == (D("0.001"), quote_change)  # no quote cost
        assert system.ask("/positions/BTC-USDT", GetPosition(), timeout=5.0).fills_applied == 3


# --- replay -----------------------------------------------------------------------------


def test_replay_rebuilds_positions_and_balances_booked_with_base_and_bnb_fees(
    storage: Storage,
) -> None:
    fills = [
        _fill("1", "buy", "0.002", "43000", "0.000002", "BTC"),
        _fill("2", "sell", "0.001", "43100", "0.0431", "USDT"),
        _fill("3", "buy", "0.001", "43050", "0.00002", "BNB"),
    ]
    ledger, positions = Ledger(storage), PositionStore(storage)
    opening = plan_opening("paper", {"USDT": D(1000), "BNB": D(1)}, {})
    ledger.post(opening)
    for step, f in enumerate(fills):
        quantity, fee = position_terms(f)  # what the Position actor applies
        positions.apply_fill(f.symbol, f.trade_id, f.side, quantity, f.price, fee, step)
        ledger.post_fill(ledger_fill_from(f))
    records: dict[str, Any] = {
        f.order_req_id: {"order_req_id": f.order_req_id, "symbol": f.symbol, "side": f.side,
                         "fills": {f.trade_id: f.model_dump(mode="json")}}
        for f in fills
    }  # fmt: skip
    lines = [
        {"event": "order_fill", "order_req_id": f.order_req_id, "trade_id": f.trade_id,
         "price": str(f.price), "amount": str(f.amount), "fee": str(f.fee),
         "fee_currency": f.fee_currency}
        for f in fills
    ]  # fmt: skip
    txns = {f"fill:BTC-USDT:{f.trade_id}": {"postings": []} for f in fills}
    txns[opening.key] = {"postings": [[p.account, p.side, str(p.value), str(p.quantity)]
                                      for p in opening.postings]}  # fmt: skip
    sources = ReplaySources(
        records=records, log_fills=lines, ledger_txns=txns,
        applied_at={("BTC/USDT", f.trade_id): float(i) for i, f in enumerate(fills)},
    )  # fmt: skip
    state = positions.load("BTC/USDT")
    live = LiveState(
        positions={"BTC/USDT": state},
        position_fills={"BTC/USDT": frozenset(positions.fills("BTC/USDT"))},
        balances=ledger.balances(),
    )

    report = replay(sources, live)

    assert report.match, report.differences
    assert state.quantity == D("0.002") - D("0.000002") - D("0.001") + D("0.001")
    assert ledger.holdings()["BTC"] == state.quantity
    bad = LiveState(positions={"BTC/USDT": PositionState("BTC/USDT", D("0.002"))},
                    position_fills=live.position_fills, balances=live.balances)  # fmt: skip
    assert any(d.what == "position BTC/USDT quantity" for d in replay(sources, bad).differences)
