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
from phalanx.storage import Storage


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
