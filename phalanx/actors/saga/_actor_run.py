"""Running one work command of a saga: an action, its ``on_timeout``, or a compensation.

Functions of :class:`~phalanx.actors.saga._actor.SagaActor` taking the actor,
bound in its class body as its methods.

Invariants:

- every outcome of a user function becomes an :class:`Event` (``_run`` never
  raises for it): an exception is classified by
  ``phalanx.supervision.classify``, a result that is not plain data fails the
  step permanently, a ``Pending`` becomes a pending event;
- a step past its deadline runs ``on_timeout`` (which may be ``Pending`` for up
  to another ``timeout_s``) or fails with :class:`StepTimeout`; a compensation
  past its ``comp_deadline`` fails with :class:`StepTimeout`;
- a ``Pending`` poll is never scheduled later than the next timeout due.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from phalanx.actors.saga._model import (
    Command,
    Compensate,
    CompensationFailed,
    CompensationPending,
    CompensationSucceeded,
    Event,
    Pending,
    RunStep,
    SagaError,
    ScheduleRetry,
    StepContext,
    StepFailed,
    StepPending,
    StepSucceeded,
    StepTimeout,
)
from phalanx.actors.saga._plain import to_plain
from phalanx.actors.saga._state import evolve
from phalanx.supervision import classify

if TYPE_CHECKING:
    from phalanx.actors.saga._actor import SagaActor

__all__: list[str] = []

_ERROR_TEXT = 500  # characters of an error message kept in the journal


def _qualname(exc: BaseException) -> str:
    cls = type(exc)
    return cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__name__}"


def _poll_delay(self: SagaActor, retry: ScheduleRetry) -> float:
    """The Pending delay, cut so the poll is never later than the next timeout due."""
    ss, step = self.state.steps[retry.step], self.definition.step(retry.step)
    now = time.time()
    if retry.phase == "compensation":
        due = ss.comp_deadline
    elif ss.deadline is not None and step.timeout_s is not None and now >= ss.deadline:
        due = ss.deadline + step.timeout_s  # on_timeout is polling: its hard limit
    else:
        due = ss.deadline
    if due is None or now >= due:
        return retry.delay_s
    return min(retry.delay_s, due - now)


def _run(self: SagaActor, cmd: Command) -> Event:
    """Run one action or compensation; every outcome becomes an event (never raises)."""
    if isinstance(cmd, ScheduleRetry):
        compensation = cmd.phase == "compensation"
    elif isinstance(cmd, RunStep | Compensate):
        compensation = isinstance(cmd, Compensate)
    else:
        raise SagaError(f"saga {self.saga_id}: {cmd!r} is not a work command")
    name, attempt = cmd.step, cmd.attempt
    step, ss = self.definition.step(name), self.state.steps[name]
    ctx = evolve(
        self._ctx, step=name, results=self.state.results(), attempt=attempt,
        deadline=ss.deadline, phase="compensation" if compensation else "action",
        result=ss.result,
    )  # fmt: skip
    if compensation:
        if ss.comp_deadline is not None and time.time() >= ss.comp_deadline:
            exc = StepTimeout(
                f"compensation of {name!r} not done after {step.compensation_timeout_s}s"
            )
            return self._failed(CompensationFailed, name, attempt, exc)
        return self._compensate(ctx, step.compensation)
    fn = step.action
    if ss.deadline is not None and step.timeout_s is not None and time.time() >= ss.deadline:
        # Past the deadline: on_timeout decides (it may Pending while it cleans
        # up, for up to another timeout_s); without one, the step fails.
        if step.on_timeout is None or time.time() >= ss.deadline + step.timeout_s:
            exc = StepTimeout(f"step {name!r} still pending after {step.timeout_s}s")
            return self._failed(StepFailed, name, attempt, exc)
        fn, ctx = step.on_timeout, replace(ctx, phase="timeout")
    try:
        out = fn(ctx)
    except Exception as exc:
        return self._failed(StepFailed, name, attempt, exc)
    if isinstance(out, Pending):
        return StepPending(name, attempt, out.after_s, time.time())
    try:
        result = to_plain(out)
    except SagaError as exc:
        return StepFailed(name, attempt, _qualname(exc), str(exc), "permanent", time.time())
    return StepSucceeded(name, attempt, result, time.time())


def _compensate(self: SagaActor, ctx: StepContext, fn: Any) -> Event:
    try:
        out = fn(ctx) if fn is not None else None
    except Exception as exc:
        return self._failed(CompensationFailed, ctx.step, ctx.attempt, exc)
    if isinstance(out, Pending):
        return CompensationPending(ctx.step, ctx.attempt, out.after_s, time.time())
    return CompensationSucceeded(ctx.step, ctx.attempt, time.time())


def _failed(self: SagaActor, kind: Any, name: str, attempt: int, exc: Exception) -> Event:
    event: Event = kind(name, attempt, _qualname(exc), str(exc)[:_ERROR_TEXT],
                        classify(exc).value, time.time())  # fmt: skip
    return event
