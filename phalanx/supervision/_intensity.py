"""Pure supervisor decisions: the restart matrix and the restart-intensity window.

No threads, no actors: both are unit-tested with an injected clock.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable

__all__ = ["RestartWindow", "should_restart", "terminated_by_itself"]

# Exit reasons (runtime ExitReason values; repeated here to keep this module pure).
NORMAL, SHUTDOWN, KILLED, CRASHED, START_FAILED = (
    "normal",
    "shutdown",
    "killed",
    "crashed",
    "start_failed",
)


def should_restart(restart: str, reason: str) -> bool:
    """The OTP matrix: permanent always; transient on abnormal exits; temporary never.

    ``normal`` and ``shutdown`` are the normal exits; ``killed``, ``crashed``
    and ``start_failed`` are abnormal.
    """
    if restart == "permanent":
        return True
    if restart == "transient":
        return reason not in (NORMAL, SHUTDOWN)
    return False


def terminated_by_itself(restart: str, reason: str) -> bool:
    """True when a significant child's exit counts for ``auto_shutdown`` (OTP 24).

    A transient child counts when it exits normally; a temporary child on any
    exit. Exits the supervisor caused itself never reach this function.
    """
    if restart == "transient":
        return reason in (NORMAL, SHUTDOWN)
    return restart == "temporary"


class RestartWindow:
    """OTP restart intensity: at most ``intensity`` restarts within ``period`` seconds.

    Invariant (OTP ``supervisor:add_restart``): times are whole seconds of a
    monotonic clock and a restart at ``t`` is inside the window at ``now``
    while ``now - t <= period`` (inclusive). ``intensity=N`` allows N restarts;
    the N+1th inside the window exceeds it.
    """

    def __init__(
        self, intensity: int, period: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.intensity = intensity
        self.period = period
        self._clock = clock
        self._times: deque[int] = deque()

    def add(self) -> bool:
        """Record a restart now; False when that exceeds the intensity."""
        now = math.floor(self._clock())
        times = self._times
        times.append(now)
        while times and now - times[0] > self.period:
            times.popleft()
        return len(times) <= self.intensity

    def count(self) -> int:
        """Restarts currently inside the window."""
        now = math.floor(self._clock())
        return sum(1 for t in self._times if now - t <= self.period)

    def reset(self) -> None:
        """Forget every restart (after an escalation or a circuit opens)."""
        self._times.clear()
