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
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, ClassVar, Literal, NamedTuple, TypeAlias

from phalanx.errors import PhalanxError
from phalanx.supervision import ErrorClass, Retry, backoff_delay

if TYPE_CHECKING:
    from phalanx.runtime import ActorSystem

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
    "new_saga",
    "register_saga",
    "saga_definition",
]

SagaStatus = Literal["running", "compensating", "completed", "compensated", "compensation_failed"]
TERMINAL: frozenset[str] = frozenset({"completed", "compensated", "compensation_failed"})
Phase = Literal["action", "compensation", "timeout"]

DEFAULT_RETRY = Retry(max_attempts=3, backoff="exponential", base=0.05, max=2.0, jitter=0.1)
DEFAULT_COMPENSATION_RETRY = Retry(
    max_attempts=5, backoff="exponential", base=0.05, max=2.0, jitter=0.1
)


class SagaError(PhalanxError):
    """A saga definition or event that the model refuses (a bug in the caller).

    Permanent for the decider: a Saga actor that hits one does not restart in
    a loop; the message is dead-lettered (``permanent_error``) and the saga
    stays in the journal as it was, for an operator to look at.
    """

    phalanx_error_class = "permanent"


class StepTimeout(PhalanxError, TimeoutError):
    """A step was still Pending at its ``timeout_s``. Permanent: the saga compensates."""

    phalanx_error_class = "permanent"


@dataclass(frozen=True, slots=True)
class Pending:
    """A step result meaning "not done yet: call the action again in ``after_s`` seconds"."""

    after_s: float = 0.05


@dataclass(frozen=True)
class StepContext:
    """What a step action, compensation or ``on_timeout`` sees.

    ``results`` maps each completed step to its result dict; during a
    compensation, ``result`` is the compensated step's own result.
    ``deadline`` is the step's wall-clock timeout (``time.time()`` scale), or None.
    """

    system: ActorSystem
    saga_id: str
    kind: str
    step: str
    input: Mapping[str, Any]
    results: Mapping[str, Any]
    attempt: int
    deadline: float | None
    path: str
    phase: Phase = "action"
    result: Any = None


StepResult: TypeAlias = "Mapping[str, Any] | Pending"
Action: TypeAlias = Callable[[StepContext], "Mapping[str, Any] | Pending"]
CompensationFn: TypeAlias = Callable[[StepContext], "Mapping[str, Any] | Pending | None"]


@dataclass(frozen=True)
class Step:
    """One saga step. Its action, compensation and ``on_timeout`` must be idempotent.

    A resumed saga re-runs the step that was in flight when the node died, so
    re-running an action (or a compensation) with the same ``saga_id`` must
    not repeat its effect: key every external effect by ``ctx.saga_id``.
    """

    name: str
    action: Action
    compensation: CompensationFn | None = None
    timeout_s: float | None = None
    retry: Retry = DEFAULT_RETRY
    depends_on: Sequence[str] = ()
    on_timeout: Action | None = None
    compensation_retry: Retry = DEFAULT_COMPENSATION_RETRY
    # A compensation still Pending (or failing) this long after it began fails
    # for good (-> compensation_failed); None: no bound.
    compensation_timeout_s: float | None = None

    def __post_init__(self) -> None:
        if not self.name or not isinstance(self.name, str):
            raise SagaError(f"a step needs a non-empty name, got {self.name!r}")
        for name in ("timeout_s", "compensation_timeout_s"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise SagaError(f"step {self.name!r}: {name} must be > 0, got {value}")


@dataclass(frozen=True)
class SagaDefinition:
    """A named list of steps; ``order`` is the run order (stable topological sort)."""

    kind: str
    steps: Sequence[Step]
    order: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        if not self.kind:
            raise SagaError("a saga definition needs a kind")
        names = [s.name for s in self.steps]
        if not names:
            raise SagaError(f"saga {self.kind!r} has no steps")
        if len(set(names)) != len(names):
            raise SagaError(f"saga {self.kind!r} has duplicate step names: {names}")
        for s in self.steps:
            missing = [d for d in s.depends_on if d not in names]
            if missing:
                raise SagaError(f"saga {self.kind!r}: step {s.name!r} depends on unknown {missing}")
        order: list[str] = []
        left = list(self.steps)
        while left:
            ready = next((s for s in left if all(d in order for d in s.depends_on)), None)
            if ready is None:
                raise SagaError(
                    f"saga {self.kind!r}: dependency cycle among {[s.name for s in left]}"
                )
            order.append(ready.name)
            left.remove(ready)
        object.__setattr__(self, "order", tuple(order))
        object.__setattr__(self, "_by_name", {s.name: s for s in self.steps})

    def step(self, name: str) -> Step:
        """The step called ``name``."""
        try:
            return self._by_name[name]  # type: ignore[attr-defined,no-any-return]
        except KeyError:
            raise SagaError(f"saga {self.kind!r} has no step {name!r}") from None


_REGISTRY: dict[str, SagaDefinition] = {}


def register_saga(definition: SagaDefinition) -> SagaDefinition:
    """Register (or replace) the definition of ``definition.kind``; returns it."""
    _REGISTRY[definition.kind] = definition
    return definition


def saga_definition(kind: str) -> SagaDefinition:
    """The registered definition of ``kind``; :class:`SagaError` if none."""
    try:
        return _REGISTRY[kind]
    except KeyError:
        known = ", ".join(sorted(_REGISTRY)) or "none"
        raise SagaError(f"no saga kind {kind!r} is registered (known: {known})") from None


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


# --- state ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
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
    new = replace(state, seq=state.seq + 1, outbox=tuple(commands), updated_at=event.at, **changes)
    record = {
        "seq": new.seq,
        "at": event.at,
        "event": event_to_dict(event),
        "status": new.status,
        "commands": [command_to_dict(c) for c in new.outbox],
    }
    return Plan(new, record, new.outbox)


def _set(state: SagaState, name: str, **changes: Any) -> dict[str, StepState]:
    steps = dict(state.steps)
    steps[name] = replace(steps[name], **changes)
    return steps


def _forward(state: SagaState, defn: SagaDefinition, event: Event, **changes: Any) -> Plan:
    """Start the next step in order, or complete."""
    done = changes.get("done", state.done)
    if len(done) == len(defn.order):
        return _commit(state, event, [Finished("completed")], status="completed", current=None,
                       **changes)  # fmt: skip
    name = defn.order[len(done)]
    step = defn.step(name)
    deadline = None if step.timeout_s is None else event.at + step.timeout_s
    base = replace(state, steps=changes.pop("steps", state.steps))
    steps = _set(base, name, status="running", attempt=1, deadline=deadline)
    return _commit(state, event, [RunStep(name, 1)], steps=steps, current=name, **changes)


def _backward(
    state: SagaState,
    defn: SagaDefinition,
    event: Event,
    prefix: Sequence[Command] = (),
    **changes: Any,
) -> Plan:
    """Run the next compensation, or end compensated / compensation_failed."""
    base = replace(state, **changes)
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
