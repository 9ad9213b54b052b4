"""Saga definitions: steps, their context and the registry of kinds (pure data)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, TypeAlias

from phalanx.errors import PhalanxError
from phalanx.supervision import Retry

if TYPE_CHECKING:
    from phalanx.runtime import ActorSystem

__all__ = [
    "DEFAULT_COMPENSATION_RETRY",
    "DEFAULT_RETRY",
    "TERMINAL",
    "Pending",
    "SagaDefinition",
    "SagaError",
    "SagaStatus",
    "Step",
    "StepContext",
    "StepTimeout",
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
    # True when a failed action may still have taken effect (its last ask timed
    # out after the other side committed): its compensation then runs first,
    # before those of the completed steps. It must undo nothing harmlessly.
    compensate_on_failure: bool = False
    # False: the action (and its on_timeout) has no effect but log lines and
    # read-only asks, so a crash may lose its success record: the actor holds
    # that record and commits it with the next commit, always before any step
    # with effects, any compensation, dead letter or alert (a resumed saga then
    # re-runs it). It must have no compensation. Default True: today's one
    # commit per record.
    effects: bool = True
    # True: the action's effects are keyed (by trade id, by the saga id) so that
    # re-running it after a crash, even after later steps ran, repeats nothing,
    # and it has no compensation (it comes after the point of no return). Its
    # success record is held like an effect-free step's, and held records stay
    # held while it runs (records of effect-free steps are committed first):
    # they commit with the next commit, before any step that is neither
    # effect-free nor replay-safe, any compensation, dead letter or alert. A
    # crash re-runs every replay-safe step whose record was held, so a re-run
    # must succeed whenever the first run did (read only what no later step
    # changes, or find its own effects done).
    # On the buy saga (update_position, post_ledger, finalize): 5 saga commits
    # instead of 7. Measured in one process, rounds alternating with and without
    # (150-300 sagas each, pinned): with sync=True a median 8.5 vs 9.0 ms of CPU
    # per saga (113 vs 108/s, 4 pairs); with sync=False within this VM's noise
    # (~0.35 ms expected from the profile: ~175 us per saga commit).
    replay_safe: bool = False

    @property
    def holds_record(self) -> bool:
        """True when its success record may ride on a later commit (effect-free or replay-safe)."""
        return not self.effects or self.replay_safe

    def __post_init__(self) -> None:
        if not self.name or not isinstance(self.name, str):
            raise SagaError(f"a step needs a non-empty name, got {self.name!r}")
        if self.compensate_on_failure and self.compensation is None:
            raise SagaError(f"step {self.name!r}: compensate_on_failure needs a compensation")
        if not self.effects and self.compensation is not None:
            raise SagaError(f"step {self.name!r}: an effect-free step has nothing to compensate")
        if self.replay_safe and self.compensation is not None:
            raise SagaError(
                f"step {self.name!r}: a replay-safe step comes after the point of no return "
                "and has no compensation"
            )
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
