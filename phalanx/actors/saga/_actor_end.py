"""A saga's effects (dead letters, alerts) and its end (finalized, then the end event).

Functions of :class:`~phalanx.actors.saga._actor.SagaActor` taking the actor,
bound in its class body as its methods.

Invariants:

- a dead letter is recorded exactly once: a resumed incarnation skips one
  whose id is already in the store, and it is durable (storage flushed)
  before the saga may be finalized; an alert is published again if the saga
  is resumed before it ends (at least once);
- a terminal saga is finalized (out of the active index) only after its
  dead letters and alerts were issued; its end event follows the commit, so
  whoever sees the event (``await_saga``) finds the saga out of the active
  index.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from phalanx.actors.saga._model import Alert, Command, DeadLetter, Finalized, Plan, advance
from phalanx.errors import DeadLetterError
from phalanx.runtime import Envelope

if TYPE_CHECKING:
    from phalanx.actors.saga._actor import SagaActor

__all__: list[str] = []

_END_EVENTS = {
    "completed": "saga_completed",
    "compensated": "saga_compensated",
    "compensation_failed": "saga_compensation_failed",
}


def _effect(self: SagaActor, cmd: Command) -> None:
    if isinstance(cmd, DeadLetter):
        self._dead_letter(cmd)
    elif isinstance(cmd, Alert):
        self.system.events.publish(
            "alert_fired", self.path, severity=cmd.severity, alert=cmd.alert,
            saga_id=self.saga_id, saga_kind=self.state.kind, step=cmd.step, error=cmd.error,
        )  # fmt: skip
        self._log.error("alert_fired", alert=cmd.alert, severity=cmd.severity,
                        saga_id=self.saga_id, step=cmd.step, error=cmd.error)  # fmt: skip


def _dead_letter(self: SagaActor, cmd: DeadLetter) -> None:
    # Defined in _actor, so the dead letters' error_type stays
    # "phalanx.actors.saga._actor.CompensationFailedError"; imported here, at
    # the rare dead letter, because _actor imports this module at its top.
    from phalanx.actors.saga._actor import CompensationFailedError  # noqa: PLC0415

    ident = cmd.dead_letter_id
    assert ident is not None  # filled by _apply before the commit
    try:
        self.system.dead_letters.get(ident)
        return  # a previous incarnation recorded it already
    except DeadLetterError:
        pass
    message = {
        "saga_id": self.saga_id, "kind": self.state.kind, "step": cmd.step,
        "input": dict(self.state.input), "error": cmd.error,
    }  # fmt: skip
    env = Envelope(
        message, sender=self.path, attempt=self.state.steps[cmd.step].comp_attempt,
        trace={"saga_id": self.saga_id}, dead_letter_id=ident,
    )  # fmt: skip
    error = CompensationFailedError(f"saga {self.saga_id} step {cmd.step}: {cmd.error}")
    # Through the post office, so the run totals count it (by reason) and a
    # dead_letter event is published; counted as sent, so conservation holds.
    self.system.post.count_sent()
    self.system.post.dead_letter(cmd.reason, env, self.path, error=error)
    self.system.storage.flush()  # durable before the saga may be finalized


def _finish(self: SagaActor) -> None:
    self._flush_held()  # never any here (a terminal plan is not held): defensive
    state = self.state
    if not state.finalized:
        # Finalized first, then the end event: whoever sees the event (await_saga)
        # finds the saga out of the active index. A crash in between loses
        # only the event; dead letters and alerts ran before (in _step).
        self._apply_final(advance(state, Finalized(time.time()), self.definition))
        self._note(_END_EVENTS[state.status], status=state.status, error=state.error)
    self.stop()


def _apply_final(self: SagaActor, plan: Plan) -> None:
    assert plan.record is not None
    self._journal.commit(
        self._journal.plan_op(
            self.saga_id, plan.record, self._packer.pack(plan.state), active=False
        )
    )
    self.state = plan.state
