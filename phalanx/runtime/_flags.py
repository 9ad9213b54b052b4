"""Event flags that share one Condition: the lifecycle signals of a cell.

``threading.Event()`` builds a ``Condition(Lock())``, and that constructor
probes three RLock-only methods on the plain Lock, catching an AttributeError
for each: measured 4-6.5 us per Event on the 2-core VM, and a spawn made four
(three in the cell, pykka's ``actor_stopped``). A :class:`Flag` costs ~0.3 us
and shares an RLock with its owner's other flags (and a Condition, made only
when a wait blocks: :class:`Signals`). Its set() takes the RLock directly
(``with cond`` is two Python-level calls) and notifies only when someone
waits: a spawn sets five flags, and hardly ever with a waiter.
"""

from __future__ import annotations

import threading
from _thread import RLock as _RLock
from time import monotonic as _monotonic

__all__ = ["Flag", "Signals"]


class Signals:
    """The lock and Condition that several :class:`Flag`s share.

    RLock-backed: its Condition needs no probes, and ``_is_owned`` is C code.
    The Condition is made on the first wait that blocks: a spawn sets five
    flags and, measured, hardly ever waits on one that is not set yet.
    """

    __slots__ = ("_cond", "lock")

    def __init__(self) -> None:
        self.lock = _RLock()  # threading.RLock() is a Python-level factory of this
        self._cond: threading.Condition | None = None

    @property
    def cond(self) -> threading.Condition:
        """The shared Condition (only read with ``lock`` held, so made once)."""
        cond = self._cond
        if cond is None:
            cond = self._cond = threading.Condition(self.lock)
        return cond


class Flag(threading.Event):
    """``threading.Event`` semantics on a Condition that other flags may share.

    A subclass so it stands wherever an Event is expected (pykka's
    ``actor_stopped``); every public method is its own, none reads Event's state.
    Like any Event, it is not meant to survive ``os.fork`` in a child process.

    Invariants:
    - ``wait`` returns True when the flag was set, or was set at some point
      during the wait (even if cleared since), as ``Event.wait`` does; a
      notify meant for another flag on the same Condition only makes a waiter
      check again;
    - ``_waiting`` counts the threads inside ``wait`` past the first check,
      under the Condition's lock, so ``set`` skips the notify only when
      nobody can be waiting for this flag;
    - ``set`` on a set flag and ``clear`` on a clear one change nothing, so
      both return at once (a lone read of ``_flag`` linearizes them there).
    """

    def __init__(self, signals: Signals | None = None, value: bool = False) -> None:
        # Not Event.__init__: its Condition(Lock()) is the cost this class avoids.
        if signals is None:
            signals = Signals()
        self._signals = signals
        self._lock = signals.lock
        self._flag = value
        self._sets = 0  # set() calls that set it, read by waiters under the lock
        self._waiting = 0

    def is_set(self) -> bool:
        """True while the flag is set."""
        return self._flag

    def set(self) -> None:
        """Set the flag and wake every thread waiting for it."""
        if self._flag:
            return
        with self._lock:
            self._flag = True
            self._sets += 1
            if self._waiting:
                self._signals.cond.notify_all()

    def clear(self) -> None:
        """Reset the flag."""
        if self._flag:
            with self._lock:
                self._flag = False

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the flag is set or ``timeout`` seconds pass; False on timeout."""
        if self._flag:
            return True
        with self._lock:
            if self._flag:
                return True
            sets = self._sets
            cond = self._signals.cond
            self._waiting += 1
            try:
                # Condition.wait_for inlined (no predicate lambda, no extra frame).
                if timeout is None:
                    while self._sets == sets:
                        cond.wait()
                    return True
                deadline = _monotonic() + timeout
                while self._sets == sets:
                    remaining = deadline - _monotonic()
                    if remaining <= 0:
                        return False
                    cond.wait(remaining)
                return True
            finally:
                self._waiting -= 1
