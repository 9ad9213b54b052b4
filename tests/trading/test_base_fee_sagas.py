"""Buy and sell sagas against a paper venue that charges buys in the base (Binance without BNB).

End to end over ccxt: the venue reports ``commissionAsset`` = BTC on buys,
the Order actor journals those fills, the Position holds the net quantity,
the Ledger books the fee in BTC, and DESIGN section 8 holds: ledger ==
venue, positions == venue fills (net of base fees), trial balance zero.
A restart reconciles cleanly (and adopts a base-fee fill made while the node
was down), and ``phalanx replay`` rebuilds the same books.
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest

from phalanx.actors import BUY, SELL, buy_input, sell_input
from phalanx.actors.saga import await_saga, start_saga
from phalanx.actors.venue import PaperVenue
from phalanx.cli import main
from phalanx.storage._positions import PositionStore
from tests.chaos import ACCOUNT, trading_node, venue_totals, verdict

D = Decimal
TICK = D("0.01")


@pytest.fixture
def venue() -> Iterator[PaperVenue]:
    """A paper venue charging buys in the base; prices move only when stepped."""
    with PaperVenue(seed=13) as v:
        v.engine.fee_in_base = True
        yield v


def _book(venue: PaperVenue) -> tuple[Decimal, Decimal]:
    return venue.engine.best_prices("BTCUSDT")


def _base_fees(venue: PaperVenue) -> Decimal:
    return sum(
        (D(t["commission"]) for t in venue.engine.my_trades(ACCOUNT, "BTCUSDT")
         if t["commissionAsset"] == "BTC"),
        D(0),
    )  # fmt: skip


def test_the_venue_option_charges_a_buy_in_the_base_and_a_sell_in_the_quote(
    venue: PaperVenue,
) -> None:
    before = venue_totals(venue)
    reply = venue.engine.place(ACCOUNT, {"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET",
                                         "quantity": "0.001"})  # fmt: skip
    (fill,) = reply["fills"]
    assert (fill["commission"], fill["commissionAsset"]) == ("0.000001", "BTC")
    after = venue_totals(venue)
    assert after["BTC"] - before["BTC"] == D("0.000999")
    assert before["USDT"] - after["USDT"] == D(fill["price"]) * D("0.001")  # no quote fee
    bid, _ = _book(venue)
    venue.engine.place(ACCOUNT, {"symbol": "BTCUSDT", "side": "SELL", "type": "LIMIT",
                                 "quantity": "0.0005", "price": str(bid)})  # fmt: skip
    trades = venue.engine.my_trades(ACCOUNT, "BTCUSDT")
    assert [t["commissionAsset"] for t in trades] == ["BTC", "USDT"]


def test_buy_sagas_with_base_fees_end_with_ledger_and_positions_equal_to_the_venue(
    tmp_path: Path, venue: PaperVenue
) -> None:
    var = tmp_path / "var"
    ids = []
    with trading_node(var, venue) as node:
        assert node.reconciliation is not None
        assert node.reconciliation.ok
        for i in range(4):
            _, ask = _book(venue)
            saga_id = f"base-fee-buy-{i}"
            order = buy_input("BTC/USDT", D("0.002"), (ask * D("1.001")).quantize(TICK),
                              filters=node.filters["BTC/USDT"])  # fmt: skip
            start_saga(node.system, BUY, saga_id, order)
            ids.append(saga_id)
        bid, _ = _book(venue)
        sell = sell_input("BTC/USDT", D("0.003"), (bid * D("0.999")).quantize(TICK))
        start_saga(node.system, SELL, "base-fee-sell", sell)
        ids.append("base-fee-sell")
        snaps = [await_saga(node.system, s, timeout=60.0) for s in ids]

        assert [s.status for s in snaps] == ["completed"] * len(ids), snaps
        v = verdict(node, venue, ids)
        assert v["duplicates"] == {}
        assert v["trial_difference"] == 0
        assert v["ledger_vs_venue"] == {}, v["verdict"]
        assert v["position_gap"] == {}, v["verdict"]
        fees = _base_fees(venue)
        assert fees == 4 * D("0.000002")  # every buy paid 0.1% in BTC
        position = PositionStore(node.system.storage).load("BTC/USDT")
        assert position.quantity == 4 * D("0.002") - fees - D("0.003")
        assert node.ledger.balances()["expenses:fees:BTC"][1] == fees
        assert node.ledger_balanced()

    # A buy made while the node is down, paying in BTC, is adopted on restart.
    _, ask = _book(venue)
    venue.engine.place(ACCOUNT, {"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT",
                                 "quantity": "0.001", "price": str(ask),
                                 "newClientOrderId": "manual-base-fee"})  # fmt: skip
    with trading_node(var, venue) as node:
        result = node.reconciliation
        assert result is not None
        assert result.ok, result
        assert result["fills_applied"] == 1
        assert node.ledger.verify(venue_totals(venue)) == {}
        v = verdict(node, venue, ids)
        assert v["position_gap"] == {}, v["verdict"]
        assert PositionStore(node.system.storage).load("BTC/USDT").quantity == (
            position.quantity + D("0.000999")
        )

    assert main(["replay", "--var-dir", str(var)]) == 0
