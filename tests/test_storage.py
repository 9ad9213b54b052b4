"""Storage: one LMDB env per node, one group-committing writer thread."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import lmdb
import pytest

from phalanx.errors import StorageError
from phalanx.runtime._actor import ActorKilled, interrupt_thread
from phalanx.storage import Storage
from phalanx.storage._sync import _Call


@pytest.fixture
def storage(tmp_path: Path) -> Iterator[Storage]:
    st = Storage(tmp_path / "state.lmdb", map_size=4 * 2**20)
    yield st
    st.close()


def _key(i: int) -> bytes:
    return i.to_bytes(8, "big")  # Invariant: big-endian keys sort numerically


def _put_op(db: Any, key: bytes, value: bytes) -> Callable[[Any], bool]:
    return lambda txn: txn.put(key, value, db=db)


def _block_writer(st: Storage) -> threading.Event:
    """Park the writer inside an op, so that later submissions queue up behind it."""
    gate, parked = threading.Event(), threading.Event()

    def op(txn: Any) -> None:
        parked.set()
        gate.wait()

    st.submit(op)
    assert parked.wait(10)
    return gate


def _writer_threads() -> int:
    return sum(t.name == "phalanx-storage-writer" for t in threading.enumerate())


def _all(st: Storage, name: str) -> dict[bytes, bytes]:
    db = st.db(name)
    return st.read(lambda txn: dict(txn.cursor(db=db).iternext()))


def test_open_write_read_close_joins_writer(tmp_path: Path) -> None:
    before = set(threading.enumerate())
    st = Storage(tmp_path / "state.lmdb")
    (writer,) = set(threading.enumerate()) - before
    assert writer.name == "phalanx-storage-writer"
    assert not writer.daemon
    db = st.db("kv")
    assert st.db("kv") is db  # handles are cached
    assert st.write(lambda txn: txn.put(b"k", b"v", db=db)) is True
    assert st.read(lambda txn: txn.get(b"k", db=db)) == b"v"
    st.close()
    assert not writer.is_alive()
    st.close()  # idempotent
    with pytest.raises(StorageError, match="closed"):
        st.submit(lambda txn: None)
    with pytest.raises(StorageError, match="closed"):
        st.read(lambda txn: None)
    reopened = Storage(tmp_path / "state.lmdb")
    try:
        assert _all(reopened, "kv") == {b"k": b"v"}  # committed means durable across reopen
    finally:
        reopened.close()


def test_group_commit_from_many_threads(storage: Storage) -> None:
    db = storage.db("kv")
    before = storage.stats()
    gate = _block_writer(storage)
    futures: list[Any] = []
    lock = threading.Lock()

    def producer(base: int) -> None:
        for i in range(base, base + 500):
            fut = storage.submit(_put_op(db, _key(i), b"x" * 64))
            with lock:
                futures.append(fut)

    threads = [threading.Thread(target=producer, args=(n * 1000,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not any(f.done() for f in futures)  # nothing resolves before its commit
    gate.set()
    storage.flush()
    assert all(f.done() and f.result() is True for f in futures)
    assert len(_all(storage, "kv")) == 4000
    stats = storage.stats()
    ops, commits = stats["ops"] - before["ops"], stats["commits"] - before["commits"]
    assert ops == 4000 + 2  # + the blocking op and the flush
    assert commits < 10  # 4000 ops in a few txns: group commit
    assert stats["max_batch"] >= 1000


def test_future_resolves_only_after_commit(storage: Storage) -> None:
    db = storage.db("kv")
    seen: list[bytes | None] = []
    fut = storage.submit(lambda txn: txn.put(b"k", b"v", db=db))
    # The callback runs once the future resolves; a fresh read txn must see the write.
    fut.add_done_callback(lambda f: seen.append(storage.read(lambda t: t.get(b"k", db=db))))
    storage.flush()
    assert seen == [b"v"]


def test_faulty_op_fails_only_its_own_future(storage: Storage) -> None:
    db = storage.db("kv")
    boom = ValueError("boom")

    def faulty(txn: Any) -> None:
        txn.put(b"partial", b"x", db=db)  # must be rolled back with the op
        raise boom

    gate = _block_writer(storage)
    f1 = storage.submit(lambda txn: txn.put(b"a", b"1", db=db))
    f2 = storage.submit(faulty)
    f3 = storage.submit(lambda txn: txn.put(b"b", b"2", db=db))
    f4 = storage.submit(lambda txn: txn.put(b"", b"empty key", db=db))  # an lmdb.Error
    f5 = storage.submit(lambda txn: txn.get(b"a", db=db))  # sees f1's write
    errors = storage.stats()["errors"]
    gate.set()
    storage.flush()
    assert f1.result() is True
    assert f2.exception() is boom  # other exceptions pass through as-is
    assert f3.result() is True
    exc = f4.exception()
    assert isinstance(exc, StorageError)
    assert isinstance(exc.__cause__, lmdb.Error)
    assert f5.result() == b"1"
    assert _all(storage, "kv") == {b"a": b"1", b"b": b"2"}
    assert storage.stats()["errors"] == errors + 2


def test_write_reraises_and_flush_is_a_barrier(storage: Storage) -> None:
    db = storage.db("kv")

    def missing(txn: Any) -> None:
        raise KeyError("missing")

    with pytest.raises(KeyError):
        storage.write(missing)
    futures = [storage.submit(_put_op(db, _key(i), b"v")) for i in range(300)]
    storage.flush()
    assert all(f.done() for f in futures)


def test_map_full_doubles_and_retries_the_batch(tmp_path: Path) -> None:
    st = Storage(tmp_path / "state.lmdb", map_size=2**20)
    try:
        db = st.db("kv")
        start = st.map_size
        big = b"z" * (6 * 2**20)  # one op needing three doublings of a 1 MiB map
        gate = _block_writer(st)
        small = [st.submit(_put_op(db, _key(i), b"s")) for i in range(10)]
        huge = st.submit(lambda txn: txn.put(b"huge", big, db=db))
        gate.set()
        assert huge.result(30) is True
        assert all(f.result(30) is True for f in small)  # nothing lost from the batch
        assert st.read(lambda txn: txn.get(b"huge", db=db)) == big
        assert st.map_size >= 8 * start
        assert st.stats()["grows"] >= 3
    finally:
        st.close()


def test_reopen_keeps_headroom_and_data(tmp_path: Path) -> None:
    path = tmp_path / "state.lmdb"
    st = Storage(path, map_size=2**20)
    db = st.db("kv")
    st.write(lambda txn: txn.put(b"k", b"v" * 3_000_000, db=db))
    st.close()
    st = Storage(path, map_size=16 * 2**20)  # a reopen maps only the used size unless told
    try:
        assert st.map_size >= 16 * 2**20
        assert len(_all(st, "kv")[b"k"]) == 3_000_000
    finally:
        st.close()


def test_unwritable_path_raises_storage_error_naming_it(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("a regular file")
    bad = tmp_path / "f" / "x"
    with pytest.raises(StorageError) as info:
        Storage(bad)
    assert str(bad) in str(info.value)
    assert "Not a directory" in str(info.value)


def test_readonly_reads_and_refuses_writes(tmp_path: Path) -> None:
    path = tmp_path / "state.lmdb"
    st = Storage(path)
    db = st.db("kv")
    st.write(lambda txn: txn.put(b"k", b"v", db=db))
    st.close()
    writers = _writer_threads()
    ro = Storage(path, readonly=True)
    try:
        assert _writer_threads() == writers  # no writer thread in readonly mode
        assert _all(ro, "kv") == {b"k": b"v"}
        with pytest.raises(StorageError, match="readonly"):
            ro.submit(lambda txn: None)
        with pytest.raises(StorageError, match="no database 'missing'"):
            ro.db("missing")
        ro.flush()  # nothing to flush: a no-op
    finally:
        ro.close()


def test_reads_do_not_wait_for_the_writer(storage: Storage) -> None:
    db = storage.db("kv")
    storage.write(lambda txn: txn.put(b"k", b"old", db=db))
    gate, parked = threading.Event(), threading.Event()

    def long_op(txn: Any) -> None:
        txn.put(b"k", b"new", db=db)
        parked.set()
        gate.wait()

    fut = storage.submit(long_op)
    assert parked.wait(10)
    try:  # the write txn is open and holds the writer lock; a read still proceeds
        assert storage.read(lambda txn: txn.get(b"k", db=db)) == b"old"
    finally:
        gate.set()
    fut.result(10)
    assert storage.read(lambda txn: txn.get(b"k", db=db)) == b"new"


def test_db_created_inside_an_aborted_op_is_not_cached(storage: Storage) -> None:
    def op(txn: Any) -> None:
        txn.put(b"k", b"v", db=storage.db("fresh"))
        raise RuntimeError("abort the txn that created 'fresh'")

    with pytest.raises(RuntimeError):
        storage.write(op)
    db = storage.db("fresh")  # recreated, valid
    storage.write(lambda txn: txn.put(b"k2", b"v2", db=db))
    assert _all(storage, "fresh") == {b"k2": b"v2"}


def test_deadlocking_calls_are_refused(storage: Storage) -> None:
    inner = storage.submit(lambda txn: storage.write(lambda t: None))
    assert isinstance(inner.exception(10), StorageError)
    with pytest.raises(StorageError, match="read"):
        storage.read(lambda txn: storage.flush())
    closing = storage.submit(lambda txn: storage.close())
    assert isinstance(closing.exception(10), StorageError)


def test_cancelled_op_never_runs(storage: Storage) -> None:
    ran: list[int] = []
    gate = _block_writer(storage)
    fut = storage.submit(lambda txn: ran.append(1))
    assert fut.cancel()
    gate.set()
    storage.flush()
    assert ran == []


def test_adopts_a_map_grown_by_another_process(storage: Storage) -> None:
    db = storage.db("kv")
    storage.write(lambda txn: txn.put(b"mine", b"1", db=db))
    script = (
        "import lmdb, sys\n"
        "env = lmdb.open(sys.argv[1], max_dbs=32, map_size=64 * 2**20)\n"
        "db = env.open_db(b'kv')\n"
        "with env.begin(write=True) as txn:\n"
        "    txn.put(b'theirs', b'x' * 20_000_000, db=db)\n"
        "env.close()\n"
    )
    subprocess.run([sys.executable, "-c", script, str(storage.path)], check=True, timeout=60)
    theirs = storage.read(lambda txn: txn.get(b"theirs", db=db))
    assert theirs is not None
    assert len(theirs) == 20_000_000
    assert storage.map_size >= 64 * 2**20
    storage.write(lambda txn: txn.put(b"after", b"2", db=db))
    assert storage.read(lambda txn: txn.get(b"after", db=db)) == b"2"


def test_write_now_combines_concurrent_callers_into_few_commits(storage: Storage) -> None:
    db = storage.db("kv")
    before = storage.stats()
    gate = _block_writer(storage)  # the writer thread holds the commit lock meanwhile
    results: list[Any] = []
    lock = threading.Lock()

    def writer(base: int) -> None:
        for i in range(base, base + 50):
            value = storage.write_now(_put_op(db, _key(i), b"v"))
            with lock:
                results.append(value)

    threads = [threading.Thread(target=writer, args=(n * 1000,)) for n in range(8)]
    for t in threads:
        t.start()
    gate.set()  # callers queued behind the commit lock are combined by one of them
    for t in threads:
        t.join()
    assert results == [True] * 400
    assert len(_all(storage, "kv")) == 400
    stats = storage.stats()
    assert stats["ops"] - before["ops"] == 400 + 1
    assert stats["commits"] - before["commits"] < 400  # combined, not one txn each


def test_write_now_failing_op_fails_only_its_caller_and_db_works_inside(
    storage: Storage,
) -> None:
    def boom(txn: Any) -> None:
        raise KeyError("bad op")

    with pytest.raises(KeyError, match="bad op"):
        storage.write_now(boom)
    created = storage.write_now(lambda txn: storage.db("made_inside") is not None)
    assert created is True
    assert storage.write_now(lambda txn: txn.put(b"k", b"v", db=storage.db("made_inside")))
    assert _all(storage, "made_inside") == {b"k": b"v"}


# -- write_now: leader/follower group commit --------------------------------


class _Pending(list[Any]):
    """``Storage._direct`` that lets a test wait until ``n`` write_now ops are pending."""

    def __init__(self) -> None:
        super().__init__()
        self._cond = threading.Condition()

    def append(self, item: Any) -> None:
        with self._cond:
            super().append(item)
            self._cond.notify_all()

    def reach(self, n: int, timeout: float = 30.0) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: len(self) >= n, timeout)


class Interrupt(BaseException):
    """Stands in for an async exception (ActorKilled) landing in a caller's op."""


