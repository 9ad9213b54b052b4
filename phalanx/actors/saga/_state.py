"""Saga state: what a saga needs to resume, msgpack-able through ``to_dict``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

from phalanx._evolve import evolve
from phalanx.actors.saga._definition import TERMINAL, SagaDefinition, SagaStatus
from phalanx.actors.saga._protocol import Command, command_from_dict, command_to_dict

__all__ = ["Plan", "SagaState", "StepState", "evolve", "new_saga"]  # evolve: phalanx._evolve


# No __slots__: evolve copies a __dict__ in two updates instead of setting the
# seven fields one by one (measured ~2.7 vs ~4.3 µs; two copies per step).
@dataclass(frozen=True)
class StepState:
    """One step's progress. ``status``: pending|running|done|failed|compensating|
    compensated|compensation_failed."""

    status: str = "pending"
    attempt: int = 0
    comp_attempt: int = 0
    deadline: float | None = None
    result: Any = None
    error: str | None = None
    comp_deadline: float | None = None


@dataclass(frozen=True)
class SagaState:
    """Everything a saga needs to resume; msgpack-able through :meth:`to_dict`."""

    saga_id: str
    kind: str
    input: Mapping[str, Any]
    status: SagaStatus
    steps: Mapping[str, StepState]
    done: tuple[str, ...] = ()  # completed steps, in completion order
    to_compensate: tuple[str, ...] = ()  # compensations still to run, next first
    failed_compensations: tuple[str, ...] = ()
    current: str | None = None  # the step whose action or compensation is in flight
    error: str | None = None
    seq: int = 0  # journal records written
    outbox: tuple[Command, ...] = ()
    finalized: bool = False
    created_at: float = 0.0
    updated_at: float = 0.0

    @property
    def terminal(self) -> bool:
        """True once the saga is completed, compensated or compensation_failed."""
        return self.status in TERMINAL

    @property
    def active(self) -> bool:
        """True while a resumed node must still run it (not terminal, or not finalized)."""
        return not (self.terminal and self.finalized)

    def results(self) -> dict[str, Any]:
        """Results of the completed steps."""
        return {name: self.steps[name].result for name in self.done}

    def to_dict(self) -> dict[str, Any]:
        """A msgpack-able dict; :meth:`from_dict` restores an equal state."""
        return {
            "v": 1,
            "saga_id": self.saga_id,
            "kind": self.kind,
            "input": dict(self.input),
            "status": self.status,
            "steps": {
                name: [
                    s.status,
                    s.attempt,
                    s.comp_attempt,
                    s.deadline,
                    s.result,
                    s.error,
                    s.comp_deadline,
                ]
                for name, s in self.steps.items()
            },
            "done": list(self.done),
            "to_compensate": list(self.to_compensate),
            "failed_compensations": list(self.failed_compensations),
            "current": self.current,
            "error": self.error,
            "seq": self.seq,
            "outbox": [command_to_dict(c) for c in self.outbox],
            "finalized": self.finalized,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        }

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> SagaState:
        """Restore a state written by :meth:`to_dict`."""
        return cls(
            saga_id=raw["saga_id"],
            kind=raw["kind"],
            input=dict(raw["input"]),
            status=raw["status"],
            steps={name: StepState(*row) for name, row in raw["steps"].items()},
            done=tuple(raw["done"]),
            to_compensate=tuple(raw["to_compensate"]),
            failed_compensations=tuple(raw["failed_compensations"]),
            current=raw["current"],
            error=raw["error"],
            seq=raw["seq"],
            outbox=tuple(command_from_dict(c) for c in raw["outbox"]),
            finalized=raw["finalized"],
            created_at=raw["created_at"],
            updated_at=raw["updated_at"],
        )


class Plan(NamedTuple):
    """The outcome of :func:`advance`: commit ``record`` with ``state``, then run ``commands``.

    ``record`` is None for a ``Pending`` poll: nothing durable changed (the
    state's outbox still names the in-flight step), only a timer is needed.
    """

    state: SagaState
    record: dict[str, Any] | None
    commands: tuple[Command, ...]


def new_saga(
    definition: SagaDefinition, saga_id: str, input: Mapping[str, Any], at: float
) -> SagaState:
    """A fresh saga (no record yet); ``advance(state, Started(at))`` begins it."""
    return SagaState(
        saga_id=saga_id,
        kind=definition.kind,
        input=dict(input),
        status="running",
        steps={name: StepState() for name in definition.order},
        created_at=at,
        updated_at=at,
    )
