"""Reconciliation: a restart adopts what the venue did while the node was down."""

from __future__ import annotations

import json
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest

from phalanx.actors import BUY, buy_input, plan_reconciliation
from phalanx.actors._reconcile_plan import VenueView
from phalanx.actors.saga import await_saga, start_saga
from phalanx.actors.venue import PaperVenue
from phalanx.protocols.exchange import OrderReply, Trade
from phalanx.protocols.trading import GetRisk, SetTradingState
from phalanx.storage._orders import OrderStore
from phalanx.storage._positions import PositionStore
from tests.chaos import ACCOUNT, trading_node, venue_totals


@pytest.fixture
def venue() -> Iterator[PaperVenue]:
    """A paper venue whose prices move only when stepped."""
    with PaperVenue(seed=5) as v:
        yield v


def _wait_open(node: object, order_req_id: str) -> None:
    store = OrderStore(node.system.storage)  # type: ignore[attr-defined]
    sub = node.system.events.subscribe()  # type: ignore[attr-defined]
    try:
        for _ in range(200):
            record = store.get(order_req_id)
            if record is not None and record.exchange_order_id and record.status == "open":
                return
            sub.get(timeout=0.05)
    finally:
        sub.close()
    raise AssertionError(f"order {order_req_id} never rested at the venue")


def _fill_resting(venue: PaperVenue, exchange_order_id: str, symbol: str = "BTCUSDT") -> None:
    """Step the random walk until the resting order has filled (bounded)."""
    for _ in range(20_000):
        if venue.engine.get_order(ACCOUNT, symbol, exchange_order_id, None)["status"] == "FILLED":
            return
        venue.engine.step()
    raise AssertionError("the walk never crossed the resting order")


def test_restart_adopts_a_fill_made_while_the_node_was_down(
    tmp_path: Path, venue: PaperVenue
) -> None:
    var = tmp_path / "var"
    with trading_node(var, venue) as node:
        first = node.reconciliation
        assert first is not None
        assert first.ok
        assert first["opened"] is True
        bid = Decimal(venue.engine.ticker("BTCUSDT")["bidPrice"])
        price = bid - Decimal("0.01")  # rests one tick under the bid
        start_saga(node.system, BUY, "down-1",
                   buy_input("BTC/USDT", Decimal("0.003"), price, fill_timeout_s=600))  # fmt: skip
        _wait_open(node, "down-1")
        record = OrderStore(node.system.storage).get("down-1")
        assert record is not None
        exchange_id = record.exchange_order_id
        assert exchange_id is not None
    # The node is down, its saga and order in flight; the venue fills the order.
    _fill_resting(venue, exchange_id)

    with trading_node(var, venue) as node:
        result = node.reconciliation
        assert result is not None
        assert result.ok, result
        assert result["fills_applied"] == 1
        assert result["opened"] is False
        assert result["drift"] == {}
        # Position and ledger took the fill before any saga resumed.
        assert PositionStore(node.system.storage).load("BTC/USDT").quantity == Decimal("0.003")
        assert node.ledger.verify(venue_totals(venue)) == {}
        assert node.ledger.trial_balance()["difference"] == 0
        # The resumed saga sees the filled order and completes; nothing is applied twice.
        snap = await_saga(node.system, "down-1", timeout=30.0)
        assert snap.status == "completed", snap
        assert PositionStore(node.system.storage).load("BTC/USDT").quantity == Decimal("0.003")
        assert node.ledger.verify(venue_totals(venue)) == {}
        assert "down-1" not in node.system.ask("/risk", GetRisk(), timeout=5.0).reservations
        assert len(venue.engine.accepted) == 1
        event = list(node.system.events.recent(kind="reconciliation_result"))[-1]
        assert event.fields["fills_applied"] == 1
    audit = [
        json.loads(line)
        for line in (var / "logs" / "audit.jsonl").read_text().splitlines()
        if '"reconciliation_result"' in line
    ]
    assert [a["fills_applied"] for a in audit] == [0, 1]
    assert all(a["ok"] for a in audit)