def _grouped(
    st: Storage, ops: list[Callable[[Any], Any]], *, timeout: float | None = 30.0
) -> list[tuple[str, Any]]:
    """Run every op in its own thread's ``write_now``, all pending before one commit.

    The writer thread holds the commit lock until all ``len(ops)`` callers have
    queued their op, so the first caller's leadership commits them together.
    Returns ("ok", result) or ("raised", exception) per op, in order.
    """
    pending = _Pending()
    st._direct = pending
    gate = _block_writer(st)
    outcomes: list[tuple[str, Any]] = [("none", None)] * len(ops)

    def call(i: int) -> None:
        try:
            outcomes[i] = ("ok", st.write_now(ops[i], timeout))
        except BaseException as exc:  # the test inspects it
            outcomes[i] = ("raised", exc)

    threads = [threading.Thread(target=call, args=(i,)) for i in range(len(ops))]
    for t in threads:
        t.start()
    try:
        assert pending.reach(len(ops))
    finally:
        gate.set()
    for t in threads:
        t.join(30)
        assert not t.is_alive()
    return outcomes


def test_write_now_commits_every_pending_caller_in_one_transaction(storage: Storage) -> None:
    db = storage.db("kv")
    before = storage.stats()
    outcomes = _grouped(storage, [_put_op(db, _key(i), b"v") for i in range(32)])
    assert outcomes == [("ok", True)] * 32
    stats = storage.stats()
    assert stats["commits"] - before["commits"] == 2  # the writer's parking op, then all 32
    assert stats["max_batch"] >= 32
    assert len(_all(storage, "kv")) == 32
    assert storage._leader is None  # the lead was given back
    assert not storage._direct


