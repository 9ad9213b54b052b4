"""Durable sagas (DESIGN section 6): steps with compensations, journaled in LMDB.

A saga kind is a list of :class:`Step`\\ s registered by name. Each saga runs in
its own actor at ``/sagas/s-<saga_id>`` (``simple_one_for_one``, transient),
commits every transition (journal record + snapshot + outgoing command) in
one LMDB transaction before acting on it, and resumes from its journal after
a kill, a crash or a node restart. The transitions are pure
(:func:`advance`), so they are tested without threads.

Rules:

- steps run one at a time in dependency order (``depends_on``, else list order);
- an action returns a plain ``dict`` (its result, kept in the journal:
  ``Decimal`` is stored as ``str``) or :class:`Pending` (poll again after
  ``after_s``; the thread is not blocked, and a kill lands between polls);
- an exception is classified by ``phalanx.supervision.classify``: transient
  errors are retried by the step's ``retry`` with backoff (unknown ones with
  half the attempts); permanent ones, exhausted retries and
  :class:`StepTimeout` (still Pending at ``timeout_s``, unless ``on_timeout``
  returns a result) fail the step;
- a failed step compensates the completed steps in reverse order; each
  compensation is retried by ``compensation_retry`` (and may return
  :class:`Pending`, bounded by ``compensation_timeout_s``); one that keeps
  failing is dead-lettered (reason ``compensation_failed``), fires a critical
  ``alert_fired`` event, the other compensations still run, and the saga ends
  ``compensation_failed``;
- **actions and compensations must be idempotent** (key every external
  effect by ``ctx.saga_id``): a resumed saga runs its in-flight step again.
- a step declared ``effects=False`` (no effect but log lines and read-only
  asks, no compensation) has its success record committed with the next
  commit instead of on its own, always before any step with effects or any
  compensation runs: same records, fewer transactions; a crash before that
  commit makes the resumed saga run it again.
- a step declared ``replay_safe=True`` (every effect keyed so that a re-run,
  even after later steps ran, repeats nothing; no compensation: it comes
  after the point of no return) has its success record held the same way,
  and held records stay held while it runs: the buy saga's
  ``update_position``, ``post_ledger`` and ``finalize`` commit once, together.

Events on ``system.events``: ``saga_started``, ``saga_step``,
``saga_resumed``, ``saga_completed``, ``saga_compensated``,
``saga_compensation_failed`` (and ``alert_fired``); the same go to the
``decision`` log. An ``OrderUpdate`` told to a saga actor makes a Pending
step poll at once. A finished saga's actor is gone (``GetSaga`` then raises
``ActorDead``): read it with :func:`saga_snapshot`, wait for it with
:func:`await_saga`. Dead letters are recorded exactly once; an alert is
published again if the saga is resumed before it ends (at least once).

Storage (``phalanx.storage._journal``): DBs ``journal`` (records),
``journal_snapshots`` and ``journal_active`` (the sagas :func:`resume_sagas`
restarts). Each transition commits record + snapshot + outbox in one
``Storage.write_now``; ``SagaJournal.plan_op`` and friends are the op
builders for committing more in the same transaction.

Usage::

    from phalanx.actors.saga import Pending, SagaDefinition, Step, register_saga
    from phalanx.actors.saga import await_saga, start_saga, start_saga_supervisor

    def reserve(ctx):
        ctx.system.ask("/risk", ReserveFunds(reservation_id=ctx.saga_id, ...))
        return {"reserved": str(amount)}

    def release(ctx):
        ctx.system.ask("/risk", ReleaseFunds(reservation_id=ctx.saga_id))

    def await_fill(ctx):
        snap = ctx.system.ask(f"/orders/o-{ctx.saga_id}", GetOrder())
        return {"filled": str(snap.filled)} if snap.terminal else Pending(0.05)

    register_saga(SagaDefinition("buy", [
        Step("reserve_funds", reserve, compensation=release),
        Step("await_fill", await_fill, timeout_s=30.0, depends_on=("reserve_funds",)),
    ]))

    start_saga_supervisor(system)
    resume_sagas(system)                      # at boot: finish what a crash left running
    start_saga(system, "buy", "b-1", {"symbol": "BTC/USDT", "amount": "0.01"})
    snap = await_saga(system, "b-1", timeout=5.0)   # SagaSnapshot, also via ask(GetSaga())
    saga_outcomes(system.storage)             # {"completed": 1, "compensated": 0, ...}
"""

from __future__ import annotations

from phalanx.actors.saga._actor import CompensationFailedError, SagaActor, SagaWake, snapshot_of
from phalanx.actors.saga._api import (
    SAGAS,
    await_saga,
    resume_sagas,
    saga_outcomes,
    saga_path,
    saga_snapshot,
    saga_supervisor_spec,
    start_saga,
    start_saga_supervisor,
    start_sagas,
)
from phalanx.actors.saga._model import (
    TERMINAL,
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
    Pending,
    Plan,
    RunStep,
    SagaDefinition,
    SagaError,
    SagaState,
    SagaStatus,
    ScheduleRetry,
    Started,
    Step,
    StepContext,
    StepFailed,
    StepPending,
    StepState,
    StepSucceeded,
    StepTimeout,
    advance,
    new_saga,
    register_saga,
    saga_definition,
)
from phalanx.actors.saga._plain import to_plain
from phalanx.supervision import Retry

__all__ = [
    "SAGAS",
    "TERMINAL",
    "Alert",
    "Command",
    "Compensate",
    "CompensationFailed",
    "CompensationFailedError",
    "CompensationPending",
    "CompensationSucceeded",
    "DeadLetter",
    "Event",
    "Finalized",
    "Finished",
    "Pending",
    "Plan",
    "Retry",
    "RunStep",
    "SagaActor",
    "SagaDefinition",
    "SagaError",
    "SagaState",
    "SagaStatus",
    "SagaWake",
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
    "await_saga",
    "new_saga",
    "register_saga",
    "resume_sagas",
    "saga_definition",
    "saga_outcomes",
    "saga_path",
    "saga_snapshot",
    "saga_supervisor_spec",
    "snapshot_of",
    "start_saga",
    "start_saga_supervisor",
    "start_sagas",
    "to_plain",
]
