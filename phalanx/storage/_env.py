"""One LMDB environment per node, written by one group-committing thread.

LMDB allows one write transaction at a time (a second thread blocks, a second
one on the same thread raises), and ``sync=True`` costs one fsync per commit:
about 3k commits/s here. So every write is an *op*, a function of the write
transaction, queued to the single writer thread. The writer takes every op
queued so far (up to ``_MAX_BATCH``), runs them all in ONE transaction and
commits once. Measured: the writer alone runs ~250k single-put ops/s (~4 µs
each: a future, a closure, ~1 µs of LMDB put); raw puts with sequential keys
run ~0.8M/s at 1,000+ per txn.

:meth:`Storage.write_now` commits from the callers' own threads instead
(leader/follower group commit): one caller at a time is the leader and
commits every pending ``write_now`` op in one transaction; the others sleep
on their own wake lock until their op is resolved, or until the leader
passes the lead to them (to the oldest pending caller) after its commit.
Leadership is only a scheduling hint: safety comes from taking the pending
list under ``_submit_lock`` and committing under ``_commit_lock``, so a
follower that finds the lead stranded (its holder interrupted between its
commit and the hand-off) takes it over after ``_FOLLOW_SLICE``.

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
import time
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any, TypeVar

import lmdb

from phalanx.errors import StorageError
from phalanx.storage._batch import _BatchCommit
from phalanx.storage._sync import Txn, _Call, _Gate, _Item

__all__ = ["Storage", "Txn"]

T = TypeVar("T")

_MAX_BATCH = 10_000  # ops per transaction; bounds commit latency and txn memory
_FOLLOW_SLICE = 0.1  # s; a follower rechecks for a stranded lead this often
_STOP = object()


class Storage(_BatchCommit):
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

    def write_now(self, op: Callable[[Txn], T], timeout: float | None = 30.0) -> T:
        """Commit ``op`` from the calling thread, group-committed with other callers.

        Leader/follower: the first caller with no leader in place leads and
        commits every pending ``write_now`` op in one txn; the callers that
        arrive meanwhile sleep until their op is resolved, and the oldest of
        them leads the next commit. Skips the two thread hand-offs of
        :meth:`write` (measured ~100 µs per call on 2 cores), which matters on
        the durable-mailbox ``tell`` path. Ordering against :meth:`submit` ops
        is by commit, not by call. Raises ``TimeoutError`` if not committed in
        ``timeout`` (withdrawn if no leader took it yet, else it may commit).
        """
        self._check_may_wait()
        if self.readonly:
            raise StorageError(f"storage at {self.path} is open readonly")
        call: _Call[T] = _Call()
        with self._submit_lock:
            if self._closed:
                raise StorageError(f"storage at {self.path} is closed")
            self._direct.append((op, call))
            lead = self._leader is None
            if lead:
                self._leader = call
        try:
            deadline = None if timeout is None else time.monotonic() + timeout
            if not lead:
                lead = self._follow(call, deadline, timeout)
            while lead:
                self._lead(call)
                lead = not call.done() and self._follow(call, deadline, timeout)
        except BaseException:
            self._abandon(call)
            raise
        return call.result()

    def _follow(self, call: _Call[Any], deadline: float | None, timeout: float | None) -> bool:
        """Sleep until ``call`` is resolved (False) or this caller must lead (True)."""
        while True:
            left = (
                _FOLLOW_SLICE
                if deadline is None
                else min(_FOLLOW_SLICE, deadline - time.monotonic())
            )
            woken = call.sleep(left)
            if call.done():
                return False
            with self._submit_lock:
                leader = self._leader
                if leader is call or leader is None or leader.done():
                    self._leader = call  # passed to us, or stranded: take it
                    return True
                if woken or deadline is None or time.monotonic() < deadline:
                    continue
                if self._withdraw(call):
                    raise TimeoutError(f"write not committed within {timeout} s; withdrawn")
            raise TimeoutError(f"write not committed within {timeout} s; it may still commit")

    def _lead(self, own: _Call[Any]) -> None:
        """Commit what is pending (``own`` included, unless another leader took it)."""
        try:
            with self._commit_lock:  # then take the batch: it gathered while we waited
                self._commit_as(None, own=own)
        finally:
            with self._submit_lock:
                if self._leader is own:
                    self._pass_lead()

    def _pass_lead(self) -> None:
        """Caller holds _submit_lock and leads: wake the oldest pending caller to lead."""
        self._leader = None
        for _, fut in self._direct:
            if isinstance(fut, _Call):
                self._leader = fut
                fut.wake()
                return
        orphans, self._direct = self._direct, []  # no caller waits on these: the writer
        self._queue_for_writer(orphans)

    def _withdraw(self, call: _Call[Any]) -> bool:
        """Caller holds _submit_lock. Take ``call`` out of the pending ops if no leader has it."""
        for index, (_, fut) in enumerate(self._direct):
            if fut is call:
                del self._direct[index]
                return True
        return False

    def _abandon(self, call: _Call[Any]) -> None:
        """The caller of ``call`` leaves on an exception: withdraw its op, pass the lead."""
        with self._submit_lock:
            if self._withdraw(call):
                call.set_exception(StorageError("write interrupted; not committed"))
            if self._leader is call:
                self._pass_lead()

    def _commit_as(
        self, items: list[_Item] | None, own: Future[Any] | _Call[Any] | None = None
    ) -> None:
        # Caller holds _commit_lock. ``items`` None: take the pending write_now
        # ops (inside the try, so an interrupt cannot strand a taken batch).
        # ``own``: the calling thread's own future.
        self._committer = threading.current_thread()
        batch: list[_Item] = [] if items is None else items
        handed: list[_Item] = []
        try:
            if items is None:
                with self._submit_lock:
                    batch, self._direct = self._direct[:_MAX_BATCH], self._direct[_MAX_BATCH:]
                batch = [item for item in batch if item[1].set_running_or_notify_cancel()]
            if self._env_closed:
                for _, fut in batch:
                    fut.set_exception(StorageError(f"storage at {self.path} is closed"))
                return
            self._process(batch)
        except Exception as exc:  # a bug here must not strand futures
            err = StorageError(f"storage writer failed: {exc!r}")
            for _, fut in batch:
                if not fut.done():
                    fut.set_exception(err)
        except BaseException:
            # Raised in this thread (an interrupt): it propagates. Once the txn
            # that committed last is settled, nothing unresolved here was
            # committed; the others' ops go to the writer.
            self._settle_committed()
            handed = [item for item in batch if not item[1].done() and item[1] is not own]
            for _, fut in batch:  # own, unless another leader took it
                if fut is own and not fut.done():
                    fut.set_exception(StorageError("write interrupted; not committed"))
            self._hand_to_writer(handed)
            raise
        finally:
            self._committer = None
            # Wake every write_now caller resolved here (the writer wakes those handed to it).
            skip = {id(fut) for _, fut in handed}
            for _, fut in batch:
                if fut is not own and isinstance(fut, _Call) and id(fut) not in skip:
                    fut.wake()

    def _hand_to_writer(self, items: list[_Item]) -> None:
        with self._submit_lock:
            self._queue_for_writer(items)

    def _queue_for_writer(self, items: list[_Item]) -> None:
        # Caller holds _submit_lock.
        if self._closed or self._thread is None:
            for _, fut in items:
                fut.set_exception(StorageError(f"storage at {self.path} is closed"))
                if isinstance(fut, _Call):
                    fut.wake()
            return
        for item in items:
            self._queue.put(item)

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

    def _check_may_wait(self) -> None:
        current = threading.current_thread()
        if current is self._thread or current is self._committer:
            raise StorageError("nested write from inside a write op would deadlock")
        if getattr(self._local, "reads", 0):
            raise StorageError("write from inside a read op would deadlock")

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

    def _run(self) -> None:
        """Writer loop: drain the queue into batches until the stop marker."""
        get, get_nowait = self._queue.get, self._queue.get_nowait
        while True:
            item = get()
            batch: list[_Item] = []
            while item is not _STOP:
                fut = item[1]
                # A cancelled op never runs; one handed over by an interrupted
                # combiner (_hand_to_writer) is already running.
                if fut.running() or fut.set_running_or_notify_cancel():
                    batch.append(item)
                if len(batch) >= _MAX_BATCH:
                    break
                try:
                    item = get_nowait()
                except queue.Empty:
                    break
            if batch:
                with self._commit_lock:
                    self._commit_as(batch)
            if item is _STOP:
                return
