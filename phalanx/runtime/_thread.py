"""The thread of one incarnation: a ``threading.Thread`` whose ``start`` does not wait.

``Thread.start`` blocks until the new thread has run its bootstrap, and that
thread goes straight on into ``on_start`` holding the GIL: measured, the
starter (a supervisor spawning a child) spent 3.25 voluntary context
switches per spawn inside ``Thread.start``, GIL waits included, before it
blocked again on the child's start flag. :class:`IncarnationThread` returns
as soon as the OS thread exists; the starter then waits once, for what it
needs (the cell's start flag).

It also drops two costs every actor thread paid: the ``Event`` of
``Thread.__init__`` (~5-10 us: see ``_flags``; a :class:`Flag` here) and
the O(threads) sweep of ``threading._shutdown_locks`` on every start and
join (~8 us with 80 live threads), made amortized O(1).

Invariants (the stdlib's, kept for every caller):
- one OS thread per object, started once; the thread identity, its
  ``threading.local`` and ``current_thread()`` are the stdlib's own;
- between ``start()`` and the bootstrap, ``is_alive()`` is True and
  ``join()`` waits (the stdlib has no such window: ``start`` waited it out);
  ``ident`` is None until the bootstrap, as before ``start`` in the stdlib;
- non-daemon threads are in ``threading._shutdown_locks`` from bootstrap to
  exit, so interpreter exit still waits for them; a dead lock left there by
  a thread nobody joined is swept once the set has doubled since the last
  sweep, so the set stays within twice the live threads (plus 64).

These rely on CPython 3.11's ``threading`` internals; on any other version,
or if one is missing, the class is a plain ``threading.Thread``.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from phalanx.runtime._flags import Flag

__all__ = ["FAST_START", "IncarnationThread"]

_t: Any = threading  # the private names below are not in the typeshed stubs
FAST_START = sys.version_info[:2] == (3, 11) and all(
    hasattr(_t, name)
    for name in (
        "_limbo",
        "_active_limbo_lock",
        "_start_new_thread",
        "_set_sentinel",
        "_shutdown_locks",
        "_shutdown_locks_lock",
        "_maintain_shutdown_locks",
        "_dangling",
        "_make_invoke_excepthook",
        "_HAVE_THREAD_NATIVE_ID",
    )
)

# Sweep _shutdown_locks when it holds this many locks (doubled after each sweep).
_sweep_at = 64


class _StartedFlag(Flag):
    """``Thread._started`` as a :class:`Flag`, with the fork hook ``Event`` has."""

    def _at_fork_reinit(self) -> None:
        # threading._after_fork calls this on every thread object in the child.
        fresh = Flag(None, self._flag)
        self._signals = fresh._signals
        self._lock = fresh._lock
        self._waiting = 0


class IncarnationThread(threading.Thread):
    """A non-waiting ``start`` with the stdlib's thread semantics otherwise."""

    def __init__(self, target: Callable[[], Any], name: str, *, daemon: bool) -> None:
        if not FAST_START:
            super().__init__(target=target, name=name, daemon=daemon)
            self._launched = False
            return
        # Thread.__init__ of CPython 3.11, with a Flag for its Event.
        self._target = target
        self._name = name
        self._args = ()
        self._kwargs: dict[str, Any] = {}
        self._daemonic = daemon
        self._ident = None
        if _t._HAVE_THREAD_NATIVE_ID:
            self._native_id = None
        self._tstate_lock = None
        self._started = _StartedFlag()
        self._is_stopped = False
        self._initialized = True
        self._stderr = sys.stderr
        self._invoke_excepthook = _t._make_invoke_excepthook()
        self._launched = False
        _t._dangling.add(self)

    def start(self) -> None:
        """Start the thread; returns without waiting for it to run."""
        if not FAST_START:
            super().start()
            return
        if self._launched or self._started.is_set():
            raise RuntimeError("threads can only be started once")
        with _t._active_limbo_lock:
            _t._limbo[self] = self
        try:
            _t._start_new_thread(self._bootstrap, ())  # type: ignore[attr-defined]
        except Exception:
            with _t._active_limbo_lock:
                del _t._limbo[self]
            raise
        self._launched = True

    def is_alive(self) -> bool:
        """True from ``start()`` until just after the target returns."""
        if self._launched and not self._started.is_set():
            return not self._is_stopped  # started, bootstrap not run yet
        return super().is_alive()

    def join(self, timeout: float | None = None) -> None:
        """Wait until the thread ends (also across the window before its bootstrap)."""
        started = self._started
        if self._launched and not started.is_set():
            if timeout is None:
                started.wait()
            else:
                deadline = time.monotonic() + timeout
                if not started.wait(max(timeout, 0)):
                    return
                timeout = max(0.0, deadline - time.monotonic())
        super().join(timeout)

    if FAST_START:

        def _set_tstate_lock(self) -> None:
            # Thread._set_tstate_lock with the sweep amortized (see the module doc).
            global _sweep_at
            lock = self._tstate_lock = _t._set_sentinel()
            lock.acquire()
            if not self._daemonic:
                with _t._shutdown_locks_lock:
                    locks = _t._shutdown_locks
                    if len(locks) >= _sweep_at:
                        _t._maintain_shutdown_locks()
                        _sweep_at = max(64, 2 * len(locks))
                    locks.add(lock)

        def _stop(self) -> None:
            # Thread._stop removing only this thread's own (released) lock: O(1).
            lock = self._tstate_lock
            if lock is not None:
                assert not lock.locked()
            self._is_stopped = True
            self._tstate_lock = None
            if lock is not None and not self._daemonic:
                with _t._shutdown_locks_lock:
                    _t._shutdown_locks.discard(lock)
