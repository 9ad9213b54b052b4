"""The batch commit of :class:`~phalanx.storage._env.Storage`: one txn, isolated failures.

Whoever holds ``_commit_lock`` (the writer thread, or a ``write_now``
leader) runs a batch of ops here: all in one write transaction, committed
once. An op that raises is rerun alone so it fails only its own future; a
full map doubles and the same batch is retried; an interrupt that lands
after the commit is settled from LMDB's last txn id (``_settle_committed``),
so no op runs twice. The invariants are in ``_env.py``'s docstring.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import lmdb

from phalanx.errors import StorageError
from phalanx.storage._sync import Txn, _Call, _Gate, _Item, _OpFailed

__all__: list[str] = []


class _BatchCommit:
    """Mixin of :class:`Storage`: the txn runner and its map growth (no state of its own)."""

    path: Path
    _env: Any
    _gate: _Gate
    _map_size: int
    _max_map_size: int
    _stats: dict[str, int]
    _committing: tuple[int, list[_Item], list[Any]] | None
    _caches: dict[str, dict[Any, Any]]
    _cache_txnid: int
    _txn: Txn | None
    _hooks: dict[str, Any]
    _dbs: dict[str, Any]
    _fresh: dict[str, Any]
    _thread: threading.Thread | None

    def _translate(self, exc: BaseException) -> BaseException:
        if isinstance(exc, lmdb.Error):
            err = StorageError(f"LMDB error in {self.path}: {exc}")
            err.__cause__ = exc
            return err
        return exc

    def _adopt_map_size(self) -> None:
        with self._gate.exclusive():
            self._env.set_mapsize(0)
            self._map_size = self._env.info()["map_size"]

    def _grow(self) -> None:
        new = self._map_size * 2
        if new > self._max_map_size:
            raise StorageError(f"LMDB map at {self.path} would exceed {self._max_map_size} bytes")
        with self._gate.exclusive():
            self._env.set_mapsize(new)
            self._map_size = self._env.info()["map_size"]
        self._stats["grows"] += 1

    def _process(self, items: list[_Item]) -> None:
        """Commit ``items``; a failing op fails only its own future."""
        while items:
            failure = self._try_commit(items)
            if failure is None:
                return
            index, exc = failure
            if len(items) == 1:
                self._fail(items[0][1], exc)
                return
            if index < 0:  # the commit itself failed: isolate every op
                for item in items:
                    self._process([item])
                return
            if index:
                self._process(items[:index])  # these ran fine before the fault
            self._process([items[index]])  # rerun alone, after its predecessors
            items = items[index + 1 :]

    def _try_commit(self, items: list[_Item]) -> tuple[int, BaseException] | None:
        """Run ``items`` in one txn. None if committed, else (failed index or -1, exc)."""
        while True:
            try:
                results = self._run_txn(items)
            except _OpFailed as failed:
                return failed.index, failed.exc
            except lmdb.MapFullError:
                try:
                    self._grow()  # nothing was committed: retry the same batch
                except (StorageError, lmdb.Error) as exc:
                    return -1, exc
                continue
            except lmdb.MapResizedError:
                self._adopt_map_size()
                continue
            except lmdb.Error as exc:
                return -1, exc
            break
        try:
            self._stats["commits"] += 1
            self._stats["ops"] += len(items)
            self._stats["max_batch"] = max(self._stats["max_batch"], len(items))
        finally:
            # Committed: every future gets its result, even if an interrupt
            # lands here (it propagates once they are all set).
            for (_, fut), result in zip(items, results, strict=True):
                if not fut.done():
                    fut.set_result(result)
            self._committing = None
        return None

    def _settle_committed(self) -> None:
        """After an interrupt: resolve the ops of a txn that committed, futures not yet set.

        An interrupt can land between ``txn.commit()`` returning and the
        results reaching the futures; LMDB's last txn id tells whether that
        txn committed. (A txn that wrote nothing does not advance it: its ops
        then run again, which is the same as running them once.)
        """
        committing, self._committing = self._committing, None
        if committing is None:
            return
        txn_id, items, results = committing
        if self._env.info()["last_txnid"] < txn_id or len(results) != len(items):
            return
        for (_, fut), result in zip(items, results, strict=True):
            if not fut.done():
                fut.set_result(result)

    def _run_txn(self, items: list[_Item]) -> list[Any]:
        """Run and commit; on any exception the txn is aborted and nothing is kept."""
        txn = self._env.begin(write=True)
        committed = False
        txn_id = -1
        try:
            txn_id = txn.id()  # a write txn's id: last committed + 1
            if txn_id != self._cache_txnid + 1:
                self._caches.clear()  # someone else committed since: stale
            self._txn = txn
            results: list[Any] = []
            for index, (op, _) in enumerate(items):
                try:
                    results.append(op(txn))
                except lmdb.MapFullError:
                    raise
                except Exception as exc:
                    raise _OpFailed(index, exc) from exc
                except BaseException as exc:
                    if threading.current_thread() is not self._thread:
                        raise  # raised in a caller's thread (an interrupt): its own
                    # Nothing interrupts the writer: the op raised it; its owner gets it.
                    raise _OpFailed(index, exc) from exc
            for hook in list(self._hooks.values()):
                try:
                    hook(txn)
                except lmdb.MapFullError:
                    raise
                except Exception as exc:
                    raise _OpFailed(-1, exc) from exc  # -1: isolate every op
                except BaseException as exc:
                    if threading.current_thread() is not self._thread:
                        raise
                    raise _OpFailed(-1, exc) from exc
            # Kept until the futures are set: an interrupt right after commit()
            # returns is then settled by _settle_committed, not run twice.
            self._committing = (txn_id, items, results)
            txn.commit()
            committed = True
            return results
        finally:
            self._txn = None
            self._hooks.clear()
            if committed:
                self._dbs.update(self._fresh)
                self._cache_txnid = txn_id
            else:
                self._caches.clear()  # they may hold what this txn wrote
                self._cache_txnid = -1
                txn.abort()  # LMDB closes handles opened in an aborted txn
            self._fresh.clear()

    def _fail(self, fut: Future[Any] | _Call[Any], exc: BaseException) -> None:
        self._stats["errors"] += 1
        fut.set_exception(self._translate(exc))
