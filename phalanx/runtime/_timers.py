"""Timers: one scheduler thread per system runs ``send_after``/``send_every`` and backoffs."""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections.abc import Callable
from typing import Any

__all__ = ["Timer", "Timers"]


class Timer:
    """A handle to a scheduled call; :meth:`cancel` stops it (and its repeats)."""

    __slots__ = ("_cancelled", "interval")

    def __init__(self, interval: float | None) -> None:
        self.interval = interval
        self._cancelled = False

    def cancel(self) -> None:
        """Cancel the timer. A call already running finishes; no further call starts."""
        self._cancelled = True

    @property
    def cancelled(self) -> bool:
        """True once :meth:`cancel` was called."""
        return self._cancelled


_Entry = tuple[float, int, Timer, Callable[[], Any]]


class Timers:
    """A heap of deadlines served by one daemon-free thread, joined on :meth:`close`.

    Invariant: callbacks run one at a time on the scheduler thread, in
    deadline order (ties in scheduling order). A callback that raises is
    reported to ``on_error`` and the scheduler carries on.
    """

    def __init__(self, name: str, on_error: Callable[[BaseException], None] | None = None) -> None:
        self._heap: list[_Entry] = []
        self._seq = itertools.count()
        self._cond = threading.Condition()
        self._closed = False
        self._on_error = on_error
        self._thread = threading.Thread(target=self._run, name=f"phalanx-timers:{name}")
        self._thread.start()

    def call_later(self, delay: float, fn: Callable[[], Any]) -> Timer:
        """Run ``fn`` once after ``delay`` seconds."""
        return self._schedule(max(0.0, delay), fn, Timer(None))

    def call_every(self, interval: float, fn: Callable[[], Any]) -> Timer:
        """Run ``fn`` every ``interval`` seconds (fixed delay between runs) until cancelled."""
        if interval <= 0:
            raise ValueError(f"interval must be > 0, got {interval}")
        return self._schedule(interval, fn, Timer(interval))

    def _schedule(self, delay: float, fn: Callable[[], Any], timer: Timer) -> Timer:
        with self._cond:
            if self._closed:
                raise RuntimeError("timers are closed: the actor system is shut down")
            heapq.heappush(self._heap, (time.monotonic() + delay, next(self._seq), timer, fn))
            self._cond.notify()
        return timer

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._closed:
                    if self._heap:
                        wait = self._heap[0][0] - time.monotonic()
                        if wait <= 0:
                            break
                        self._cond.wait(wait)
                    else:
                        self._cond.wait()
                if self._closed:
                    return
                _, _, timer, fn = heapq.heappop(self._heap)
            if timer.cancelled:
                continue
            try:
                fn()
            except Exception as exc:
                if self._on_error is not None:
                    self._on_error(exc)
            if timer.interval is not None and not timer.cancelled:
                try:
                    self._schedule(timer.interval, fn, timer)
                except RuntimeError:
                    return

    def pending(self) -> int:
        """How many calls are scheduled (cancelled ones included until they come due)."""
        with self._cond:
            return len(self._heap)

    def close(self, timeout: float = 5.0) -> None:
        """Drop pending calls and join the scheduler thread. Idempotent."""
        with self._cond:
            self._closed = True
            self._heap.clear()
            self._cond.notify_all()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout)
