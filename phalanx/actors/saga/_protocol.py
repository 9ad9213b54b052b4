"""Saga commands (what the actor must do) and events (what happened), as plain data.

Commands are journaled as the state's outbox, events as the journal
records' ``event``; both convert to msgpack-able dicts tagged by ``tag``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, TypeAlias

__all__ = [
    "Alert",
    "Command",
    "Compensate",
    "CompensationFailed",
    "CompensationPending",
    "CompensationSucceeded",
    "DeadLetter",
    "Event",
    "Finalized",
    "Finished",
    "RunStep",
    "ScheduleRetry",
    "Started",
    "StepFailed",
    "StepPending",
    "StepSucceeded",
    "command_from_dict",
    "command_to_dict",
    "event_to_dict",
]

# --- commands (what the actor must do; journaled as the state's outbox) ------


@dataclass(frozen=True, slots=True)
class RunStep:
    """Run ``step``'s action (attempt ``attempt``)."""

    step: str
    attempt: int
    tag: ClassVar[str] = "run_step"


@dataclass(frozen=True, slots=True)
class Compensate:
    """Run ``step``'s compensation (attempt ``attempt``)."""

    step: str
    attempt: int
    tag: ClassVar[str] = "compensate"


@dataclass(frozen=True, slots=True)
class ScheduleRetry:
    """Run ``step``'s action or compensation (``phase``) again at ``due_at``."""

    step: str
    attempt: int
    phase: Literal["action", "compensation"]
    due_at: float
    delay_s: float
    tag: ClassVar[str] = "schedule_retry"


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """Record a dead letter; the actor fills ``dead_letter_id`` before committing."""

    reason: str
    step: str
    error: str
    dead_letter_id: str | None = None
    tag: ClassVar[str] = "dead_letter"


@dataclass(frozen=True, slots=True)
class Alert:
    """Publish ``alert_fired`` on the event stream."""

    alert: str
    severity: str
    step: str
    error: str
    tag: ClassVar[str] = "alert"


@dataclass(frozen=True, slots=True)
class Finished:
    """The saga reached ``status``: announce it, then commit :class:`Finalized`."""

    status: str
    tag: ClassVar[str] = "finished"


Command: TypeAlias = RunStep | Compensate | ScheduleRetry | DeadLetter | Alert | Finished
_COMMANDS: dict[str, type[Any]] = {
    c.tag: c for c in (RunStep, Compensate, ScheduleRetry, DeadLetter, Alert, Finished)
}


def command_to_dict(cmd: Command) -> dict[str, Any]:
    """A msgpack-able dict of ``cmd`` (``{"tag": ..., fields...}``)."""
    out: dict[str, Any] = {"tag": cmd.tag}
    for name in cmd.__slots__:
        out[name] = getattr(cmd, name)
    return out


def command_from_dict(raw: Mapping[str, Any]) -> Command:
    """Inverse of :func:`command_to_dict`."""
    fields = dict(raw)
    cls = _COMMANDS[fields.pop("tag")]
    cmd: Command = cls(**fields)
    return cmd


# --- events (what happened; the inputs of advance) ----------------------------


@dataclass(frozen=True, slots=True)
class Started:
    """Begin the saga."""

    at: float
    tag: ClassVar[str] = "started"


@dataclass(frozen=True, slots=True)
class StepSucceeded:
    """``step``'s action (or ``on_timeout``) returned ``result``."""

    step: str
    attempt: int
    result: Any
    at: float
    tag: ClassVar[str] = "step_succeeded"


@dataclass(frozen=True, slots=True)
class StepPending:
    """``step``'s action returned :class:`Pending`: poll again after ``after_s``."""

    step: str
    attempt: int
    after_s: float
    at: float
    tag: ClassVar[str] = "step_pending"


@dataclass(frozen=True, slots=True)
class StepFailed:
    """``step``'s action raised; ``error_class`` is the decider's classification."""

    step: str
    attempt: int
    error_type: str
    error_message: str
    error_class: str  # transient | permanent | unknown
    at: float
    tag: ClassVar[str] = "step_failed"


@dataclass(frozen=True, slots=True)
class CompensationSucceeded:
    """``step``'s compensation finished."""

    step: str
    attempt: int
    at: float
    tag: ClassVar[str] = "compensation_succeeded"


@dataclass(frozen=True, slots=True)
class CompensationPending:
    """``step``'s compensation returned :class:`Pending`."""

    step: str
    attempt: int
    after_s: float
    at: float
    tag: ClassVar[str] = "compensation_pending"


@dataclass(frozen=True, slots=True)
class CompensationFailed:
    """``step``'s compensation raised."""

    step: str
    attempt: int
    error_type: str
    error_message: str
    error_class: str
    at: float
    tag: ClassVar[str] = "compensation_failed"


@dataclass(frozen=True, slots=True)
class Finalized:
    """The terminal commands ran: the saga leaves the active index."""

    at: float
    tag: ClassVar[str] = "finalized"


Event: TypeAlias = (
    Started
    | StepSucceeded
    | StepPending
    | StepFailed
    | CompensationSucceeded
    | CompensationPending
    | CompensationFailed
    | Finalized
)


def event_to_dict(event: Event) -> dict[str, Any]:
    """A msgpack-able dict of ``event``."""
    out: dict[str, Any] = {"tag": event.tag}
    for name in event.__slots__:
        out[name] = getattr(event, name)
    return out