def test_write_now_failing_ops_in_a_group_fail_only_their_own_callers(storage: Storage) -> None:
    db = storage.db("kv")

    def failing(i: int) -> Callable[[Any], Any]:
        def op(txn: Any) -> None:
            txn.put(_key(i), b"rolled back", db=db)
            raise ValueError(f"op {i}")

        return op

    ops = [failing(i) if i % 5 == 2 else _put_op(db, _key(i), b"v") for i in range(24)]
    errors = storage.stats()["errors"]
    outcomes = _grouped(storage, ops)
    for i, (kind, value) in enumerate(outcomes):
        if i % 5 == 2:
            assert kind == "raised"
            assert isinstance(value, ValueError)
            assert str(value) == f"op {i}"
        else:
            assert (kind, value) == ("ok", True)
    assert set(_all(storage, "kv")) == {_key(i) for i in range(24) if i % 5 != 2}
    assert storage.stats()["errors"] == errors + 5


def test_write_now_group_survives_map_growth(tmp_path: Path) -> None:
    with Storage(tmp_path / "state.lmdb", map_size=2**20, sync=False) as st:
        db = st.db("kv")
        start = st.map_size
        big = b"z" * (6 * 2**20)
        ops = [_put_op(db, _key(i), b"s") for i in range(12)]
        ops.insert(5, lambda txn: txn.put(b"huge", big, db=db))  # needs three doublings
        assert _grouped(st, ops) == [("ok", True)] * 13
        assert len(_all(st, "kv")) == 13
        assert st.map_size >= 8 * start
        assert st.stats()["grows"] >= 3


