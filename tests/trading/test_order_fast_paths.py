"""The Order actor's hot path (a marketable limit filled in the create reply) keeps its output.

Its fast paths (no re-plan when the stored record is the planned one, one
snapshot per record, no trace scope that would change nothing) must leave
the journal, the notifications and the ``order`` log lines as they were.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest

from phalanx import ActorSystem
from phalanx.actors.order import client_order_id, snapshot_of
from phalanx.actors.order._snapshot import _fees_by_currency, _shows_same
from phalanx.actors.venue import PaperVenue
from phalanx.protocols.trading import OrderFill
from phalanx.storage._order_record import decode, encode, evolve
from phalanx.storage._orders import OrderRecord
from tests.trading.test_order_actor import Rig

_TRACE = {"order_req_id", "client_order_id", "saga_id"}
_BASE = {"ts", "level", "event", "taxonomy", "node", "actor"}
_FIELDS = {
    "order_attempt": {"generation", "symbol", "side", "type", "amount", "price", "blind_resend"},
    "order_ack": {"venue_status", "generation", "filled"},
    "order_fill": {"trade_id", "price", "amount", "fee", "fee_currency", "status", "filled"},
    "order_done": {"status", "filled", "fee", "fees", "fills", "generation"},
}


@pytest.fixture
def venue() -> Iterator[PaperVenue]:
    with PaperVenue(seed=7) as v:
        yield v


def _order_lines(system: ActorSystem, req: str) -> list[dict[str, Any]]:
    text = (system.var_dir / "logs" / "order.jsonl").read_text(encoding="utf-8")
    return [line for line in map(json.loads, text.splitlines()) if line["order_req_id"] == req]


def test_a_limit_filled_in_the_create_reply_logs_its_four_lines_with_fields_and_trace_ids(
    system: ActorSystem, venue: PaperVenue
) -> None:
    rig = Rig(system, venue)
    ask = Decimal(venue.engine.ticker("BTCUSDT")["askPrice"])
    price = ask + Decimal("10")
    record = rig.run(rig.intent("b1", type="limit", amount="0.01", price=price))
    assert (record.status, record.filled, len(record.fills)) == ("filled", Decimal("0.01"), 1)
    [fill] = record.fills.values()
    assert record.sunk == (fill.trade_id,)
    assert [e["kind"] for e in rig.store.events("b1")] == ["registered", "ack", "fills_sunk"]
    lines = _order_lines(system, "b1")
    assert [line["event"] for line in lines] == list(_FIELDS)
    cid = client_order_id("b1", 0)
    for line in lines:
        event = line["event"]
        with_eid = event != "order_attempt"  # the venue id is known from the ack on
        trace = _TRACE | ({"exchange_order_id"} if with_eid else set())
        assert set(line) == _BASE | trace | _FIELDS[event], event
        assert (line["client_order_id"], line["saga_id"], line["actor"]) == (
            cid, "saga-b1", "/orders/o-b1",
        )  # fmt: skip
        if with_eid:
            assert line["exchange_order_id"] == record.exchange_order_id
    attempt, ack, fill_line, done = lines
    assert (attempt["type"], attempt["price"], attempt["blind_resend"]) == (
        "limit",
        str(price),
        False,
    )
    assert (ack["venue_status"], ack["filled"]) == ("filled", "0.01")
    assert (fill_line["trade_id"], fill_line["status"]) == (fill.trade_id, "filled")
    assert (done["status"], done["fills"], done["filled"]) == ("filled", 1, "0.01")
    # The update told to notify is the snapshot of the journaled final record.
    final = rig.updates.wait(lambda s: s.terminal)
    assert final == snapshot_of(record)


def test_a_record_shows_the_same_snapshot_only_while_every_field_it_shows_is_kept() -> None:
    record = OrderRecord(
        order_req_id="s1", client_order_id="px-s1-0", generation=0, status="open",
        symbol="BTC/USDT", side="buy", type="limit", amount=Decimal("0.01"),
        price=Decimal("100"), exchange_order_id="5",
    )  # fmt: skip
    sunk = evolve(record, sunk=("t1",), version=record.version + 1, updated_at=9.0)
    assert _shows_same(record, sunk)
    assert snapshot_of(record) == snapshot_of(sunk)
    for change in ({"status": "filled"}, {"filled": Decimal(1)}, {"fills": {}},
                   {"exchange_order_id": "9"}, {"external": True}):  # fmt: skip
        assert not _shows_same(record, evolve(record, **change)), change
    copy = decode(b"other", encode(b"s1", record))  # equal, decoded anew: rebuilt, not reused
    assert copy is not None
    assert not _shows_same(record, copy)
    assert snapshot_of(copy) == snapshot_of(record)


def test_a_base_fee_buy_reports_its_fee_per_currency_in_the_snapshot_and_order_done(
    system: ActorSystem,
) -> None:
    with PaperVenue(seed=7, fee_in_base=True) as venue:
        rig = Rig(system, venue)
        ask = Decimal(venue.engine.ticker("BTCUSDT")["askPrice"])
        record = rig.run(rig.intent("bf1", type="limit", amount="0.01", price=ask + 10))
        [fill] = record.fills.values()
        assert fill.fee_currency == "BTC"
        assert fill.fee > 0
        snap = snapshot_of(record)
        assert snap.fees == {"BTC": fill.fee}
        done = _order_lines(system, "bf1")[-1]
        assert done["event"] == "order_done"
        assert done["fees"] == {"BTC": str(fill.fee)}
        system.stop("/orders")
        system.stop("/exchanges")


def test_fees_are_added_up_per_currency_and_a_fee_of_zero_names_none() -> None:
    def fill(trade_id: str, fee: str, currency: str | None) -> OrderFill:
        return OrderFill(
            trade_id=trade_id, order_req_id="m1", exchange_order_id="1", symbol="BTC/USDT",
            side="buy", price=Decimal("100"), amount=Decimal("0.01"), fee=Decimal(fee),
            fee_currency=currency,
        )  # fmt: skip

    fills = [fill("1", "0.5", "BNB"), fill("2", "0.00001", "BTC"), fill("3", "0.25", "BNB"),
             fill("4", "0", "USDT"), fill("5", "0.1", None)]  # fmt: skip
    assert _fees_by_currency(fills) == {
        "BNB": Decimal("0.75"), "BTC": Decimal("0.00001"), "": Decimal("0.1"),
    }  # fmt: skip
