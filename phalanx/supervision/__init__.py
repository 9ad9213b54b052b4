"""Supervision: child specs, OTP supervisors, restart policies, backoff, breakers, decisions."""

from typing import Any

from phalanx.supervision._breaker import BreakerState, CircuitBreaker
from phalanx.supervision._decider import (
    Decider,
    ErrorClass,
    classify,
    default_decider,
    retry_budget,
)
from phalanx.supervision._policy import Backoff, Breaker, Directive, Retry, backoff_delay
from phalanx.supervision._spec import ChildSpec, RestartType, Strategy

__all__ = [
    "Backoff",
    "Breaker",
    "BreakerState",
    "ChildSpec",
    "CircuitBreaker",
    "Decider",
    "Directive",
    "ErrorClass",
    "RestartType",
    "Retry",
    "Strategy",
    "Supervisor",
    "SupervisorRef",
    "backoff_delay",
    "classify",
    "default_decider",
    "retry_budget",
]


def __getattr__(name: str) -> Any:
    # Supervisor is an Actor, and the runtime imports this package: load it on
    # first use so that `phalanx.runtime` and `phalanx.supervision` import in
    # either order.
    if name in ("Supervisor", "SupervisorRef", "AutoShutdown"):
        from phalanx.supervision import _supervisor  # noqa: PLC0415

        return getattr(_supervisor, name)
    raise AttributeError(f"module 'phalanx.supervision' has no attribute {name!r}")
