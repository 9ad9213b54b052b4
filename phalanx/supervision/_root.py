"""The root policy: the parent of actors started with ``system.spawn``.

It restarts a crashed or killed actor after its ``Retry`` backoff and never
takes the node down: the root of a trading node must not stop every actor
because one keeps failing. What bounds a crash loop here is the backoff
(exponential up to ``Retry.max``, reset after ``reset_after`` quiet seconds)
and ``max_attempts`` for start failures, after which the actor is stopped for
good with a ``child_start_failed`` event. OTP semantics (intensity,
strategies, escalation) belong to :class:`Supervisor` trees.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from phalanx.supervision._policy import Directive, backoff_delay

if TYPE_CHECKING:
    from phalanx.runtime._cell import ActorCell
    from phalanx.runtime._system import ActorSystem

__all__ = ["RootPolicy"]

_NORMAL, _SHUTDOWN, _CRASHED, _START_FAILED = "normal", "shutdown", "crashed", "start_failed"


@dataclass
class _Backoff:
    consecutive: int = 0
    start_failures: int = 0
    last_failure: float = 0.0


class RootPolicy:
    """Restart-with-backoff parent for top-level spawned actors."""

    def __init__(self, system: ActorSystem) -> None:
        self._system = system
        self._lock = threading.Lock()

    def child_exited(
        self, cell: ActorCell, reason: str, exc: BaseException | None, incarnation: int
    ) -> None:
        """Decide what follows an incarnation end (runs on the exiting thread)."""
        if reason in (_NORMAL, _SHUTDOWN):
            cell.finish(reason)
            return
        if reason == _CRASHED and cell.last_directive in (Directive.STOP, Directive.ESCALATE):
            self._system._event("child_stopped_by_directive", cell.path, error=repr(exc))
            cell.finish(reason)
            return
        with self._lock:
            state: _Backoff = cell.restart_state or _Backoff()
            cell.restart_state = state
            now = time.monotonic()
            if now - state.last_failure > cell.retry.reset_after:
                state.consecutive = 0
            state.consecutive += 1
            state.last_failure = now
            if reason == _START_FAILED:
                state.start_failures += 1
            else:
                state.start_failures = 0
            give_up = state.start_failures >= cell.retry.max_attempts
            delay = backoff_delay(cell.retry, state.consecutive)
        if give_up:
            self._system._event(
                "child_start_failed", cell.path, attempts=state.start_failures, error=repr(exc)
            )
            cell.finish(reason)
            return
        with cell._lock:
            if cell._stopping:
                return
            cell.status = "backoff" if delay > 0 else "restarting"
            self._system._event(
                "actor_crashed",
                cell.path,
                reason=reason,
                error=repr(exc) if exc is not None else None,
                restart_in_s=round(delay, 4),
            )
            cell.restart_timer = self._system.timers.call_later(delay, lambda: self._restart(cell))

    def _restart(self, cell: ActorCell) -> None:
        with cell._lock:
            cell.restart_timer = None
            if cell._stopping:
                return
            cell.status = "restarting"
            cell.restarts += 1
        cell.start_incarnation()