def test_interrupt_in_the_leaders_own_op_propagates_and_followers_still_commit(
    storage: Storage,
) -> None:
    db = storage.db("kv")

    def interrupted(txn: Any) -> None:
        txn.put(b"leader", b"x", db=db)
        raise Interrupt

    ops: list[Callable[[Any], Any]] = [interrupted] + [
        _put_op(db, _key(i), b"v") for i in range(10)
    ]
    outcomes = _grouped(storage, ops)
    kinds = [kind for kind, _ in outcomes]
    raised = [value for kind, value in outcomes if kind == "raised"]
    assert len(raised) == 1
    assert isinstance(raised[0], Interrupt)  # propagated, not wrapped
    assert kinds.count("ok") == 10
    assert set(_all(storage, "kv")) == {_key(i) for i in range(10)}  # no b"leader"
    assert storage.write_now(_put_op(db, b"after", b"1")) is True  # the lead was passed on


def test_interrupt_after_a_group_commit_gives_every_follower_its_result(
    storage: Storage,
) -> None:
    db = storage.db("kv")
    ops = [_put_op(db, _key(i), b"v") for i in range(8)]
    stats = storage._stats

    class InterruptOnCommit(dict[str, int]):
        armed = True

        def __setitem__(self, key: str, value: int) -> None:
            super().__setitem__(key, value)
            if key == "commits" and value > stats["commits"] + 1 and InterruptOnCommit.armed:
                InterruptOnCommit.armed = False  # lands in the leader, after the group commit
                raise Interrupt

    storage._stats = InterruptOnCommit(stats)
    outcomes = _grouped(storage, ops)
    assert [kind for kind, _ in outcomes].count("raised") == 1
    assert [value for kind, value in outcomes if kind == "ok"] == [True] * 7
    assert len(_all(storage, "kv")) == 8  # the leader's own op committed too
    assert storage.write_now(_put_op(db, b"after", b"1")) is True


