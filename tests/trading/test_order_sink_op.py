"""A fill sink may return its write as an op: committed with the fill's sunk marker.

The op path must give what a sink writing for itself gives (the record, the
journal's events, the ``order`` lines, the notified snapshot) with one write
fewer per fill, and an error from the op must count as the sink's own.
"""

from __future__ import annotations

import dataclasses
import json
import threading
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

import pytest

from phalanx import ActorSystem
from phalanx.actors.order import SinkOp, place_order, start_order_supervisor
from phalanx.actors.venue import PaperVenue
from phalanx.protocols.trading import OrderFill
from phalanx.storage import Txn
from phalanx.storage._orders import OrderRecord
from tests.trading._order_rig import wait_until
from tests.trading.test_order_actor import Rig

_DB = "test_sink_writes"


@pytest.fixture
def venue() -> Iterator[PaperVenue]:
    with PaperVenue(seed=7) as v:
        yield v


class OpSink:
    """Writes one key per fill, either itself (``as_op`` False) or as a returned op."""

    def __init__(self, system: ActorSystem, *, as_op: bool) -> None:
        self.storage = system.storage
        self.db = system.storage.db(f"{_DB}-{as_op}")
        self.as_op = as_op
        self.fills: list[OrderFill] = []
        self.fail: Callable[[], BaseException | None] = lambda: None  # raised by the op

    def __call__(self, fill: OrderFill) -> SinkOp | None:
        self.fills.append(fill)
        key, db, fail = fill.trade_id.encode(), self.db, self.fail

        def op(txn: Txn) -> bool:
            exc = fail()
            if exc is not None:
                raise exc
            return bool(txn.put(key, fill.order_req_id.encode(), db=db, overwrite=False))

        if self.as_op:
            return op
        self.storage.write_now(op)
        return None

    def written(self) -> dict[str, str]:
        db = self.db
        return self.storage.read(
            lambda txn: {bytes(k).decode(): bytes(v).decode() for k, v in txn.cursor(db=db)}
        )


class Writes:
    """Counts ``write_now`` calls made from Order actor threads (the storage is shared)."""

    def __init__(self, system: ActorSystem) -> None:
        storage = system.storage
        self.calls = 0
        self._lock = threading.Lock()
        inner = storage.write_now

        def counting(op: Any, timeout: float | None = 30.0) -> Any:
            if threading.current_thread().name.startswith("phalanx:/orders-"):
                with self._lock:
                    self.calls += 1
            return inner(op, timeout)

        storage.write_now = counting  # type: ignore[method-assign]


def _orders(rig: Rig, sink: OpSink, path: str) -> str:
    """A second orders supervisor at ``path`` whose actors hand their fills to ``sink``."""
    start_order_supervisor(rig.system, dataclasses.replace(rig.services, fill_sink=sink), path=path)
    return path


def _run(rig: Rig, req: str, supervisor: str, **kw: Any) -> tuple[OrderRecord, str]:
    system = rig.system
    ref = place_order(system, rig.intent(req, **kw), supervisor=supervisor)

    def done() -> bool:
        record = rig.store.get(req)
        return record is not None and record.terminal and not system.is_alive(ref.path)

    wait_until(done, 15.0, f"order {req} to finish")
    record = rig.store.get(req)
    assert record is not None
    return record, ref.path


_VOLATILE = {"ts", "at", "order_req_id", "client_order_id", "saga_id", "exchange_order_id",
             "trade_id", "actor", "price", "fee", "fees"}  # fmt: skip


def _lines(system: ActorSystem, req: str) -> list[dict[str, Any]]:
    text = (system.var_dir / "logs" / "order.jsonl").read_text(encoding="utf-8")
    lines = [json.loads(line) for line in text.splitlines()]
    return [
        {k: v for k, v in line.items() if k not in _VOLATILE}
        for line in lines
        if line.get("order_req_id") == req
    ]


def _events(rig: Rig, req: str) -> list[dict[str, Any]]:
    return [
        {k: v for k, v in e.items() if k not in _VOLATILE | {"trade_ids"}}
        | {"trade_ids": len(e.get("trade_ids", ()))}
        for e in rig.store.events(req)
    ]


