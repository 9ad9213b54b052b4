"""The commit path of :class:`~phalanx.storage._env.Storage`: who runs a batch, and the writer loop.

A batch is committed by whoever holds ``_commit_lock`` and is ``_committer``:
the writer thread (:meth:`_Writer._run`, draining the ``submit`` queue) or a
``write_now`` leader (``_write_now.py``). Both enter through
:meth:`_Writer._commit_as`, which never strands a future: a bug resolves
every future of the batch with :class:`StorageError`, and an interrupt
(a ``BaseException`` raised in the committing caller's thread) settles what
committed, fails the caller's own op and hands the others' uncommitted ops
to the writer thread. The invariants are in ``_env.py``'s docstring.
"""

from __future__ import annotations

import queue
import threading
from concurrent.futures import Future
from typing import Any

from phalanx.errors import StorageError
from phalanx.storage._batch import _BatchCommit
from phalanx.storage._sync import _Call, _Item

__all__: list[str] = []

_MAX_BATCH = 10_000  # ops per transaction; bounds commit latency and txn memory
_STOP = object()


class _Writer(_BatchCommit):
    """Mixin of :class:`Storage`: the commit entry, the hand-offs and the writer loop."""

    _queue: queue.SimpleQueue[Any]
    _submit_lock: threading.Lock
    _commit_lock: threading.Lock
    _committer: threading.Thread | None
    _direct: list[_Item]
    _local: threading.local
    _closed: bool
    _env_closed: bool

    def _check_may_wait(self) -> None:
        current = threading.current_thread()
        if current is self._thread or current is self._committer:
            raise StorageError("nested write from inside a write op would deadlock")
        if getattr(self._local, "reads", 0):
            raise StorageError("write from inside a read op would deadlock")

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
