"""Committing a saga's plan: record + snapshot + outbox in ONE LMDB transaction.

Functions of :class:`~phalanx.actors.saga._actor.SagaActor` taking the actor,
bound in its class body as its methods. ``_apply`` carries out the plan of
:func:`advance`: it commits it (``Storage.write_now``), then sets ``_run_now``
when the next command is due now and no control signal is queued, or wakes
the saga later.

Invariants:

- a dead letter gets its id before the commit that journals it, so a resumed
  incarnation finds it in the store and does not record it twice;
- a saga that ends with no dead letter or alert to issue is finalized in the
  same transaction (its records unchanged: the end, then "finalized"); with
  effects, ``_finish`` finalizes only after ``_step`` has issued them;
- the success record of an effect-free step (``Step.effects=False``) or of a
  replay-safe one (``Step.replay_safe``: keyed effects, no compensation) may be
  held instead of committed: held records go, in order, into the transaction
  of the next commit, which always happens before any other step runs
  (neither effect-free nor replay-safe), before any compensation, dead letter
  or alert, and before the
  handler returns (so no held record outlives a handler, and GetSaga never
  sees one). The records and their order are unchanged; only their grouping
  into transactions is. A held record's ``saga_step`` event and log line
  follow the commit that contains it, in order. A crash loses only held
  records: the resumed saga re-runs those steps (a replay-safe one finds its
  keyed effects done and repeats none). Records of effect-free steps are
  committed before a replay-safe step runs, so a re-run of an effect-free step
  (a check that may now answer otherwise) never comes after a replay-safe
  effect. ``introspect`` (the shell's view) reads the live state, so it may
  show a held step as succeeded before its record commits.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from phalanx._ids import new_id
from phalanx.actors.saga._actor_end import _END_EVENTS
from phalanx.actors.saga._model import (
    Command,
    DeadLetter,
    Finalized,
    Finished,
    Plan,
    RunStep,
    SagaState,
    ScheduleRetry,
    StepSucceeded,
    advance,
    command_to_dict,
)
from phalanx.actors.saga._state import evolve
from phalanx.storage._env import Txn

if TYPE_CHECKING:
    from phalanx.actors.saga._actor import SagaActor

__all__: list[str] = []


def _apply(self: SagaActor, plan: Plan) -> None:
    if plan.record is None:  # a Pending poll: nothing durable changed
        retry = plan.commands[0]
        assert isinstance(retry, ScheduleRetry)
        self._wake(self._poll_delay(retry))
        return
    commands, state, record = plan.commands, plan.state, plan.record
    if any(isinstance(c, DeadLetter) and c.dead_letter_id is None for c in commands):
        commands = tuple(
            replace(c, dead_letter_id=new_id())
            if isinstance(c, DeadLetter) and c.dead_letter_id is None
            else c
            for c in commands
        )
        state = evolve(state, outbox=commands)
        record = {**record, "commands": [command_to_dict(c) for c in commands]}
    # A saga that ends with no dead letter or alert to issue is finalized in
    # the same transaction (its records unchanged: the end, then "finalized");
    # with effects, _finish finalizes only after _step has issued them.
    final = None
    if state.terminal and all(isinstance(c, Finished) for c in commands):
        final = advance(state, Finalized(time.time()), self.definition)
    event = record["event"]
    step = event.get("step")
    note = None
    if step is not None:
        ss = state.steps[step]
        note = {"step": step, "outcome": event["tag"], "attempt": event["attempt"],
                "status": ss.status, "error": ss.error}  # fmt: skip
    if note is not None and self._may_hold(event, commands):
        self._held.append((record, note))
        self.state = state
        self._run_now = not self._ending()  # commands: the next RunStep, due now
        return
    held, self._held = self._held, []
    self._journal.commit(self._plan_op(record, state, final, [r for r, _ in held]))
    self.state = state if final is None else final.state
    for _, held_note in held:
        self._note("saga_step", **held_note)
    if note is not None:
        self._note("saga_step", **note)
    if final is not None:
        self._note(_END_EVENTS[state.status], status=state.status, error=state.error)
        self.stop()
        return
    self._effects_due = True
    work = next((c for c in commands if isinstance(c, ScheduleRetry)), None)
    if work is not None and work.delay_s > 0:
        self._wake(work.delay_s)
    elif not self._ending():
        self._run_now = True  # _step runs it next, in this handler


def _plan_op(
    self: SagaActor,
    record: dict[str, Any],
    state: SagaState,
    final: Plan | None,
    held: list[dict[str, Any]],
) -> Callable[[Txn], None]:
    """``held`` records, ``record`` and the snapshot; with ``final``, its record too."""
    if final is None:
        return self._journal.plan_op(
            self.saga_id, record, self._packer.pack(state), active=state.active, earlier=held
        )
    assert final.record is not None
    return self._journal.plan_op(
        self.saga_id, final.record, self._packer.pack(final.state), active=False,
        earlier=[*held, record],
    )  # fmt: skip


# -- held records of effect-free steps --------------------------------------------


def _may_hold(self: SagaActor, event: dict[str, Any], commands: tuple[Command, ...]) -> bool:
    """True for the success of a step that holds its record, whose only command is the next step."""
    return (
        event["tag"] == StepSucceeded.tag
        and self.definition.step(event["step"]).holds_record
        and all(isinstance(c, RunStep) for c in commands)
    )


def _held_may_wait(self: SagaActor, work: Command) -> bool:
    """True when the held records may stay held while ``work`` runs.

    An effect-free step's action may run with any records held (it has no
    effect); a replay-safe one only while every held record is a replay-safe
    step's: an effect-free record held across a replay-safe effect would, after
    a crash, re-run that step (say a risk check) after the effect, and a
    different answer then would compensate around an effect that cannot be
    undone. Anything else runs only after the held records are committed.
    """
    if isinstance(work, RunStep) or (isinstance(work, ScheduleRetry) and work.phase == "action"):
        step = self.definition.step(work.step)
        if not step.effects:
            return True
        if step.replay_safe:
            definition = self.definition
            return all(definition.step(note["step"]).replay_safe for _, note in self._held)
    return False


def _flush_held(self: SagaActor) -> None:
    """Commit the held records with the current snapshot; then their events."""
    if not self._held:
        return
    held, self._held = self._held, []
    state = self.state
    self._journal.commit(self._journal.plan_op(
        self.saga_id, None, self._packer.pack(state), active=state.active,
        earlier=[record for record, _ in held],
    ))  # fmt: skip
    for _, note in held:
        self._note("saga_step", **note)
