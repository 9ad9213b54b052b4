"""The reply future of an ask: a :class:`pykka.ThreadingFuture` with a cheaper ``get``.

pykka's ``ThreadingFuture.get`` asks ``Future.get`` for a get-hook result
first, which raises and catches ``NotImplementedError`` on every call without
a hook, and then waits on a ``Condition`` (a new waiter lock, a deque and
Python-level bookkeeping per wait; ``set`` walks the waiters in Python). This
future waits on one lock instead: it is created held and released once, by
whichever of ``set``, ``set_exception`` or ``set_get_hook`` comes first; a
getter acquires it (the blocking wait is one C call) and releases it again
for the next getter.

It stays a pykka ``ThreadingFuture`` for every caller: ``get(timeout=)``
raises :class:`pykka.Timeout`, an exception set on it re-raises with its
traceback, a value can be read any number of times, a second ``set`` raises
``queue.Full``, and ``set_get_hook`` (so ``map``, ``filter``, ``join``,
``reduce``) and :func:`pykka.get_all` work as with pykka's own.
"""

from __future__ import annotations

import _thread
import queue
import sys
import threading
from typing import TYPE_CHECKING, Any, TypeVar

from pykka import Future, ThreadingFuture, Timeout
from pykka._future import _Unset  # pykka is pinned to 4.5
from pykka._threading import ThreadingFutureResult as _Result

if TYPE_CHECKING:
    from pykka._future import GetHookFunc
    from pykka._types import OptExcInfo

__all__ = ["ReplyFuture"]

T = TypeVar("T")


_allocate_lock = threading.Lock
_RLock = _thread.RLock  # threading.RLock() is a Python-level factory of this
_make_result = tuple.__new__
_TIMEOUT_MAX = threading.TIMEOUT_MAX


class ReplyFuture(ThreadingFuture[T]):
    """A ``ThreadingFuture`` whose ``get`` costs one lock acquire when no get-hook is set.

    Invariants: ``_result`` is written once, under ``_guard``, before ``_done``
    is released; ``_done`` is released exactly once (``_released``), and a
    getter that acquired it releases it again, so every getter gets through.
    """

    def __init__(self) -> None:
        # ThreadingFuture.__init__ is skipped on purpose: it builds the Condition
        # this class replaces; every method that would use it is overridden here.
        # Future.__init__ inlined; _get_hook_result is set with the hook (only read then).
        self._get_hook = None
        self._result: _Result | None = None
        self._guard = _RLock()  # a get-hook may read this future again
        self._done = _allocate_lock()
        self._done.acquire()
        self._released = False

    def get(self, *, timeout: float | None = None) -> Any:
        result = self._result
        if result is None:
            if self._get_hook is None:
                done = self._done
                if timeout is None:
                    done.acquire()
                elif (
                    timeout <= 0 or not done.acquire(timeout=min(timeout, _TIMEOUT_MAX))
                ) and not done.acquire(False):  # a zero timeout still sees a set result
                    raise Timeout(f"{timeout} seconds")
                done.release()  # for the next getter
                result = self._result
            if result is None:  # a get-hook is set (before the wait or during it)
                with self._guard:
                    return Future.get(self, timeout=timeout)
        exc_info = result.exc_info
        if exc_info is not None:
            exc_type, exc_value, exc_traceback = exc_info
            assert exc_type is not None
            if exc_value is None:
                exc_value = exc_type()
            if exc_value.__traceback__ is not exc_traceback:
                raise exc_value.with_traceback(exc_traceback)
            raise exc_value
        return result.value

    def _settle(self, result: _Result) -> None:
        with self._guard:
            if self._result is not None or self._get_hook is not None:
                raise queue.Full
            self._result = result
            if not self._released:
                self._released = True
                self._done.release()

    def set(self, value: Any | None = None) -> None:
        # _settle inlined (the reply of every ask), and the result made as a plain
        # tuple of its NamedTuple type (whose own __new__ is Python code).
        result = _make_result(_Result, (value, None))
        with self._guard:
            if self._result is not None or self._get_hook is not None:
                raise queue.Full
            self._result = result
            if not self._released:
                self._released = True
                self._done.release()

    def set_exception(self, exc_info: OptExcInfo | None = None) -> None:
        assert exc_info is None or len(exc_info) == 3
        self._settle(_Result(exc_info=exc_info or sys.exc_info()))

    def set_get_hook(self, func: GetHookFunc[T]) -> None:
        with self._guard:
            if self._result is not None:
                raise queue.Full
            self._get_hook_result = _Unset()
            Future.set_get_hook(self, func)
            if not self._released:  # a getter already waiting goes to the hook
                self._released = True
                self._done.release()
