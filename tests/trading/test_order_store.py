"""The idempotency store: check-and-insert, atomic updates, fills deduplicated by trade id."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from phalanx.actors.order import OrderRecord, OrderStore
from phalanx.protocols.trading import OrderFill
from phalanx.storage import Storage
from phalanx.storage._orders import register_op, update_op


@pytest.fixture
def storage(tmp_path: Path) -> Iterator[Storage]:
    with Storage(tmp_path / "state.lmdb", sync=False) as s:
        yield s


def _record(req: str = "r1", **kw: object) -> OrderRecord:
    base = OrderRecord(
        order_req_id=req, client_order_id=f"px-{req}-0", generation=0, status="submitting",
        symbol="BTC/USDT", side="buy", type="limit", amount=Decimal("0.01"),
        price=Decimal("43000.5"), saga_id="s1", created_at=1.0, updated_at=1.0,
    )  # fmt: skip
    return dataclasses.replace(base, **kw)  # type: ignore[arg-type]


def _fill(trade_id: str, amount: str, fee: str = "0.1") -> OrderFill:
    return OrderFill(
        trade_id=trade_id, order_req_id="r1", exchange_order_id="9", symbol="BTC/USDT",
        side="buy", price=Decimal("43000"), amount=Decimal(amount), fee=Decimal(fee),
        fee_currency="USDT",
    )  # fmt: skip


def test_register_is_check_and_insert_and_the_first_record_wins(storage: Storage) -> None:
    store = OrderStore(storage)
    assert store.register(_record()) is True
    assert store.register(_record(client_order_id="other")) is False
    got = store.get("r1")
    assert got is not None
    assert got.client_order_id == "px-r1-0"
    assert got.price == Decimal("43000.5")
    assert store.get("missing") is None


def test_update_changes_the_record_and_journals_an_event_atomically(storage: Storage) -> None:
    store = OrderStore(storage, clock=lambda: 5.0)
    store.register(_record())
    new = store.update(
        "r1", lambda r: dataclasses.replace(r, status="open", exchange_order_id="9"), "ack"
    )
    assert (new.status, new.exchange_order_id, new.version, new.updated_at) == ("open", "9", 1, 5.0)
    assert [e["kind"] for e in store.events("r1")] == ["registered", "ack"]
    assert store.events("r1")[1]["exchange_order_id"] == "9"
    with pytest.raises(KeyError, match="no idempotency record for order 'nope'"):
        store.update("nope", lambda r: r, "ack")


def test_fills_are_deduplicated_by_trade_id_and_sum_into_filled_and_fee(storage: Storage) -> None:
    store = OrderStore(storage)
    store.register(_record())
    record, new = store.record_fills("r1", [_fill("1", "0.004"), _fill("1", "0.004")])
    assert [f.trade_id for f in new] == ["1"]
    record, new = store.record_fills("r1", [_fill("1", "0.004"), _fill("2", "0.006", "0.2")])
    assert [f.trade_id for f in new] == ["2"]
    assert (record.filled, record.fee) == (Decimal("0.010"), Decimal("0.3"))
    record, new = store.record_fills("r1", [_fill("2", "0.006")])
    assert new == []
    assert record.version == 2  # a replay writes nothing
    stored = store.get("r1")
    assert stored is not None
    assert sorted(stored.fills) == ["1", "2"]
    assert stored.fills["2"].fee == Decimal("0.2")


def test_list_filters_by_status_and_non_terminal(storage: Storage) -> None:
    store = OrderStore(storage)
    store.register(_record("a"))
    store.register(_record("b", status="filled"))
    store.register(_record("c", status="unknown"))
    assert [r.order_req_id for r in store.list()] == ["a", "b", "c"]
    assert [r.order_req_id for r in store.list("filled")] == ["b"]
    assert [r.order_req_id for r in store.list(non_terminal=True)] == ["a", "c"]


def test_ops_compose_into_one_transaction_with_the_callers_writes(storage: Storage) -> None:
    store = OrderStore(storage)
    reg = register_op(storage, _record())
    upd = update_op(storage, "r1", lambda r: dataclasses.replace(r, status="unknown"), "lost")
    other = storage.db("other")

    def both(txn: object) -> bool:
        ok = reg(txn)  # type: ignore[arg-type]
        upd(txn)  # type: ignore[arg-type]
        txn.put(b"k", b"v", db=other)  # type: ignore[attr-defined]
        return ok

    assert storage.write_now(both) is True
    got = store.get("r1")
    assert got is not None
    assert got.status == "unknown"
    assert [e["kind"] for e in store.events("r1")] == ["registered", "lost"]


def test_a_record_round_trips_through_msgpack_with_fills_and_flags(storage: Storage) -> None:
    store = OrderStore(storage)
    record = _record(
        external=True, cancel_requested=True, sunk=("1",), fills={"1": _fill("1", "1")}
    )
    store.register(record)
    assert store.get("r1") == record


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(st.lists(st.integers(min_value=1, max_value=8), max_size=5), max_size=8))
def test_any_replay_of_fill_batches_counts_each_trade_once(
    storage: Storage, batches: list[list[int]]
) -> None:
    store = OrderStore(storage)
    req = f"h{abs(hash(str(batches)))}"
    store.register(_record(req))
    handed: list[str] = []
    for batch in batches:
        fills = [_fill(str(t), f"0.00{t}").model_copy(update={"order_req_id": req}) for t in batch]
        _, new = store.record_fills(req, fills)
        handed += [f.trade_id for f in new]
    distinct = {t for batch in batches for t in batch}
    assert sorted(handed) == sorted(str(t) for t in distinct)
    record = store.get(req)
    assert record is not None
    assert record.filled == sum((Decimal(f"0.00{t}") for t in distinct), Decimal(0))


def test_the_exchange_id_index_finds_the_owner_of_a_venue_order(storage: Storage) -> None:
    store = OrderStore(storage)
    store.register(_record())
    assert store.by_exchange_id("paper", "BTC/USDT", "9") is None
    store.update("r1", lambda r: dataclasses.replace(r, exchange_order_id="9"), "ack")
    owner = store.by_exchange_id("paper", "BTC/USDT", "9")
    assert owner is not None
    assert owner.order_req_id == "r1"
    assert store.by_exchange_id("paper", "ETH/USDT", "9") is None  # ids are per symbol
    store.register(_record("r2", exchange_order_id="10"))
    assert store.by_exchange_id("paper", "BTC/USDT", "10") == store.get("r2")
