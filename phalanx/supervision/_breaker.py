"""The circuit breaker: closed -> open -> half_open (one trial) -> closed or open longer.

A pure state machine with an injectable clock and no timer thread: ``open``
becomes ``half_open`` lazily, when the state is read after the reset timeout.
Supervisors use it for children (DESIGN section 4); :meth:`CircuitBreaker.call`
guards single calls such as one ccxt endpoint.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from typing import Any, Literal, ParamSpec, TypeVar

from phalanx.errors import CircuitOpen
from phalanx.supervision._policy import Breaker

__all__ = ["BreakerState", "CircuitBreaker"]

BreakerState = Literal["closed", "open", "half_open"]
P = ParamSpec("P")
T = TypeVar("T")


class CircuitBreaker:
    """Thread-safe breaker state; ``on_change(old, new, reset_timeout)`` hears transitions.

    Invariants: ``base <= reset_timeout <= max_reset_timeout``; in
    ``half_open`` at most one trial is in flight.
    """

    def __init__(
        self,
        settings: Breaker,
        *,
        clock: Callable[[], float] = time.monotonic,
        on_change: Callable[[str, str, float], None] | None = None,
        name: str = "",
        failure_threshold: int = 5,
    ) -> None:
        self.settings = settings
        self.name = name
        self._clock = clock
        self._on_change = on_change
        self._threshold = failure_threshold
        self._lock = threading.Lock()
        self._state: BreakerState = "closed"
        self._reset_timeout = settings.reset_timeout
        self._opened_until = 0.0
        self._failures = 0
        self._trial_in_flight = False
        self.trials = 0

    # --- state ---------------------------------------------------------------

    def _advance(self) -> list[tuple[str, str]]:
        # Caller holds the lock. open -> half_open once the deadline has passed.
        if self._state == "open" and self._clock() >= self._opened_until:
            self._state = "half_open"
            self._trial_in_flight = False
            return [("open", "half_open")]
        return []

    def _notify(self, changes: list[tuple[str, str]]) -> None:
        if self._on_change is None:
            return
        for old, new in changes:
            with contextlib.suppress(Exception):  # a listener must not break the breaker
                self._on_change(old, new, self._reset_timeout)

    @property
    def state(self) -> BreakerState:
        """The current state (may move open -> half_open as a side effect)."""
        with self._lock:
            changes = self._advance()
            state = self._state
        self._notify(changes)
        return state

    @property
    def last_state(self) -> BreakerState:
        """The state as last recorded, without advancing it (cheap, for log lines)."""
        return self._state

    @property
    def reset_timeout(self) -> float:
        """The current reset timeout (grows on failed trials, back to base on close)."""
        return self._reset_timeout

    def opened_until(self) -> float | None:
        """Clock time when an open circuit goes half-open, or None if not open."""
        with self._lock:
            return self._opened_until if self._state == "open" else None

    def _open(self, duration: float) -> list[tuple[str, str]]:
        old = self._state
        self._state = "open"
        self._opened_until = max(self._opened_until, self._clock() + duration)
        self._trial_in_flight = False
        self._failures = 0
        return [(old, "open")] if old != "open" else []

    # --- transitions ----------------------------------------------------------

    def allow(self) -> bool:
        """May a call (or message) go through now? In half_open, only one trial."""
        with self._lock:
            changes = self._advance()
            if self._state == "closed":
                allowed = True
            elif self._state == "half_open" and not self._trial_in_flight:
                self._trial_in_flight = True
                self.trials += 1
                allowed = True
            else:
                allowed = False
        self._notify(changes)
        return allowed

    def record_success(self) -> None:
        """A call succeeded: a half-open trial closes the circuit."""
        with self._lock:
            changes = self._advance()
            self._failures = 0
            if self._state == "half_open":
                self._state = "closed"
                self._reset_timeout = self.settings.reset_timeout
                self._trial_in_flight = False
                changes.append(("half_open", "closed"))
        self._notify(changes)

    def record_failure(self) -> None:
        """A call failed: a failed trial reopens longer; closed opens at the threshold."""
        with self._lock:
            changes = self._advance()
            if self._state == "half_open":
                self._reset_timeout = min(
                    self._reset_timeout * self.settings.multiplier,
                    self.settings.max_reset_timeout,
                )
                changes += self._open(self._reset_timeout)
            elif self._state == "closed":
                self._failures += 1
                if self._failures >= self._threshold:
                    changes += self._open(self._reset_timeout)
        self._notify(changes)

    def trip(self, reason: str = "") -> None:
        """Force the circuit open now (a supervisor whose child exceeded intensity)."""
        with self._lock:
            changes = [] if self._state == "open" else self._open(self._reset_timeout)
        self._notify(changes)

    def open_for(self, seconds: float) -> None:
        """Stay open at least ``seconds`` from now (e.g. a venue ban's Retry-After)."""
        with self._lock:
            changes = self._open(seconds)
        self._notify(changes)

    # --- guarding one call ----------------------------------------------------

    def call(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run ``fn`` in this thread if allowed, recording the outcome.

        Raises :class:`CircuitOpen` without calling ``fn`` when open. A call
        slower than ``settings.call_timeout`` counts as a failure even though
        its result is returned: Python cannot abandon a running call safely,
        so pass the same timeout to the client too (ccxt ``timeout``).
        """
        if not self.allow():
            until = self.opened_until()
            left = max(0.0, until - self._clock()) if until is not None else 0.0
            raise CircuitOpen(f"circuit {self.name or 'breaker'} is open ({left:.3f}s left)")
        started = self._clock()
        try:
            result = fn(*args, **kwargs)
        except BaseException:
            self.record_failure()
            raise
        limit = self.settings.call_timeout
        if limit is not None and self._clock() - started > limit:
            self.record_failure()
        else:
            self.record_success()
        return result

    def snapshot(self) -> dict[str, Any]:
        """A JSON-safe view for the shell's ``breakers``."""
        state = self.state
        until = self.opened_until()
        return {
            "name": self.name,
            "state": state,
            "reset_timeout_s": self._reset_timeout,
            "opened_until_in_s": max(0.0, until - self._clock()) if until is not None else None,
            "failures": self._failures,
            "trials": self.trials,
        }
