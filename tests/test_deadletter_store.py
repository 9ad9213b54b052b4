"""DeadLetterStore: every field, filters and paging, redrive exactly once, offline redrive."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from phalanx.errors import DeadLetterError, StorageError
from phalanx.protocols import Message, type_name_of
from phalanx.storage import REASONS, DeadLetter, DeadLetterStore, Storage, _deadletters


class Clock:
    """A settable clock: ages and purges are tested without sleeping."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Opaque:
    """Not plain data and not a registered message: the codec refuses it."""

    def __repr__(self) -> str:
        return "<Opaque handle=7>"


class PlaceOrder(Message):
    """A registered protocol message: encodable, so redrivable."""

    type_name = "tests.dlq.PlaceOrder"
    symbol: str
    qty: float


class Deliveries:
    def __init__(self) -> None:
        self.calls: list[tuple[DeadLetter, str]] = []
        self.lock = threading.Lock()

    def __call__(self, record: DeadLetter, target: str) -> None:
        with self.lock:
            self.calls.append((record, target))


@pytest.fixture
def storage(tmp_path: Path) -> Iterator[Storage]:
    st = Storage(tmp_path / "state.lmdb", map_size=4 * 2**20)
    yield st
    st.close()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def delivered() -> Deliveries:
    return Deliveries()


@pytest.fixture
def store(storage: Storage, clock: Clock, delivered: Deliveries) -> DeadLetterStore:
    return DeadLetterStore(storage, deliver=delivered, clock=clock)


def _put(store: DeadLetterStore, **kw: Any) -> str:
    kw.setdefault("reason", "mailbox_overflow")
    kw.setdefault("message", {"n": 1})
    kw.setdefault("target", "/workers/a")
    return store.put(wait=True, **kw)


def _failing_handler() -> None:
    raise ValueError("price must be positive")


def test_put_populates_every_field(store: DeadLetterStore, clock: Clock) -> None:
    message = {"symbol": "BTC/USDT", "qty": 0.5}
    try:
        _failing_handler()
    except ValueError as exc:
        error = exc
    ident = store.put(
        reason="permanent_error",
        message=message,
        target="/orders/o-1",
        sender="/strategy",
        message_id="m-1",
        error=error,
        attempts=3,
        trace={"session_id": "s-1", "order_req_id": "r-9"},
        wait=True,
    )
    r = store.get(ident)
    assert r.id == ident
    assert (r.reason, r.target, r.sender, r.message_id) == (
        "permanent_error",
        "/orders/o-1",
        "/strategy",
        "m-1",
    )
    assert r.message_type == type_name_of(message)
    assert r.message == message
    assert r.payload_repr == repr(message)
    assert r.redrivable is True
    assert r.error_type == "ValueError"
    assert r.error_message == "price must be positive"
    assert r.traceback is not None
    assert "_failing_handler" in r.traceback
    assert r.traceback.rstrip().endswith("ValueError: price must be positive")
    assert r.trace == {"session_id": "s-1", "order_req_id": "r-9"}
    assert (r.attempts, r.count, r.status, r.note) == (3, 1, "pending", None)
    assert r.first_failed_at == r.last_failed_at == clock.now
    assert r.history == [
        {
            "action": "put",
            "at": clock.now,
            "reason": "permanent_error",
            "target": "/orders/o-1",
            "attempts": 3,
            "error_type": "ValueError",
        }
    ]
    assert json.loads(json.dumps(r.model_dump(mode="json")))["id"] == ident
    assert set(DeadLetter.model_fields) >= {"id", "message", "redrivable", "history", "status"}
    with pytest.raises(Exception, match="frozen"):
        r.status = "resolved"  # type: ignore[misc]


def test_put_is_asynchronous_and_ids_are_time_ordered(
    store: DeadLetterStore, storage: Storage
) -> None:
    ids = [store.put(reason="dead_target", message={"i": i}, target="/gone") for i in range(50)]
    storage.flush()
    assert [r.id for r in store.list(limit=100)] == ids  # oldest first
    assert store.count() == 50


def test_unknown_reason_and_unknown_id(store: DeadLetterStore) -> None:
    with pytest.raises(ValueError, match="unknown dead-letter reason"):
        store.put(reason="bored", message={}, target="/a")
    assert "compensation_failed" in REASONS
    with pytest.raises(DeadLetterError):
        store.get("0" * 32)
    with pytest.raises(DeadLetterError):
        store.get("not-an-id")


