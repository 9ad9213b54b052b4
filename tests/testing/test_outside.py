"""The verdict from outside the node: a readonly Storage and the venue over HTTP."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import ccxt

from phalanx.actors import BUY, buy_input, start_trading
from phalanx.actors.order import client_order_id
from phalanx.actors.saga import await_saga, start_saga
from phalanx.actors.venue import PaperVenue
from phalanx.storage import Storage
from phalanx.testing import (
    FAST_ORDER_OPTIONS,
    VenueState,
    check_all,
    make_system,
    trading_config,
)


def test_venue_state_over_http_equals_the_engine_view(paper_venue: PaperVenue) -> None:
    exchange = ccxt.binance(paper_venue.ccxt_config())
    exchange.create_order("BTC/USDT", "market", "buy", 0.003, params={"clientOrderId": "a-1"})
    exchange.create_order("ETH/USDT", "market", "sell", 0.5, params={"clientOrderId": "b-1"})
    fetched = VenueState.fetch(paper_venue.url)
    local = VenueState.of(paper_venue)
    assert fetched == local
    assert fetched.fills == {"BTC/USDT": Decimal("0.003"), "ETH/USDT": Decimal("-0.5")}
    assert [o["clientOrderId"] for o in fetched.accepted] == ["a-1", "b-1"]


def test_a_stopped_node_is_judged_from_its_readonly_storage_and_the_venue(
    tmp_path: Path, paper_venue: PaperVenue
) -> None:
    var = tmp_path / "var"
    ask = Decimal(paper_venue.engine.ticker("BTCUSDT")["askPrice"])
    with make_system(var) as system:
        node = start_trading(system, trading_config(), paper_venue,
                             order_options=FAST_ORDER_OPTIONS)  # fmt: skip
        for i in range(3):
            start_saga(system, BUY, f"out-{i}", buy_input("BTC/USDT", Decimal("0.001"), ask * 2))
        for i in range(3):
            assert await_saga(system, f"out-{i}", timeout=30.0).status == "completed"
        inside = check_all(system, paper_venue)
    assert inside.ok, inside.dumps(indent=1)
    storage = Storage(var / "state.lmdb", readonly=True)
    try:
        outside = check_all(storage, VenueState.fetch(paper_venue.url))
        assert outside.ok, outside.dumps(indent=1)
        assert "conservation" not in outside.invariants  # only a live system counts messages
        assert {n: r.details for n, r in outside.invariants.items()} == {
            n: r.details for n, r in inside.invariants.items() if n != "conservation"
        }
        # A second placement of one intent, made behind the node's back, is caught from outside.
        exchange = ccxt.binance(paper_venue.ccxt_config())
        exchange.create_order("BTC/USDT", "market", "buy", 0.001,
                              params={"clientOrderId": client_order_id("out-1", 1)})  # fmt: skip
        caught = check_all(storage, VenueState.fetch(paper_venue.url))
        duplicates = caught.invariants["no_duplicate_intents"].details["duplicates"]
        assert list(duplicates) == ["out-1"]
        assert not caught.ok
    finally:
        storage.close()
    assert node.reconciliation is not None
