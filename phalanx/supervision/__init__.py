"""Supervision: child specs, restart policies, backoff, circuit breakers, decisions."""

from phalanx.supervision._policy import Backoff, Breaker, Directive, Retry, backoff_delay
from phalanx.supervision._spec import ChildSpec, RestartType, Strategy

__all__ = [
    "Backoff",
    "Breaker",
    "ChildSpec",
    "Directive",
    "RestartType",
    "Retry",
    "Strategy",
    "backoff_delay",
]
