"""Reconciliation must read balances and trades as one consistent picture.

``fetch_venue`` read the balance first, then each symbol's open orders and
trades. A resting order that filled in between shows up in the trades but not
in the balance. On first boot the ledger opens with that balance and counts
every trade it saw as covered by the opening, so the fill is in neither: the
ledger differs from the venue for good (and the next boot halts on drift).
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from phalanx.actors.venue import PaperVenue
from tests.chaos import ACCOUNT, trading_node, venue_totals


@pytest.fixture
def venue() -> Iterator[PaperVenue]:
    with PaperVenue(seed=5) as v:
        yield v


def test_a_fill_between_the_balance_and_the_trades_never_leaves_the_ledger_off(
    tmp_path: Path, venue: PaperVenue, monkeypatch: pytest.MonkeyPatch
) -> None:
    bid = Decimal(venue.engine.ticker("BTCUSDT")["bidPrice"])
    resting = venue.engine.place(
        ACCOUNT, {"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "quantity": "0.002",
                  "price": str(bid - Decimal("0.01")), "newClientOrderId": "manual-rest"},
    )  # fmt: skip
    order_id = str(resting["orderId"])
    dispatch = venue.dispatch
    filled: list[bool] = []

    def racing(method: str, path: str, params: dict[str, str], account: str) -> Any:
        # The first open-orders read comes after the balance: the market crosses the
        # resting order just then, as it may at any moment on a live venue.
        if (method, path) == ("GET", "/api/v3/openOrders") and not filled:
            filled.append(True)
            for _ in range(20_000):
                if venue.engine.get_order(ACCOUNT, "BTCUSDT", order_id, None)["status"] == "FILLED":
                    break
                venue.engine.step()
        return dispatch(method, path, params, account)

    monkeypatch.setattr(venue, "dispatch", racing)
    with trading_node(tmp_path / "var", venue) as node:
        assert filled  # the race really happened during reconciliation
        assert venue.engine.get_order(ACCOUNT, "BTCUSDT", order_id, None)["status"] == "FILLED"
        result = node.reconciliation
        assert result is not None
        assert result.ok, result
        assert node.ledger.verify(venue_totals(venue)) == {}
        assert node.ledger.trial_balance()["difference"] == 0