def test_a_venue_order_the_node_never_placed_is_adopted_as_external(
    tmp_path: Path, venue: PaperVenue
) -> None:
    var = tmp_path / "var"
    with trading_node(var, venue):
        pass  # first boot: the ledger opens with the venue's balances
    bid = Decimal(venue.engine.ticker("BTCUSDT")["bidPrice"])
    low = str((bid * Decimal("0.9")).quantize(Decimal("0.01")))
    venue.engine.place(ACCOUNT, {"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT",
                                 "quantity": "0.001", "price": low,
                                 "newClientOrderId": "manual-1"})  # fmt: skip
    with trading_node(var, venue) as node:
        result = node.reconciliation
        assert result is not None
        assert result.ok, result
        assert result["adopted"] == 1
        external = [r for r in OrderStore(node.system.storage).list() if r.external]
        assert [r.client_order_id for r in external] == ["manual-1"]


def test_drift_between_ledger_and_venue_keeps_trading_halted(
    tmp_path: Path, venue: PaperVenue
) -> None:
    var = tmp_path / "var"
    with trading_node(var, venue):
        pass
    # A deposit: the venue balance changes with no trade to explain it (the engine
    # has no deposit endpoint, so the test moves the funds itself).
    with venue.engine._lock:
        venue.engine._move(ACCOUNT, "ETH", free=Decimal(1))
    with trading_node(var, venue) as node:
        result = node.reconciliation
        assert result is not None
        assert not result.ok
        assert "ETH" in result["drift"]
        assert "ledger differs" in result["error"]
        assert node.system.ask("/risk", GetRisk(), timeout=5.0).trading_state == "halted"


def _trade(trade_id: str, order_id: str) -> Trade:
    return Trade(id=trade_id, order_id=order_id, symbol="BTC/USDT", side="buy",
                 price=Decimal(100), amount=Decimal(1), cost=Decimal(100), fee_cost=Decimal(0),
                 fee_currency="USDT", taker_or_maker="maker", timestamp=1)  # fmt: skip


def test_plan_applies_only_unposted_uncovered_trades_of_known_orders() -> None:
    records = [{"order_req_id": "a", "client_order_id": "px-a-0", "status": "open",
                "exchange_order_id": "10", "symbol": "BTC/USDT", "side": "buy"}]  # fmt: skip
    venue = VenueView(
        totals={}, open_orders=[],
        trades={"BTC/USDT": [_trade("1", "10"), _trade("2", "10"), _trade("3", "10")]},
    )  # fmt: skip
    plan = plan_reconciliation(
        records, venue, posted=lambda f: f.trade_id == "2", covered=frozenset({"3"})
    )
    assert [(f.trade_id, f.order_req_id) for f in plan.fills] == [("1", "a")]
    assert plan.external == []


def test_plan_resolves_in_flight_records_by_their_client_id_lookup() -> None:
    found = OrderReply(id="77", client_order_id="px-b-0", symbol="BTC/USDT", status="closed",
                       side="buy", type="limit", amount=Decimal(1), filled=Decimal(1),
                       remaining=Decimal(0), price=Decimal(100), average=Decimal(100),
                       cost=Decimal(100), fee_cost=None, fee_currency=None)  # fmt: skip
    records = [{"order_req_id": "b", "client_order_id": "px-b-0", "status": "unknown",
                "exchange_order_id": None, "symbol": "BTC/USDT", "side": "buy"}]  # fmt: skip
    venue = VenueView(totals={}, open_orders=[], trades={"BTC/USDT": [_trade("5", "77")]},
                      lookups={"px-b-0": found})  # fmt: skip
    plan = plan_reconciliation(records, venue, posted=lambda f: False, covered=frozenset())
    assert plan.resolved == {"b": found}
    assert [(f.trade_id, f.order_req_id) for f in plan.fills] == [("5", "b")]


def test_an_operator_halt_outlives_a_restart_and_reconciliation(
    tmp_path: Path, venue: PaperVenue
) -> None:
    var = tmp_path / "var"
    with trading_node(var, venue) as node:
        assert node.system.ask("/risk", GetRisk(), timeout=5.0).trading_state == "active"
        halt = SetTradingState(state="halted", reason="operator: venue maintenance")
        node.system.ask("/risk", halt, timeout=5.0)
    with trading_node(var, venue) as node:
        assert node.reconciliation is not None
        assert node.reconciliation.ok
        assert node.reconciliation["trading_state"] == "halted"
        risk = node.system.ask("/risk", GetRisk(), timeout=5.0)
        assert risk.trading_state == "halted"
        assert risk.usage["state_reason"] == "operator: venue maintenance"