def test_an_interrupted_follower_withdraws_its_op_and_others_go_on(storage: Storage) -> None:
    db = storage.db("kv")
    pending = _Pending()
    storage._direct = pending
    gate = _block_writer(storage)
    results: dict[str, Any] = {}

    def call(name: str, key: bytes) -> None:
        try:
            results[name] = storage.write_now(_put_op(db, key, b"v"))
        except BaseException as exc:  # the test inspects it
            results[name] = exc

    leader = threading.Thread(target=call, args=("leader", b"leader"))
    leader.start()
    assert pending.reach(1)  # the leader's op; it waits for the commit lock
    follower = threading.Thread(target=call, args=("follower", b"follower"))
    follower.start()
    assert pending.reach(2)
    assert interrupt_thread(follower)  # lands when its sleep slice ends
    follower.join(10)
    assert isinstance(results["follower"], ActorKilled)
    gate.set()
    leader.join(10)
    assert results["leader"] is True
    assert set(_all(storage, "kv")) == {b"leader"}  # the follower's op never ran


def test_a_stranded_lead_is_taken_over(storage: Storage) -> None:
    db = storage.db("kv")
    stale: _Call[None] = _Call()
    stale.set_result(None)  # a leader that committed, then was interrupted before passing on
    storage._leader = stale
    assert storage.write_now(_put_op(db, b"k", b"v")) is True
    assert storage._leader is None