def test_unencodable_message_keeps_repr_and_is_not_redrivable(
    store: DeadLetterStore, delivered: Deliveries
) -> None:
    ident = _put(store, message=Opaque(), reason="handler_failed")
    r = store.get(ident)
    assert r.redrivable is False
    assert r.message is None
    assert r.message_type == f"{__name__}.Opaque"
    assert r.payload_repr == "<Opaque handle=7>"
    with pytest.raises(DeadLetterError, match="not redrivable"):
        store.redrive(ident)
    assert delivered.calls == []
    assert store.get(ident).status == "pending"


def test_registered_message_round_trips_and_redrives(
    store: DeadLetterStore, delivered: Deliveries
) -> None:
    order = PlaceOrder(symbol="BTC/USDT", qty=0.5)
    r = store.get(_put(store, message=order, target="/orders/o-2"))
    assert (r.message_type, r.redrivable) == ("tests.dlq.PlaceOrder", True)
    assert r.message == order
    assert r.payload_repr == repr(order)
    assert r.model_dump(mode="json")["message"] == {"symbol": "BTC/USDT", "qty": 0.5}
    store.redrive(r.id)
    assert delivered.calls[0][0].message == order


def test_odd_inputs_do_not_lose_the_dead_letter(store: DeadLetterStore) -> None:
    class Unprintable(Exception):
        def __str__(self) -> str:
            raise RuntimeError("no str")

    ident = _put(store, error=Unprintable(), trace={"attempt_no": 3})
    r = store.get(ident)
    assert r.error_type == f"{__name__}.{Unprintable.__qualname__}"
    assert r.error_message is not None
    assert "str() failed" in r.error_message
    assert r.trace == {"attempt_no": "3"}  # trace values are stored as strings


def test_long_repr_is_truncated(store: DeadLetterStore) -> None:
    r = store.get(_put(store, message={"blob": "x" * 5000}))
    assert len(r.payload_repr) == 2000
    assert r.payload_repr.endswith("...")
    assert r.message == {"blob": "x" * 5000}  # the payload itself is whole


def test_list_filters(store: DeadLetterStore, clock: Clock) -> None:
    a = _put(store, reason="mailbox_overflow", target="/a")
    clock.now += 10
    b = _put(store, reason="dead_target", target="/b")
    clock.now += 10
    c = _put(store, reason="dead_target", target="/a")
    store.resolve(a, "handled by hand")

    def ids(records: list[DeadLetter]) -> list[str]:
        return [r.id for r in records]

    assert ids(store.list(reason="dead_target")) == [b, c]
    assert ids(store.list(target="/a")) == [a, c]
    assert ids(store.list(status="resolved")) == [a]
    assert ids(store.list(status="pending", target="/a")) == [c]
    assert ids(store.list(since=clock.now - 10)) == [b, c]  # inclusive bound
    assert ids(store.list(limit=2)) == [a, b]
    assert store.list(limit=0) == []
    assert store.list(reason="timeout") == []


def test_paging_with_after_has_no_gap_and_no_overlap(store: DeadLetterStore) -> None:
    all_ids = [_put(store, message={"i": i}) for i in range(25)]
    _put(store, reason="timeout")  # filtered out of every page
    pages: list[list[str]] = []
    after = None
    while True:
        page = store.list(reason="mailbox_overflow", limit=7, after=after)
        if not page:
            break
        pages.append([r.id for r in page])
        after = page[-1].id
    assert [len(p) for p in pages] == [7, 7, 7, 4]
    assert [i for p in pages for i in p] == all_ids
    assert store.list(after=all_ids[-1], reason="mailbox_overflow") == []


def test_stats_and_count(store: DeadLetterStore, clock: Clock) -> None:
    assert store.stats() == {"depth": 0, "by_reason": {}, "by_target": {}, "oldest_age_s": None}
    first = _put(store, reason="mailbox_overflow", target="/a")
    clock.now += 5
    _put(store, reason="mailbox_overflow", target="/b")
    _put(store, reason="circuit_open", target="/a")
    _put(store, reason="dead_target", target=None)
    store.resolve(first, "ok")
    clock.now += 30
    assert store.stats() == {
        "depth": 3,
        "by_reason": {"mailbox_overflow": 1, "circuit_open": 1, "dead_target": 1},
        "by_target": {"/b": 1, "/a": 1, "-": 1},
        "oldest_age_s": 30.0,  # the oldest *pending* one; the resolved one is older
    }
    assert store.count() == 4


