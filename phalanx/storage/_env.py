"""One LMDB environment per node, written by one group-committing thread.

LMDB allows one write transaction at a time (a second thread blocks, a second
one on the same thread raises), and ``sync=True`` costs one fsync per commit:
about 3k commits/s here. So every write is an *op*, a function of the write
transaction, queued to the single writer thread. The writer takes every op
queued so far (up to ``_writer._MAX_BATCH``), runs them all in ONE transaction and
commits once. Measured: the writer alone runs ~250k single-put ops/s (~4 µs
each: a future, a closure, ~1 µs of LMDB put); raw puts with sequential keys
run ~0.8M/s at 1,000+ per txn.

:meth:`Storage.write_now` commits from the callers' own threads instead
(leader/follower group commit, ``_write_now.py``). Whoever commits, writer
thread or leader, runs the batch through ``_writer.py`` into ``_batch.py``'s
one-txn runner; ``_sync.py`` holds the write_now slot and the remap gate.

Invariants:

- An op's future resolves only after the transaction that ran it committed.
- Futures resolve in submission order, so :meth:`Storage.flush` (a no-op
  submitted last) is a barrier for everything submitted before it.
- Ops may run more than once (after map growth, or when a neighbour in the
  batch failed). They must be pure functions of the transaction.
- :meth:`Storage.before_commit` hooks run after every op of the txn, in it:
  a hook that raises fails the txn like a commit failure (ops isolated).
- :meth:`Storage.txn_cache` dicts hold only what this Storage's committed
  txns left there: emptied when a txn aborts, or when the next txn's id
  shows that another writer (another process) committed in between.
- ``set_mapsize`` remaps the file and invalidates open transactions, so reads
  take a shared gate and map growth takes it exclusively.
- Only ``Exception`` is caught around ops. A ``BaseException`` (an actor's
  ``ActorKilled`` landing while its thread leads a write, SystemExit...)
  propagates in the thread it was raised in, is never turned into an error
  another caller could catch and retry, and never strands a future: ops that
  committed get their results (also when the interrupt lands just after
  ``commit()`` returned: LMDB's last txn id tells, and no op runs twice), the
  other callers' uncommitted ops are handed to the writer thread, the raising
  caller's own op is not committed. A
  ``write_now`` caller interrupted (or timed out) while following withdraws
  its op if no leader has taken it yet; otherwise it commits or fails with
  its batch. Either way the lead is passed on: no caller is left waiting.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any, TypeVar

import lmdb

from phalanx.errors import StorageError
from phalanx.storage._sync import Txn, _Call, _Gate, _Item
from phalanx.storage._write_now import _WriteNow
from phalanx.storage._writer import _STOP

__all__ = ["Storage", "Txn"]

T = TypeVar("T")


class Storage(_WriteNow):
    """The node's LMDB environment (``VAR/state.lmdb``) and its single writer.

    Writes go through :meth:`submit` / :meth:`write` (group-committed); reads
    run in the calling thread with :meth:`read` and never wait for the writer.
    ``lmdb`` exceptions never escape: they become :class:`StorageError`.
    """

    def __init__(
        self,
        path: Path,
        *,
        map_size: int = 64 * 2**20,
        sync: bool = True,
        max_dbs: int = 32,
        readonly: bool = False,
        max_map_size: int = 2**40,
    ) -> None:
        self.path = Path(path)
        self.readonly = readonly
        self.sync = sync
        self._max_map_size = max_map_size
        env = None
        try:
            self._env = env = lmdb.open(
                str(self.path),
                map_size=map_size,
                subdir=True,
                lock=True,
                readonly=readonly,
                create=not readonly,
                sync=sync,
                metasync=sync,
                max_dbs=max_dbs,
            )
            # Reopening an existing file maps only the space in use; give the
            # requested headroom back so the first writes do not all MapFull.
            if not readonly and self._env.info()["map_size"] < map_size:
                self._env.set_mapsize(map_size)
            self._map_size = self._env.info()["map_size"]
        except (OSError, lmdb.Error) as exc:
            if env is not None:
                env.close()
            reason = exc.strerror if isinstance(exc, OSError) else str(exc)
            raise StorageError(f"cannot open LMDB environment at {self.path}: {reason}") from exc
        self._gate = _Gate()
        self._local = threading.local()  # .reads: read depth of this thread
        self._dbs: dict[str, Any] = {}  # committed handles; only the writer adds in rw mode
        self._fresh: dict[str, Any] = {}  # opened in the writer's current txn, not committed
        self._txn: Txn | None = None  # the writer's current txn
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._submit_lock = threading.Lock()
        # Invariant: whoever runs a write txn (the writer thread, or a caller of
        # write_now leading) holds _commit_lock and is _committer. Lock order:
        # _commit_lock, then _submit_lock.
        self._commit_lock = threading.Lock()
        self._committer: threading.Thread | None = None
        self._direct: list[_Item] = []  # write_now ops waiting for a leader
        self._leader: _Call[Any] | None = None  # the write_now call leading (under _submit_lock)
        # (txn id, items, results) of the txn being committed, until its futures are set.
        self._committing: tuple[int, list[_Item], list[Any]] | None = None
        # Op-owned caches (txn_cache) and the id of the txn whose commit they
        # reflect. Invariant: they hold what the committed txns wrote, or are empty.
        self._caches: dict[str, dict[Any, Any]] = {}
        self._cache_txnid = -1
        self._hooks: dict[str, Callable[[Txn], None]] = {}  # before_commit, current txn
        self._db_lock = threading.Lock()
        self._closed = False
        self._env_closed = False
        self._stats = {"commits": 0, "ops": 0, "grows": 0, "errors": 0, "max_batch": 0}
        self._thread: threading.Thread | None = None
        if not readonly:
            self._thread = threading.Thread(
                target=self._run, name="phalanx-storage-writer", daemon=False
            )
            self._thread.start()

    # -- public API ---------------------------------------------------------

    @property
    def map_size(self) -> int:
        """Current map size in bytes (doubles on ``MapFullError``)."""
        return self._map_size

    def stats(self) -> dict[str, int]:
        """Writer counters: commits, ops, grows, errors (failed ops), max_batch, map_size."""
        return {**self._stats, "map_size": self._map_size, "queued": self._queue.qsize()}

    def db(self, name: str) -> Any:
        """The handle of named database ``name``, created on first use.

        Resolve handles before :meth:`read`: a read transaction cannot see a
        database created after it began. In readonly mode a missing database
        raises :class:`StorageError`.
        """
        handle = self._dbs.get(name)
        if handle is not None:
            return handle
        if self._env_closed:
            raise StorageError(f"storage at {self.path} is closed")
        if self.readonly:
            with self._gate.shared(), self._db_lock:
                try:
                    handle = self._env.open_db(name.encode(), create=False)
                except lmdb.NotFoundError as exc:
                    raise StorageError(f"no database {name!r} in {self.path}") from exc
                except lmdb.Error as exc:
                    raise self._translate(exc) from exc
            self._dbs[name] = handle
            return handle
        if threading.current_thread() is self._committer:
            if self._txn is None:
                raise StorageError("db() called in the writer thread outside an op")
            # Only the writer may see handles of its uncommitted txn (_fresh).
            handle = self._fresh.get(name)
            if handle is None:  # MapFullError propagates: the batch grows and retries
                handle = self._fresh[name] = self._env.open_db(name.encode(), txn=self._txn)
            return handle
        return self.write(lambda txn: self.db(name))

    def txn_cache(self, name: str) -> dict[Any, Any]:
        """Inside an op only: the dict ``name``, kept from one committed txn to the next.

        For an op that is the only writer of some keys to remember what it
        wrote (decoded) instead of reading it back. It is emptied whenever its
        contents may be stale: when a txn aborts (an op may run again), and
        when a txn does not directly follow the last one this Storage
        committed (another writer, e.g. another process, committed between;
        or the last txn wrote nothing, which leaves LMDB's txn id as it was).
        """
        if self._txn is None:
            raise StorageError("txn_cache() called outside a write op")
        cache = self._caches.get(name)
        if cache is None:
            cache = self._caches[name] = {}
        return cache

    def before_commit(self, name: str, hook: Callable[[Txn], None]) -> None:
        """Inside an op only: run ``hook(txn)`` after every op of this txn, before it commits.

        Registered once per ``name`` per txn (later calls with the same name
        are no-ops), so ops can defer work they share, such as writing a
        balance once however many ops changed it. A hook that raises fails
        the whole txn: its ops are retried one by one, and those whose hook
        fails alone get the error. Hooks run in registration order and must
        not register hooks.
        """
        if self._txn is None:
            raise StorageError("before_commit() called outside a write op")
        if name not in self._hooks:
            self._hooks[name] = hook

    def submit(self, op: Callable[[Txn], T]) -> Future[T]:
        """Queue ``op`` for the writer; the future resolves after its commit."""
        if self.readonly:
            raise StorageError(f"storage at {self.path} is open readonly")
        fut: Future[T] = Future()
        with self._submit_lock:
            if self._closed:
                raise StorageError(f"storage at {self.path} is closed")
            self._queue.put((op, fut))
        return fut

    def write(self, op: Callable[[Txn], T], timeout: float | None = 30.0) -> T:
        """Submit ``op`` and wait for its commit; its exception is re-raised here.

        Raises ``TimeoutError`` if not committed in ``timeout`` (it may still commit).
        """
        self._check_may_wait()
        return self.submit(op).result(timeout)

    def flush(self, timeout: float | None = 30.0) -> None:
        """Barrier: return once everything submitted before it is committed."""
        if not self.readonly:
            self.write(lambda txn: None, timeout)

    def read(self, op: Callable[[Txn], T]) -> T:
        """Run ``op`` in a read transaction in the calling thread."""
        depth = getattr(self._local, "reads", 0)
        if depth:  # re-entrant: the gate is already held by this thread
            return self._read_once(op)
        self._local.reads = 1
        try:
            while True:
                with self._gate.shared():
                    try:
                        return self._read_once(op)
                    except lmdb.MapResizedError:
                        pass  # another process grew the map: adopt it, retry
                self._adopt_map_size()
        finally:
            self._local.reads = 0

    def close(self) -> None:
        """Flush, stop and join the writer thread, close the env. Idempotent."""
        if threading.current_thread() in (self._thread, self._committer):
            raise StorageError("close() called from inside a write op")
        with self._submit_lock:
            first = not self._closed
            self._closed = True
            if first and self._thread is not None:
                self._queue.put(_STOP)
        if self._thread is not None:
            self._thread.join()
        if first:
            with self._commit_lock, self._gate.exclusive():
                self._env_closed = True
                self._env.close()

    def __enter__(self) -> Storage:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- internals ------------------------------------------------------------

    def _read_once(self, op: Callable[[Txn], T]) -> T:
        if self._env_closed:
            raise StorageError(f"storage at {self.path} is closed")
        try:
            with self._env.begin(write=False) as txn:
                return op(txn)
        except lmdb.MapResizedError:
            raise
        except lmdb.Error as exc:
            raise self._translate(exc) from exc
