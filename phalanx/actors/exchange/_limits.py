"""Client-side limits: a weighted token bucket and an adaptive timeout."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable

__all__ = ["LatencyWindow", "TokenBucket"]


class TokenBucket:
    """``rate`` tokens per second, holding at most ``burst``; a call takes ``weight``.

    Invariant: over any window of T seconds, at most ``burst + rate * T``
    weight is granted. ``acquire`` waits (on an Event, interruptible by
    :meth:`close`) rather than refusing: the caller is the connection actor,
    and its mailbox is the queue.
    """

    def __init__(
        self, rate: float, burst: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._tokens = burst
        self._stamp = clock()
        self._lock = threading.Lock()
        self._closed = threading.Event()

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now

    def acquire(self, weight: float = 1.0) -> tuple[float, float]:
        """Take ``weight`` tokens, waiting as needed; returns (seconds waited, headroom left)."""
        waited = 0.0
        lock = self._lock
        while True:
            with lock:
                # _refill() inlined: this runs before every exchange call.
                now = self._clock()
                burst = self.burst
                tokens = min(burst, self._tokens + (now - self._stamp) * self.rate)
                self._stamp = now
                if tokens >= weight or tokens >= burst:
                    self._tokens = tokens = tokens - weight  # above burst: into debt
                    return waited, tokens
                self._tokens = tokens
                delay = (min(weight, burst) - tokens) / self.rate
            if self._closed.wait(delay):
                return waited, 0.0
            waited += delay

    def headroom(self) -> float:
        """Tokens available now (negative while in debt)."""
        with self._lock:
            self._refill()
            return self._tokens

    def close(self) -> None:
        """Release any waiter (on stop)."""
        self._closed.set()


class LatencyWindow:
    """Recent call latencies; timeout = p95 x 1.5, clamped to bounds."""

    def __init__(self, minimum_ms: int, maximum_ms: int, default_ms: int, size: int = 100) -> None:
        self.minimum_ms = minimum_ms
        self.maximum_ms = maximum_ms
        self.default_ms = default_ms
        self._samples: deque[float] = deque(maxlen=size)
        self._since = 0
        self._cached: int | None = None

    def add(self, latency_ms: float) -> None:
        self._samples.append(latency_ms)
        self._since += 1
        if self._since >= 16:  # a sort of 100 floats per call is wasted work
            self._since = 0
            self._cached = None

    def p95(self) -> float | None:
        if len(self._samples) < 5:
            return None
        ordered = sorted(self._samples)
        return ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]

    def timeout_ms(self) -> int:
        """The timeout for the next call (recomputed every 16 samples)."""
        if self._cached is None:
            p95 = self.p95()
            if p95 is None:
                return self.default_ms
            self._cached = int(min(self.maximum_ms, max(self.minimum_ms, p95 * 1.5)))
        return self._cached