def test_redrive_delivers_exactly_once(store: DeadLetterStore, delivered: Deliveries) -> None:
    ident = _put(store, message={"cmd": "place"}, target="/orders/o-1", attempts=2)
    record = store.redrive(ident)
    assert len(delivered.calls) == 1
    sent, target = delivered.calls[0]
    assert target == "/orders/o-1"
    assert sent.id == ident
    assert sent.message == {"cmd": "place"}
    assert (record.status, record.attempts) == ("redriven", 3)
    assert record.history[-1]["action"] == "redrive"
    assert record.history[-1]["to"] == "/orders/o-1"
    assert store.get(ident).status == "redriven"
    with pytest.raises(DeadLetterError, match="already redriven"):
        store.redrive(ident)
    assert len(delivered.calls) == 1


def test_concurrent_redrives_deliver_once(store: DeadLetterStore, delivered: Deliveries) -> None:
    ident = _put(store)
    outcomes: list[str] = []
    barrier = threading.Barrier(8)

    def attempt() -> None:
        barrier.wait()
        try:
            store.redrive(ident)
            outcomes.append("ok")
        except DeadLetterError:
            outcomes.append("refused")

    threads = [threading.Thread(target=attempt) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["ok"] + ["refused"] * 7
    assert len(delivered.calls) == 1


def test_redrive_to_another_path(store: DeadLetterStore, delivered: Deliveries) -> None:
    ident = _put(store, target="/old")
    store.redrive(ident, to="/new")
    assert delivered.calls[0][1] == "/new"


def test_refailed_redrive_updates_the_same_record(
    store: DeadLetterStore, delivered: Deliveries, clock: Clock
) -> None:
    ident = _put(store, reason="dead_target", target="/a", attempts=1)
    first_at = clock.now
    clock.now += 1
    store.redrive(ident)
    clock.now += 1
    record = delivered.calls[0][0]
    again = store.put(
        reason="handler_failed",
        message=record.message,
        target="/a",
        error=RuntimeError("still broken"),
        attempts=record.attempts,
        dead_letter_id=record.id,
        wait=True,
    )
    assert again == ident
    r = store.get(ident)
    assert store.count() == 1
    assert (r.status, r.count, r.attempts, r.reason) == ("pending", 2, 2, "handler_failed")
    assert (r.first_failed_at, r.last_failed_at) == (first_at, clock.now)
    assert r.error_message == "still broken"
    assert [h["action"] for h in r.history] == ["put", "redrive", "put"]
    assert r.history[0]["reason"] == "dead_target"  # history kept intact
    store.redrive(ident)  # pending again, so redrivable again
    assert len(delivered.calls) == 2


def test_put_with_unknown_dead_letter_id_creates_it(store: DeadLetterStore) -> None:
    ident = "0192f3a4b5c67000800000000000beef"
    assert _put(store, dead_letter_id=ident) == ident
    assert store.get(ident).count == 1


def test_failed_delivery_puts_the_record_back(store: DeadLetterStore) -> None:
    def broken(record: DeadLetter, target: str) -> None:
        raise ConnectionError("node going down")

    store.set_deliver(broken)
    ident = _put(store)
    with pytest.raises(ConnectionError):
        store.redrive(ident)
    r = store.get(ident)
    assert r.status == "pending"
    assert [h["action"] for h in r.history] == ["put", "redrive", "redrive_failed"]


def test_resolve(store: DeadLetterStore, delivered: Deliveries, clock: Clock) -> None:
    ident = _put(store)
    r = store.resolve(ident, "refunded the client")
    assert (r.status, r.note) == ("resolved", "refunded the client")
    assert r.history[-1] == {"action": "resolve", "note": "refunded the client", "at": clock.now}
    assert store.get(ident) == r
    with pytest.raises(DeadLetterError, match="already resolved"):
        store.resolve(ident, "again")
    with pytest.raises(DeadLetterError, match="already resolved"):
        store.redrive(ident)
    with pytest.raises(DeadLetterError):
        store.resolve("0" * 32, "missing")
    assert delivered.calls == []


def test_purge_by_status_and_age(
    store: DeadLetterStore, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_deadletters, "_SCAN_CHUNK", 3)  # exercise the chunked scan
    old = [_put(store, message={"i": i}) for i in range(5)]
    clock.now += 100
    new = [_put(store, message={"i": i}) for i in range(4)]
    for ident in old[:2] + new[:1]:
        store.resolve(ident, "done")
    assert store.purge(older_than_s=50, status="pending") == 3  # old[2:]
    assert {r.id for r in store.list()} == set(old[:2] + new)
    assert store.purge(status="resolved") == 3
    assert [r.id for r in store.list()] == new[1:]
    assert store.purge(older_than_s=1000) == 0
    assert store.purge() == 3
    assert store.count() == 0
    with pytest.raises(ValueError, match="unknown status"):
        store.purge(status="gone")


def test_retention_purges_only_old_resolved(store: DeadLetterStore, clock: Clock) -> None:
    old_resolved, old_pending = _put(store), _put(store)
    store.resolve(old_resolved, "x")
    clock.now += 3600
    new_resolved = _put(store)
    store.resolve(new_resolved, "y")
    clock.now += 60
    assert store.apply_retention(resolved_older_than_s=600) == 1
    assert {r.id for r in store.list()} == {old_pending, new_resolved}


def test_offline_redrive_is_queued_then_drained(tmp_path: Path, clock: Clock) -> None:
    path = tmp_path / "state.lmdb"
    node = Storage(path)
    ident = DeadLetterStore(node).put(
        reason="dead_target", message={"k": 1}, target="/a", wait=True
    )
    other = DeadLetterStore(node).put(
        reason="dead_target", message={"k": 2}, target="/a", wait=True
    )
    node.close()  # the node stops; an operator works offline on its file

    offline = Storage(path)
    store = DeadLetterStore(offline, clock=clock)
    queued = store.redrive(ident, to="/b")
    assert queued.status == "pending"
    assert queued.history[-1] == {"action": "redrive_queued", "to": "/b", "at": clock.now}
    with pytest.raises(DeadLetterError, match="already queued"):
        store.redrive(ident)
    store.redrive(other)
    store.resolve(other, "never mind")  # resolved after queuing: must not be delivered
    offline.close()

    restarted = Storage(path)
    try:
        delivered = Deliveries()
        store = DeadLetterStore(restarted, deliver=delivered)
        assert store.drain_outbox(delivered) == 1
        assert [(r.id, t) for r, t in delivered.calls] == [(ident, "/b")]
        assert store.get(ident).status == "redriven"
        assert store.get(other).status == "resolved"
        assert store.drain_outbox(delivered) == 0  # the outbox is empty now
    finally:
        restarted.close()


def test_readonly_store_reads_and_refuses_writes(tmp_path: Path) -> None:
    path = tmp_path / "state.lmdb"
    Storage(path).close()  # an env without the deadletters db yet
    ro = Storage(path, readonly=True)
    try:
        store = DeadLetterStore(ro)
        assert store.list() == []
        assert store.count() == 0
        assert store.stats()["depth"] == 0
        with pytest.raises(StorageError):
            store.put(reason="timeout", message={}, target="/a")
    finally:
        ro.close()
    rw = Storage(path)
    ident = DeadLetterStore(rw).put(reason="timeout", message={"x": 1}, target="/a", wait=True)
    rw.close()
    ro = Storage(path, readonly=True)
    try:
        assert DeadLetterStore(ro).get(ident).message == {"x": 1}
    finally:
        ro.close()


def test_put_after_close_raises(storage: Storage) -> None:
    store = DeadLetterStore(storage)
    _put(store)
    storage.close()
    with pytest.raises(StorageError, match="closed"):
        store.put(reason="timeout", message={}, target="/a")


def test_map_grows_past_50_mib_of_dead_letters(tmp_path: Path) -> None:
    """The must-show item: a 1 MiB map grows transparently; nothing is lost."""
    storage = Storage(tmp_path / "state.lmdb", map_size=2**20)
    try:
        store = DeadLetterStore(storage)
        n, blob = 52_000, "p" * 1000  # ~1 KiB payload per record
        ids = [
            store.put(reason="mailbox_overflow", message={"i": i, "blob": blob}, target="/hot")
            for i in range(n)
        ]
        storage.flush()
        assert store.count() == n
        db = storage.db("deadletters")
        stored = storage.read(
            lambda txn: sum(len(v) for v in txn.cursor(db=db).iternext(keys=False))
        )
        assert stored > 50 * 2**20
        assert storage.map_size > 50 * 2**20
        assert storage.stats()["grows"] >= 6  # 1 MiB doubled at least six times
        assert store.stats()["depth"] == n
        seen, after = 0, None
        while page := store.list(limit=5000, after=after):
            for r in page:
                assert r.id == ids[seen]
                assert r.message == {"i": seen, "blob": blob}
                seen += 1
            after = page[-1].id
        assert seen == n
    finally:
        storage.close()
