"""The synchronisation parts of :class:`~phalanx.storage._env.Storage`.

:class:`_Call` is one ``write_now`` caller's slot in a group commit;
:class:`_Gate` keeps reads out while the map is remapped. Both are used only
by the Storage modules (``_env.py``, ``_write_now.py``, ``_writer.py``,
``_batch.py``); the invariants they serve are in
``_env.py``'s docstring.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, InvalidStateError
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Generic, TypeAlias, TypeVar

import lmdb

__all__: list[str] = []

if TYPE_CHECKING:
    Txn: TypeAlias = lmdb.Transaction[bytes]  # buffers=False: values are bytes copies
else:
    Txn = lmdb.Transaction

T = TypeVar("T")
Op = Callable[[Txn], Any]


class _Call(Generic[T]):
    """The future of one ``write_now``: the subset of ``Future`` the commit path uses.

    Lighter than ``Future`` (no Condition: measured ~3 µs less per call), which
    it can be because it has one waiter, its caller, who sleeps on ``_wake``
    and is woken exactly once per sleep: by whoever resolved it (the
    committing thread, after its whole batch), or by a leader passing it the
    lead. Resolved once, by the thread holding the batch it is in (or, before
    any batch took it, by its caller under ``_submit_lock``).
    """

    __slots__ = ("_state", "_value", "_wake")

    def __init__(self) -> None:
        self._state = _PENDING
        self._value: Any = None
        self._wake = threading.Lock()
        self._wake.acquire()

    def set_running_or_notify_cancel(self) -> bool:
        """Mark it taken by a batch (a ``write_now`` is never cancelled): True."""
        self._state = _RUNNING
        return True

    def running(self) -> bool:
        """True once a batch took it, until resolved."""
        return self._state == _RUNNING

    def done(self) -> bool:
        """True once resolved."""
        return self._state >= _RESULT

    def set_result(self, value: T) -> None:
        """Resolve with the op's result."""
        self._resolve(_RESULT, value)

    def set_exception(self, exc: BaseException) -> None:
        """Resolve with the op's exception."""
        self._resolve(_ERROR, exc)

    def _resolve(self, state: int, value: Any) -> None:
        if self._state >= _RESULT:
            raise InvalidStateError(f"write_now call already resolved: {self._value!r}")
        self._value = value  # before the state: a reader seeing done() sees the value
        self._state = state

    def result(self) -> T:
        """The op's result, or its exception raised (only once resolved)."""
        if self._state == _ERROR:
            raise self._value
        value: T = self._value
        return value

    def sleep(self, timeout: float) -> bool:
        """Block until woken (True) or ``timeout`` seconds pass (False)."""
        return self._wake.acquire(timeout=max(timeout, 0.0))

    def wake(self) -> None:
        """Wake the sleeping caller (a no-op if a wake is already pending)."""
        if self._wake.locked():
            self._wake.release()


_PENDING, _RUNNING, _RESULT, _ERROR = range(4)
_Item = tuple[Op, "Future[Any] | _Call[Any]"]


class _OpFailed(Exception):
    """An op raised inside a batch: which one, and what."""

    def __init__(self, index: int, exc: BaseException) -> None:
        super().__init__(index, exc)
        self.index = index
        self.exc = exc


class _Gate:
    """Shared/exclusive gate: many readers, or one map remap (writer-preferring)."""

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._readers = 0
        self._exclusive = False  # held, or waiting for readers to drain

    @contextmanager
    def shared(self) -> Iterator[None]:
        with self._cond:
            while self._exclusive:
                self._cond.wait()
            self._readers += 1
        try:
            yield
        finally:
            with self._cond:
                self._readers -= 1
                if not self._readers:
                    self._cond.notify_all()

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        with self._cond:
            while self._exclusive:
                self._cond.wait()
            self._exclusive = True
            while self._readers:
                self._cond.wait()
        try:
            yield
        finally:
            with self._cond:
                self._exclusive = False
                self._cond.notify_all()
