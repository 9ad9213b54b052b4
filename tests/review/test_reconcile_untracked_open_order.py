"""A live venue order whose record is terminal must be tracked after reconciliation.

Reconciliation matched every open venue order to a record by exchange id or
client id and adopted only the unmatched ones. An order whose record is
terminal (the intent was abandoned as never placed, then its create landed
after all; or it was journaled rejected) matched by client id and was then
left to nobody: no actor polls it, so its fills reach neither the Position nor
the Ledger until some later restart, and nobody can cancel it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest

from phalanx.actors.order import client_order_id
from phalanx.actors.venue import PaperVenue
from phalanx.storage._orders import OrderRecord, OrderStore
from phalanx.storage._positions import PositionStore
from tests.chaos import ACCOUNT, trading_node, venue_totals
from tests.trading._order_rig import wait_until


@pytest.fixture
def venue() -> Iterator[PaperVenue]:
    with PaperVenue(seed=5) as v:
        yield v


def test_an_open_venue_order_of_a_terminal_record_is_adopted_and_its_fills_counted(
    tmp_path: Path, venue: PaperVenue
) -> None:
    var = tmp_path / "var"
    with trading_node(var, venue) as node:  # first boot: the ledger opens
        cid = client_order_id("late-1", 0)
        bid = Decimal(venue.engine.ticker("BTCUSDT")["bidPrice"])
        price = (bid * Decimal("0.9")).quantize(Decimal("0.01"))
        now = time.time()
        OrderStore(node.system.storage).register(  # abandoned: "never placed"
            OrderRecord(
                order_req_id="late-1", client_order_id=cid, generation=0, status="canceled",
                symbol="BTC/USDT", side="buy", type="limit", amount=Decimal("0.002"),
                price=price, created_at=now, updated_at=now, cancel_requested=True,
            )
        )  # fmt: skip
    # ... but its create reached the venue after all, and rests there.
    placed = venue.engine.place(
        ACCOUNT, {"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "quantity": "0.002",
                  "price": str(price), "newClientOrderId": cid},
    )  # fmt: skip
    with trading_node(var, venue) as node:
        assert node.reconciliation is not None
        assert node.reconciliation.ok, node.reconciliation
        with venue.engine._lock:  # the market reaches it while the node runs
            order = venue.engine._orders[int(placed["orderId"])]
            venue.engine._fill(order, order.price, order.qty, maker=True)
        wait_until(
            lambda: node.ledger.verify(venue_totals(venue)) == {},
            timeout=10,
            what="the fill of the live order to reach the ledger",
        )
        assert PositionStore(node.system.storage).load("BTC/USDT").quantity == Decimal("0.002")