def test_write_now_timeout_withdraws_an_op_no_leader_took(storage: Storage) -> None:
    db = storage.db("kv")
    ran: list[int] = []
    outcomes = _grouped(
        storage, [_put_op(db, b"first", b"1"), lambda txn: ran.append(1)], timeout=None
    )
    assert outcomes == [("ok", True), ("ok", None)]
    ran.clear()
    gate = _block_writer(storage)  # the leader below waits for the commit lock
    pending = _Pending()
    storage._direct = pending
    leader = threading.Thread(target=storage.write_now, args=(_put_op(db, b"second", b"2"),))
    leader.start()
    assert pending.reach(1)
    with pytest.raises(TimeoutError, match="withdrawn"):
        storage.write_now(lambda txn: ran.append(1), timeout=0.05)
    gate.set()
    leader.join(10)
    storage.flush()
    assert ran == []
    assert _all(storage, "kv") == {b"first": b"1", b"second": b"2"}


def test_write_now_from_inside_an_op_and_after_close_are_refused(tmp_path: Path) -> None:
    st = Storage(tmp_path / "state.lmdb", sync=False)
    with pytest.raises(StorageError, match="nested write"):
        st.write_now(lambda txn: st.write_now(lambda t: None))
    st.close()
    with pytest.raises(StorageError, match="closed"):
        st.write_now(lambda txn: None)


def test_write_now_many_threads_mixed_failures_each_get_their_own_outcome(
    storage: Storage,
) -> None:
    db = storage.db("kv")
    wrong: list[str] = []

    def worker(n: int) -> None:
        for i in range(60):
            key = _key(n * 1000 + i)
            if i % 7 == 3:
                try:
                    storage.write_now(lambda txn, k=key: (txn.put(k, b"x", db=db), 1 / 0))
                except ZeroDivisionError:
                    continue
                wrong.append(f"{n}/{i}: no error")
            elif storage.write_now(lambda txn, k=key: (txn.put(k, b"v", db=db), k)[1]) != key:
                wrong.append(f"{n}/{i}: someone else's result")

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert wrong == []
    assert set(_all(storage, "kv")) == {
        _key(n * 1000 + i) for n in range(16) for i in range(60) if i % 7 != 3
    }
    assert storage._leader is None
    assert not storage._direct


class _InterruptAfterCommit:
    """An LMDB env whose next write txn raises Interrupt just after its commit returns."""

    def __init__(self, env: Any) -> None:
        self._env = env
        self.armed = True

    def __getattr__(self, name: str) -> Any:
        return getattr(self._env, name)

    def begin(self, **kwargs: Any) -> Any:
        txn = self._env.begin(**kwargs)
        if not (kwargs.get("write") and self.armed):
            return txn
        outer = self

        class Txn:
            def __getattr__(self, name: str) -> Any:
                return getattr(txn, name)

            def commit(self) -> None:
                txn.commit()
                outer.armed = False
                raise Interrupt  # where an async exception can land after the C call

        return Txn()


def test_interrupt_just_after_a_group_commit_runs_no_op_twice(storage: Storage) -> None:
    db = storage.db("kv")
    runs: list[bytes] = []

    def op(key: bytes) -> Callable[[Any], bool]:
        def put(txn: Any) -> bool:
            runs.append(key)
            return bool(txn.put(key, b"v", db=db))

        return put

    real = storage._env
    ops = [op(_key(i)) for i in range(6)]
    pending = _Pending()
    storage._direct = pending
    gate = _block_writer(storage)  # parks before the env is swapped: the writer's txn is real
    storage._env = _InterruptAfterCommit(real)
    try:
        outcomes: list[tuple[str, Any]] = [("none", None)] * len(ops)

        def call(i: int) -> None:
            try:
                outcomes[i] = ("ok", storage.write_now(ops[i]))
            except BaseException as exc:  # the test inspects it
                outcomes[i] = ("raised", exc)

        threads = [threading.Thread(target=call, args=(i,)) for i in range(len(ops))]
        for t in threads:
            t.start()
        assert pending.reach(len(ops))
        gate.set()
        for t in threads:
            t.join(30)
    finally:
        storage._env = real
    raised = [value for kind, value in outcomes if kind == "raised"]
    assert len(raised) == 1
    assert isinstance(raised[0], Interrupt)  # the leader's, propagated
    assert [value for kind, value in outcomes if kind == "ok"] == [True] * 5
    assert sorted(runs) == sorted(_key(i) for i in range(6))  # each op ran exactly once
    assert len(_all(storage, "kv")) == 6