def test_a_sink_op_commits_with_the_sunk_marker_and_gives_what_a_self_writing_sink_gives(
    system: ActorSystem, venue: PaperVenue
) -> None:
    rig = Rig(system, venue)
    slow, fast = OpSink(system, as_op=False), OpSink(system, as_op=True)
    slow_orders, fast_orders = (
        _orders(rig, slow, "/orders-slow"),
        _orders(rig, fast, "/orders-fast"),
    )
    writes = Writes(system)
    slow_record, _ = _run(rig, "w-slow", slow_orders)
    slow_writes, writes.calls = writes.calls, 0
    fast_record, _ = _run(rig, "w-fast", fast_orders)
    # register, ack, the sink's own write, the marker; then the sink's write rides along.
    assert (slow_writes, writes.calls) == (4, 3)
    for record, sink in ((slow_record, slow), (fast_record, fast)):
        [fill] = record.fills.values()
        assert record.status == "filled"
        assert record.sunk == (fill.trade_id,)
        assert [f.trade_id for f in sink.fills] == [fill.trade_id]
    assert fast.written() == dict.fromkeys(fast_record.fills, "w-fast")
    assert slow.written() == dict.fromkeys(slow_record.fills, "w-slow")
    assert [e["kind"] for e in rig.store.events("w-fast")] == [
        "registered", "ack", "fills_sunk",
    ]  # fmt: skip
    assert _events(rig, "w-fast") == _events(rig, "w-slow")
    [marker] = [e for e in rig.store.events("w-fast") if e["kind"] == "fills_sunk"]
    assert (marker["trade_ids"], marker["dead_lettered"]) == (list(fast_record.fills), [])
    assert _lines(system, "w-fast") == _lines(system, "w-slow")
    assert [line["event"] for line in _lines(system, "w-fast")] == [
        "order_attempt", "order_ack", "order_fill", "order_done",
    ]  # fmt: skip


class _Refused(Exception):
    phalanx_error_class = "permanent"


def test_a_permanent_error_from_the_sink_op_dead_letters_the_fill_and_writes_nothing_of_it(
    system: ActorSystem, venue: PaperVenue
) -> None:
    sink = OpSink(system, as_op=True)
    sink.fail = lambda: _Refused("the ledger refuses this fee")
    rig = Rig(system, venue)
    record, path = _run(rig, "op-dead", _orders(rig, sink, "/orders-op"))
    [tid] = record.fills
    assert record.sunk == (tid,)  # handled: dead-lettered, not retried forever
    assert sink.written() == {}  # the op's txn was not committed
    [dead] = system.dead_letters.list(reason="permanent_error", target=path)
    assert dead.message.trade_id == tid
    assert "refuses this fee" in (dead.error_message or "")
    [marker] = [e for e in rig.store.events("op-dead") if e["kind"] == "fills_sunk"]
    assert (marker["trade_ids"], marker["dead_lettered"]) == ([tid], [tid])


def test_a_transient_error_from_the_sink_op_is_retried_and_the_op_commits_once(
    system: ActorSystem, venue: PaperVenue
) -> None:
    sink = OpSink(system, as_op=True)
    failures = [ConnectionError("ledger busy")]
    sink.fail = lambda: failures.pop() if failures else None
    rig = Rig(system, venue)
    record, _ = _run(rig, "op-retry", _orders(rig, sink, "/orders-op"))
    [tid] = record.fills
    assert record.sunk == (tid,)
    assert len(sink.fills) == 2  # handed over again after the failed write
    assert sink.written() == {tid: "op-retry"}
    kinds = [e["kind"] for e in rig.store.events("op-retry")]
    assert kinds == ["registered", "ack", "fills_sunk"]
    audit = (system.var_dir / "logs" / "audit.jsonl").read_text(encoding="utf-8")
    assert "order_fill_sink_failed" in audit


def test_a_redriven_fill_to_a_live_order_commits_the_op_its_sink_returns(
    system: ActorSystem, venue: PaperVenue
) -> None:
    sink = OpSink(system, as_op=True)
    rig = Rig(system, venue)
    orders = _orders(rig, sink, "/orders-op")
    bid = Decimal(venue.engine.ticker("BTCUSDT")["bidPrice"])
    ref = place_order(
        system, rig.intent("op-rest", type="limit", price=bid - 100), supervisor=orders
    )
    wait_until(lambda: (r := rig.store.get("op-rest")) is not None and r.status == "open")
    fill = OrderFill(
        trade_id="redriven-1", order_req_id="op-rest", exchange_order_id="1", symbol="BTC/USDT",
        side="buy", price=bid - 100, amount=Decimal("0.01"), fee=Decimal(0), fee_currency=None,
    )  # fmt: skip
    system.tell(ref.path, fill)
    wait_until(lambda: "redriven-1" in sink.written(), what="the redriven fill's op")
    system.stop(orders)


def test_each_fill_of_a_multi_fill_order_commits_its_op_with_its_own_sunk_marker(
    system: ActorSystem, venue: PaperVenue
) -> None:
    rig = Rig(system, venue)
    sink = OpSink(system, as_op=True)
    writes = Writes(system)
    record, _ = _run(rig, "op-two", _orders(rig, sink, "/orders-op"), amount="0.1")
    tids = list(record.fills)
    assert (record.status, len(tids)) == ("filled", 2)  # two book levels of 0.05
    assert record.sunk == tuple(tids)
    assert sink.written() == dict.fromkeys(tids, "op-two")
    # register, ack, then one write per fill (a self-writing sink: one each plus the marker)
    assert writes.calls == 4
    markers = [e for e in rig.store.events("op-two") if e["kind"] == "fills_sunk"]
    assert [(m["trade_ids"], m["dead_lettered"]) for m in markers] == [([t], []) for t in tids]
