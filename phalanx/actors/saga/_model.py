"""The pure saga model: definitions, state, events, commands and :func:`advance`.

Nothing here does I/O or reads a clock: every event carries its own ``at``
(wall-clock seconds), and backoff jitter is seeded from the saga id, the
step and the attempt, so ``advance`` is a deterministic function of its
inputs. The Saga actor (``_actor.py``) is the I/O edge: it runs the command a
plan asks for, turns the outcome into an event, and commits each plan.

Invariants (checked by the hypothesis tests):

- steps run one at a time, in ``SagaDefinition.order`` (a stable topological
  order of the list by ``depends_on``);
- a step that fails permanently (or runs out of retries) stops the forward
  run; then exactly the completed steps that have a compensation are
  compensated, in reverse completion order, each retried by its
  ``compensation_retry``;
- a compensation that keeps failing emits a ``compensation_failed`` dead
  letter and a critical alert at once, the remaining compensations still
  run, and the saga ends ``compensation_failed``, never ``compensated``;
- every committed plan's commands are the new state's ``outbox``: what a
  resumed saga must (re)do. Only ``Pending`` polls return no record.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from phalanx.actors.saga._definition import (
    TERMINAL,
    Pending,
    SagaDefinition,
    SagaError,
    SagaStatus,
    Step,
    StepContext,
    StepTimeout,
    register_saga,
    saga_definition,
)
from phalanx.actors.saga._protocol import (
    Alert,
    Command,
    Compensate,
    CompensationFailed,
    CompensationPending,
    CompensationSucceeded,
    DeadLetter,
    Event,
    Finalized,
    Finished,
    RunStep,
    ScheduleRetry,
    Started,
    StepFailed,
    StepPending,
    StepSucceeded,
    command_to_dict,
    event_to_dict,
)
from phalanx.actors.saga._state import Plan, SagaState, StepState, evolve, new_saga
from phalanx.supervision import ErrorClass, Retry, backoff_delay

# The model's own name is advance(); the rest is re-exported so that
# ``from phalanx.actors.saga._model import ...`` keeps working.
__all__ = [
    "TERMINAL",
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
    "Pending",
    "Plan",
    "RunStep",
    "SagaDefinition",
    "SagaError",
    "SagaState",
    "SagaStatus",
    "ScheduleRetry",
    "Started",
    "Step",
    "StepContext",
    "StepFailed",
    "StepPending",
    "StepState",
    "StepSucceeded",
    "StepTimeout",
    "advance",
    "command_to_dict",
    "new_saga",
    "register_saga",
    "saga_definition",
]


def _budget(error_class: str, retry: Retry) -> int:
    # Mirrors phalanx.supervision.retry_budget, from the class name (pure input).
    if error_class == ErrorClass.TRANSIENT:
        return retry.max_attempts
    if error_class == ErrorClass.UNKNOWN:
        return max(1, retry.max_attempts // 2)
    return 1


def _delay(state: SagaState, step: str, retry: Retry, attempt: int, phase: str) -> float:
    rng = random.Random(f"{state.saga_id}:{step}:{phase}:{attempt}")  # deterministic jitter
    return backoff_delay(retry, attempt, rng)


def _commit(state: SagaState, event: Event, commands: Sequence[Command], **changes: Any) -> Plan:
    new = evolve(state, seq=state.seq + 1, outbox=tuple(commands), updated_at=event.at, **changes)
    record = {
        "seq": new.seq,
        "at": event.at,
        "event": event_to_dict(event),
        "status": new.status,
        "commands": [command_to_dict(c) for c in new.outbox],
    }
    return Plan(new, record, new.outbox)


def _set(state: SagaState, name: str, **changes: Any) -> dict[str, StepState]:
    return _put(state.steps, name, **changes)


def _put(steps: Mapping[str, StepState], name: str, **changes: Any) -> dict[str, StepState]:
    """A copy of ``steps`` with step ``name`` changed."""
    out = dict(steps)
    out[name] = evolve(out[name], **changes)
    return out


def _forward(state: SagaState, defn: SagaDefinition, event: Event, **changes: Any) -> Plan:
    """Start the next step in order, or complete."""
    done = changes.get("done", state.done)
    if len(done) == len(defn.order):
        return _commit(state, event, [Finished("completed")], status="completed", current=None,
                       **changes)  # fmt: skip
    name = defn.order[len(done)]
    step = defn.step(name)
    deadline = None if step.timeout_s is None else event.at + step.timeout_s
    steps = _put(changes.pop("steps", state.steps), name, status="running", attempt=1,
                 deadline=deadline)  # fmt: skip
    return _commit(state, event, [RunStep(name, 1)], steps=steps, current=name, **changes)


def _backward(
    state: SagaState,
    defn: SagaDefinition,
    event: Event,
    prefix: Sequence[Command] = (),
    **changes: Any,
) -> Plan:
    """Run the next compensation, or end compensated / compensation_failed."""
    base = evolve(state, **changes)
    if not base.to_compensate:
        status = "compensation_failed" if base.failed_compensations else "compensated"
        return _commit(base, event, [*prefix, Finished(status)], status=status, current=None)
    name = base.to_compensate[0]
    timeout = defn.step(name).compensation_timeout_s
    deadline = None if timeout is None else event.at + timeout
    steps = _set(base, name, status="compensating", comp_attempt=1, comp_deadline=deadline)
    return _commit(
        base, event, [*prefix, Compensate(name, 1)], steps=steps, current=name,
        status="compensating",
    )  # fmt: skip


def _check(state: SagaState, event: Any, *, compensation: bool) -> StepState:
    if event.step != state.current:
        raise SagaError(
            f"saga {state.saga_id}: event for step {event.step!r}, "
            f"but {state.current!r} is in flight"
        )
    ss = state.steps[event.step]
    expected = ss.comp_attempt if compensation else ss.attempt
    if event.attempt != expected:
        raise SagaError(
            f"saga {state.saga_id}: stale event for {event.step!r} attempt {event.attempt} "
            f"(current attempt {expected})"
        )
    return ss


def advance(state: SagaState, event: Event, definition: SagaDefinition | None = None) -> Plan:
    """The pure transition: the new state, the journal record and the commands to run.

    Raises :class:`SagaError` for an event that does not fit the state (a
    stale attempt, another step, anything after the end).
    """
    defn = definition or saga_definition(state.kind)
    if isinstance(event, Finalized):
        if not state.terminal:
            raise SagaError(f"saga {state.saga_id} is {state.status}: cannot finalize")
        return _commit(state, event, [], finalized=True)
    if state.terminal:
        raise SagaError(f"saga {state.saga_id} is already {state.status}: {event.tag} refused")
    if isinstance(event, Started):
        if state.seq:
            raise SagaError(f"saga {state.saga_id} has already started")
        return _forward(state, defn, event)
    if isinstance(event, StepSucceeded):
        _check(state, event, compensation=False)
        steps = _set(state, event.step, status="done", result=event.result, error=None)
        return _forward(state, defn, event, steps=steps, done=(*state.done, event.step))
    if isinstance(event, StepPending | CompensationPending):
        is_comp = isinstance(event, CompensationPending)
        _check(state, event, compensation=is_comp)
        delay = max(0.0, event.after_s)
        phase: Literal["action", "compensation"] = "compensation" if is_comp else "action"
        retry = ScheduleRetry(event.step, event.attempt, phase, event.at + delay, delay)
        return Plan(state, None, (retry,))
    if isinstance(event, StepFailed):
        _check(state, event, compensation=False)
        step = defn.step(event.step)
        error = f"{event.error_type}: {event.error_message}"
        if event.attempt < _budget(event.error_class, step.retry):
            nxt = event.attempt + 1
            delay = _delay(state, event.step, step.retry, event.attempt, "action")
            cmd = ScheduleRetry(event.step, nxt, "action", event.at + delay, delay)
            return _commit(state, event, [cmd], steps=_set(state, event.step, attempt=nxt,
                                                           error=error))  # fmt: skip
        todo = tuple(n for n in reversed(state.done) if defn.step(n).compensation is not None)
        if step.compensate_on_failure:  # its effect may have happened: undone first
            todo = (event.step, *todo)
        steps = _set(state, event.step, status="failed", error=error)
        return _backward(state, defn, event, steps=steps, to_compensate=todo,
                         error=f"{event.step}: {error}")  # fmt: skip
    if isinstance(event, CompensationSucceeded):
        _check(state, event, compensation=True)
        steps = _set(state, event.step, status="compensated")
        return _backward(state, defn, event, steps=steps, to_compensate=state.to_compensate[1:])
    if isinstance(event, CompensationFailed):
        _check(state, event, compensation=True)
        step = defn.step(event.step)
        error = f"{event.error_type}: {event.error_message}"
        if event.attempt < _budget(event.error_class, step.compensation_retry):
            nxt = event.attempt + 1
            delay = _delay(state, event.step, step.compensation_retry, event.attempt, "comp")
            cmd = ScheduleRetry(event.step, nxt, "compensation", event.at + delay, delay)
            steps = _set(state, event.step, comp_attempt=nxt, error=error)
            return _commit(state, event, [cmd], steps=steps)
        steps = _set(state, event.step, status="compensation_failed", error=error)
        effects = (
            DeadLetter("compensation_failed", event.step, error),
            Alert("saga_compensation_failed", "critical", event.step, error),
        )
        return _backward(
            state, defn, event, effects, steps=steps, to_compensate=state.to_compensate[1:],
            failed_compensations=(*state.failed_compensations, event.step),
        )  # fmt: skip
    raise SagaError(f"unknown saga event {event!r}")