def test_a_leaving_leader_passes_the_lead_to_the_oldest_pending_caller(
    storage: Storage,
) -> None:
    first: _Call[None] = _Call()
    second: _Call[None] = _Call()
    storage._direct = [(lambda txn: None, first), (lambda txn: None, second)]
    storage._leader = first  # promoted, then interrupted before it led
    storage._abandon(first)
    with pytest.raises(StorageError, match="interrupted; not committed"):
        first.result()
    assert storage._leader is second
    assert second.sleep(0)  # woken to lead
    assert storage._direct == [(storage._direct[0][0], second)]
    storage._abandon(second)
    assert storage._leader is None
    assert storage._direct == []


def test_before_commit_hooks_run_once_per_txn_after_every_op(storage: Storage) -> None:
    db = storage.db("hooks")
    runs: list[list[bytes]] = []

    def hook(txn: Any) -> None:
        runs.append(sorted(bytes(k) for k, _ in txn.cursor(db=db)))
        txn.put(b"total", str(len(runs[-1])).encode(), db=db)

    def op(key: bytes) -> Callable[[Any], None]:
        def run(txn: Any) -> None:
            txn.put(key, b"", db=db)
            storage.before_commit("count", hook)  # registered once per txn

        return run

    gate = _block_writer(storage)
    futures = [storage.submit(op(_key(i))) for i in range(3)]
    gate.set()
    for fut in futures:
        fut.result(10)
    assert runs == [[_key(0), _key(1), _key(2)]]  # once, after the 3 ops, before the commit
    assert storage.read(lambda t: t.get(b"total", db=db)) == b"3"
    storage.write(op(_key(9)))
    assert len(runs) == 2  # and again in the next txn that registers it


def test_a_failing_hook_fails_only_the_ops_that_registered_it(storage: Storage) -> None:
    db = storage.db("hooks")

    def broken(txn: Any) -> None:
        raise ValueError("hook broke")

    def with_hook(txn: Any) -> None:
        txn.put(b"hooked", b"1", db=db)
        storage.before_commit("broken", broken)

    gate = _block_writer(storage)
    plain = storage.submit(_put_op(db, b"plain", b"1"))
    hooked = storage.submit(with_hook)
    gate.set()
    assert plain.result(10)
    with pytest.raises(ValueError, match="hook broke"):
        hooked.result(10)
    assert storage.read(lambda t: (t.get(b"plain", db=db), t.get(b"hooked", db=db))) == (
        b"1",
        None,
    )


def test_txn_cache_is_kept_across_commits_and_emptied_by_an_abort(storage: Storage) -> None:
    db = storage.db("cached")

    def remember(value: int, write: bool = True) -> Callable[[Any], Any]:
        def run(txn: Any) -> Any:
            if write:  # a txn that writes nothing does not advance LMDB's txn id
                txn.put(b"k", str(value).encode(), db=db)
            cache = storage.txn_cache("test")
            seen = dict(cache)
            cache["last"] = value
            return seen

        return run

    def failing(txn: Any) -> None:
        storage.txn_cache("test")["last"] = "aborted"
        raise ValueError("abort")

    assert storage.write(remember(1)) == {}
    assert storage.write(remember(2)) == {"last": 1}  # the next committed txn keeps it
    with pytest.raises(ValueError):
        storage.write(failing)
    assert storage.write(remember(3)) == {}  # the aborted txn may have changed it: emptied
    assert storage.write(remember(4, write=False)) == {"last": 3}
    assert storage.write(remember(5)) == {}  # after an empty txn: a safe miss


def test_txn_cache_and_before_commit_are_refused_outside_an_op(storage: Storage) -> None:
    with pytest.raises(StorageError, match="txn_cache\\(\\) called outside a write op"):
        storage.txn_cache("x")
    with pytest.raises(StorageError, match="before_commit\\(\\) called outside a write op"):
        storage.before_commit("x", lambda txn: None)
