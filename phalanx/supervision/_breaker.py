"""The circuit breaker: closed -> open -> half_open (one trial) -> closed or open longer.

A pure state machine with an injectable clock and no timer thread: ``open``
becomes ``half_open`` lazily, when the breaker is next used after the reset
timeout. Supervisors use it for children (DESIGN section 4);
:meth:`CircuitBreaker.call` guards single calls such as one ccxt endpoint.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any, Literal, ParamSpec, TypeVar

from phalanx.errors import CircuitOpen, ConfigError
from phalanx.supervision._policy import Breaker

__all__ = ["BreakerState", "CircuitBreaker"]

BreakerState = Literal["closed", "open", "half_open"]
P = ParamSpec("P")
T = TypeVar("T")
_Change = tuple[str, str, float]  # (old, new, reset_timeout at the change)


class CircuitBreaker:
    """Closed -> open -> half_open (one trial) -> closed, or open again with a longer timeout.

    - closed: everything passes; ``failure_threshold`` consecutive failures open it.
    - open: nothing passes until ``opened_until``; then it is half_open.
    - half_open: :meth:`allow` admits ONE trial; its recorded outcome closes
      the circuit (timeout back to base) or reopens it for
      ``min(reset_timeout * multiplier, max_reset_timeout)``.

    Whoever gets ``True`` from :meth:`allow` in half_open must record the
    outcome, or the breaker stays half_open refusing everyone. Outside
    :meth:`call`, any recorded outcome in half_open settles the trial.

    Thread-safe. ``on_change(old, new, reset_timeout)`` runs after every
    transition, outside the lock, in transition order, and may call back into
    the breaker; an exception from it is swallowed.

    Invariants: ``settings.reset_timeout <= reset_timeout <= max_reset_timeout``;
    in half_open at most one trial is in flight.
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
        if failure_threshold < 1:
            raise ConfigError(f"failure_threshold must be >= 1, got {failure_threshold}")
        self.settings = settings
        self.name = name
        self._clock = clock
        self._on_change = on_change
        self._threshold = failure_threshold
        self._lock = threading.Lock()
        self._state: BreakerState = "closed"
        self._reset_timeout = settings.reset_timeout
        self._opened_until = 0.0  # meaningful only while open
        self._failures = 0  # consecutive, counted while closed
        self._trial_in_flight = False  # only ever True while half_open
        self._trials = 0  # half-open trials settled
        # Bumped on every transition: call() ignores an outcome admitted under
        # an older generation (e.g. a slow call from before the circuit opened).
        self._generation = 0
        self._outbox: deque[_Change] = deque()  # transitions not yet told to on_change
        self._notifying = threading.RLock()  # re-entrant: a listener may use the breaker

    # --- internals: the caller holds self._lock --------------------------------

    def _move(self, new: BreakerState) -> None:
        if self._on_change is not None:
            self._outbox.append((self._state, new, self._reset_timeout))
        self._state = new
        self._generation += 1
        self._trial_in_flight = False

    def _advance(self) -> None:
        if self._state == "open" and self._clock() >= self._opened_until:
            self._move("half_open")

    def _open(self, seconds: float) -> None:
        deadline = self._clock() + max(0.0, seconds)
        if self._state == "open":
            self._opened_until = max(self._opened_until, deadline)  # keep the later one
            return
        self._opened_until = deadline
        self._failures = 0
        self._move("open")

    def _admit(self) -> int | None:
        self._advance()
        if self._state == "closed":
            return self._generation
        if self._state == "half_open" and not self._trial_in_flight:
            self._trial_in_flight = True
            return self._generation
        return None

    def _settle(self, ok: bool, generation: int | None) -> None:
        self._advance()
        if generation is not None and generation != self._generation:
            return  # admitted before a transition: says nothing about the current state
        if self._state == "half_open":
            self._trials += 1
            if ok:
                self._reset_timeout = self.settings.reset_timeout
                self._move("closed")
            else:
                grown = self._reset_timeout * self.settings.multiplier
                self._reset_timeout = min(grown, self.settings.max_reset_timeout)
                self._open(self._reset_timeout)
        elif self._state == "closed":
            self._failures = 0 if ok else self._failures + 1
            if self._failures >= self._threshold:
                self._open(self._reset_timeout)
        # open: a late outcome changes nothing.

    def _flush(self) -> None:
        # Deliver queued transitions one at a time, in order. A thread that
        # cannot take _notifying leaves its items to the holder, which re-checks
        # the outbox after releasing, so no item is stranded.
        while self._outbox:  # deque truthiness is atomic; re-checked under the lock
            if not self._notifying.acquire(blocking=False):
                return
            try:
                while True:
                    with self._lock:
                        if not self._outbox:
                            break
                        change = self._outbox.popleft()
                    if self._on_change is not None:
                        with contextlib.suppress(Exception):  # a listener must not break us
                            self._on_change(*change)
            finally:
                self._notifying.release()

    # --- reading ------------------------------------------------------------------

    @property
    def state(self) -> BreakerState:
        """The current state; reading it may move open -> half_open."""
        with self._lock:
            self._advance()
            state = self._state
        self._flush()
        return state

    @property
    def last_state(self) -> BreakerState:
        """The state as last recorded, without advancing it (lock-free, for log lines)."""
        return self._state

    @property
    def reset_timeout(self) -> float:
        """The current reset timeout (grows on failed trials, back to base on close)."""
        return self._reset_timeout

    @property
    def trials(self) -> int:
        """How many half-open trials have been settled (closed or reopened)."""
        return self._trials

    def opened_until(self) -> float | None:
        """Clock time at which the open circuit goes half-open; None unless open."""
        with self._lock:
            self._advance()
            until = self._opened_until if self._state == "open" else None
        self._flush()
        return until

    def snapshot(self) -> dict[str, Any]:
        """A JSON-safe view: name, state, reset_timeout, opened_until_in_s, failures, trials."""
        with self._lock:
            self._advance()
            now = self._clock()
            view: dict[str, Any] = {
                "name": self.name,
                "state": self._state,
                "reset_timeout": self._reset_timeout,
                "opened_until_in_s": (
                    max(0.0, self._opened_until - now) if self._state == "open" else None
                ),
                "failures": self._failures,
                "trials": self._trials,
            }
        self._flush()
        return view

    # --- recording ----------------------------------------------------------------

    def allow(self) -> bool:
        """May one call (or message) go through now? In half_open only the first caller may."""
        with self._lock:
            admitted = self._admit() is not None
        self._flush()
        return admitted

    def record_success(self) -> None:
        """A call succeeded: closes a half-open circuit; resets the count when closed."""
        with self._lock:
            self._settle(True, None)
        self._flush()

    def record_failure(self) -> None:
        """A call failed: reopens a half-open circuit longer; counts toward the threshold."""
        with self._lock:
            self._settle(False, None)
        self._flush()

    def trip(self, reason: str = "") -> None:
        """Force the circuit open now for ``reset_timeout``; no change if already open.

        ``reason`` is for the caller's logs; the breaker does not keep it.
        """
        with self._lock:
            self._advance()  # an expired open circuit is half_open: trip reopens it
            if self._state != "open":
                self._open(self._reset_timeout)
        self._flush()

    def open_for(self, seconds: float) -> None:
        """Stay open at least ``seconds`` from now (a venue ban's Retry-After).

        Keeps the later deadline if already open; does not touch ``reset_timeout``.
        """
        with self._lock:
            self._advance()
            self._open(seconds)
        self._flush()

    # --- guarding one call ----------------------------------------------------------

    def call(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run ``fn`` in the calling thread if allowed, and record its outcome.

        Raises :class:`CircuitOpen` without calling ``fn`` when not allowed.
        An exception from ``fn`` (any ``BaseException``) is a failure and is
        re-raised. A call slower than ``settings.call_timeout`` is a failure
        even though its result is returned: a running Python call cannot be
        abandoned safely, so also give the client the same timeout (ccxt
        ``timeout``, in ms). An outcome that arrives after the breaker changed
        state since admission (e.g. after a ban opened it) is ignored.
        """
        with self._lock:
            generation = self._admit()
            if generation is None:
                if self._state == "open":
                    left = max(0.0, self._opened_until - self._clock())
                    why = f"is open for {left:.3f}s more"
                else:
                    why = "is half-open and its one trial call is in flight"
        self._flush()
        if generation is None:
            raise CircuitOpen(f"circuit {self.name or '<unnamed>'!r} {why}")
        started = self._clock()
        try:
            result = fn(*args, **kwargs)
        except BaseException:
            with self._lock:
                self._settle(False, generation)
            self._flush()
            raise
        limit = self.settings.call_timeout
        in_time = limit is None or self._clock() - started <= limit
        with self._lock:
            self._settle(in_time, generation)
        self._flush()
        return result
