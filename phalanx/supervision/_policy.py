"""Restart policy value types: :class:`Retry`, :class:`Breaker`, and backoff.

Everything here is pure: no threads, no clocks read. The runtime asks
:func:`backoff_delay` how long to wait and owns the timer itself.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from enum import StrEnum
from typing import Literal

from phalanx.errors import ConfigError

__all__ = ["Backoff", "Breaker", "Directive", "Retry", "backoff_delay"]

Backoff = Literal["fixed", "linear", "exponential", "fibonacci"]
_BACKOFFS: tuple[str, ...] = ("fixed", "linear", "exponential", "fibonacci")


class Directive(StrEnum):
    """What a supervisor does with a failure (DESIGN section 4)."""

    RESUME = "resume"  # keep the incarnation; the message fails to its asker or the DLQ
    RESTART = "restart"  # new incarnation; the message is redelivered if retries remain
    STOP = "stop"  # stop the child for good
    ESCALATE = "escalate"  # fail the supervisor itself


@dataclass(frozen=True, slots=True)
class Retry:
    """How a crashed child is restarted and its failing message redelivered.

    ``max_attempts`` counts deliveries of one message: with 5, a message is
    handled at most 5 times, then dead-lettered with ``retries_exhausted``.
    The wait before attempt *n+1* is :func:`backoff_delay` of *n*, capped at
    ``max``, with ``jitter`` as a +/- fraction. After ``reset_after`` quiet
    seconds the backoff starts again from ``base``.
    """

    max_attempts: int = 5
    backoff: Backoff = "exponential"
    base: float = 0.05
    max: float = 5.0
    multiplier: float = 2.0
    jitter: float = 0.1
    reset_after: float = 30.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ConfigError(f"Retry.max_attempts must be >= 1, got {self.max_attempts}")
        if self.backoff not in _BACKOFFS:
            raise ConfigError(f"Retry.backoff must be one of {_BACKOFFS}, got {self.backoff!r}")
        for name in ("base", "max", "reset_after"):
            if getattr(self, name) < 0:
                raise ConfigError(f"Retry.{name} must be >= 0, got {getattr(self, name)}")
        if self.multiplier < 1.0:
            raise ConfigError(f"Retry.multiplier must be >= 1, got {self.multiplier}")
        if not 0.0 <= self.jitter <= 1.0:
            raise ConfigError(f"Retry.jitter must be within [0, 1], got {self.jitter}")


@dataclass(frozen=True, slots=True)
class Breaker:
    """Circuit-breaker settings for a child spec or a guarded call."""

    reset_timeout: float = 1.0
    multiplier: float = 2.0
    max_reset_timeout: float = 60.0
    call_timeout: float | None = None

    def __post_init__(self) -> None:
        if self.reset_timeout <= 0:
            raise ConfigError(f"Breaker.reset_timeout must be > 0, got {self.reset_timeout}")
        if self.multiplier < 1.0:
            raise ConfigError(f"Breaker.multiplier must be >= 1, got {self.multiplier}")
        if self.max_reset_timeout < self.reset_timeout:
            raise ConfigError("Breaker.max_reset_timeout must be >= reset_timeout")
        if self.call_timeout is not None and self.call_timeout <= 0:
            raise ConfigError(f"Breaker.call_timeout must be > 0, got {self.call_timeout}")


def _fibonacci(n: int) -> int:
    a, b = 1, 1
    for _ in range(n - 1):
        a, b = b, a + b
    return a


def backoff_delay(retry: Retry, failures: int, rng: random.Random | None = None) -> float:
    """Seconds to wait before restart number ``failures`` (1-based).

    Invariant: the result is within ``[0, retry.max]``; without jitter it is
    non-decreasing in ``failures``.
    """
    n = max(1, failures)
    if retry.backoff == "fixed":
        delay = retry.base
    elif retry.backoff == "linear":
        delay = retry.base * n
    elif retry.backoff == "exponential":
        # Cap the exponent: 2.0 ** 1100 overflows a float.
        delay = retry.base * retry.multiplier ** min(n - 1, 64)
    else:
        delay = retry.base * _fibonacci(min(n, 90))
    delay = min(delay, retry.max)
    if retry.jitter and delay > 0:
        spread = delay * retry.jitter
        delay += (rng or random).uniform(-spread, spread)
    return max(0.0, min(delay, retry.max))
