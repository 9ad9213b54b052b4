"""Starting, resuming, observing and counting sagas (the functions other code calls)."""

from __future__ import annotations

import re
import time
from collections.abc import Mapping, Sequence
from typing import Any

from phalanx.actors.saga._actor import SagaActor, snapshot_of
from phalanx.actors.saga._model import (
    SagaDefinition,
    SagaError,
    SagaState,
    Started,
    advance,
    new_saga,
)
from phalanx.actors.saga._model import saga_definition as _definition
from phalanx.actors.saga._plain import to_plain
from phalanx.errors import AlreadyPresent, AlreadyStarted, PhalanxError, StorageError
from phalanx.protocols.trading import SagaSnapshot
from phalanx.runtime import ActorSystem, Ref, trace_scope
from phalanx.storage import Storage
from phalanx.storage._journal import SagaJournal
from phalanx.supervision import ChildSpec, Retry
from phalanx.supervision._supervisor import SupervisorRef

__all__ = [
    "SAGAS",
    "await_saga",
    "resume_sagas",
    "saga_outcomes",
    "saga_path",
    "saga_snapshot",
    "saga_supervisor_spec",
    "start_saga",
    "start_saga_supervisor",
    "start_sagas",
]

SAGAS = "/sagas"
"""The path of the saga supervisor; each saga lives at ``/sagas/s-<saga_id>``."""

_ID = re.compile(r"^[A-Za-z0-9_.:@+=-]{1,200}$")
_END_KINDS = ("saga_completed", "saga_compensated", "saga_compensation_failed")
_RECHECK_S = 1.0
# Kills restart a saga at once (no backoff); chaos kills many sagas per second,
# so the window must tolerate that without escalating the whole /sagas tree.
_INTENSITY, _PERIOD = 1000, 1.0


def saga_path(saga_id: str, supervisor: str = SAGAS) -> str:
    """``/sagas/s-<saga_id>``."""
    return f"{supervisor}/s-{saga_id}"


def _template() -> ChildSpec:
    return ChildSpec(
        "s",
        SagaActor,
        restart="transient",
        shutdown=5.0,
        retry=Retry(max_attempts=5, backoff="exponential", base=0.05, max=1.0),
    )


def saga_supervisor_spec(intensity: int = _INTENSITY, period: float = _PERIOD) -> ChildSpec:
    """A ``simple_one_for_one`` supervisor spec with id ``sagas`` (use it under the root).

    :func:`start_saga` assumes the supervisor lives at :data:`SAGAS`; nest it
    elsewhere only with ``supervisor=`` on every call.
    """
    return ChildSpec.supervisor(
        "sagas", strategy="simple_one_for_one", intensity=intensity, period=period,
        children=[_template()],
    )  # fmt: skip


def start_saga_supervisor(
    system: ActorSystem, intensity: int = _INTENSITY, period: float = _PERIOD
) -> SupervisorRef:
    """Start the ``/sagas`` supervisor (``simple_one_for_one`` of transient Saga actors)."""
    return system.supervise(
        SAGAS, strategy="simple_one_for_one", intensity=intensity, period=period,
        children=[_template()],
    )  # fmt: skip


def _start_child(system: ActorSystem, saga_id: str, supervisor: str) -> Ref:
    if not system.is_alive(supervisor):
        raise PhalanxError(f"no saga supervisor at {supervisor}: call start_saga_supervisor first")
    try:
        return SupervisorRef(system, supervisor).start_child(saga_id, child_id=f"s-{saga_id}")
    except (AlreadyStarted, AlreadyPresent):  # running, or restarting: it will finish
        return Ref(system, saga_path(saga_id, supervisor))


def start_saga(
    system: ActorSystem,
    kind: str,
    saga_id: str,
    input: Mapping[str, Any],
    *,
    supervisor: str = SAGAS,
) -> Ref:
    """Journal a new saga and start its actor; returns the actor's :class:`Ref`.

    Idempotent by ``saga_id``: a saga that exists is not started twice, and
    one that already ended is not run again (the Ref then points at no live
    actor; read it with :func:`saga_snapshot`). ``input`` must be plain data
    (``Decimal`` is stored as ``str``). Raises :class:`SagaError` for an
    unknown kind, a bad id, or an id already used by another kind.
    """
    return start_sagas(system, [(kind, saga_id, input)], supervisor=supervisor)[0]


def start_sagas(
    system: ActorSystem,
    sagas: Sequence[tuple[str, str, Mapping[str, Any]]],
    *,
    supervisor: str = SAGAS,
) -> list[Ref]:
    """:func:`start_saga` for many ``(kind, saga_id, input)``: ONE journal commit for all.

    With ``sync=True`` that is one fsync instead of one per saga. Every
    saga is checked (kind, id, input) before anything is written.
    """
    journal = SagaJournal(system.storage)
    fresh: list[tuple[str, str, SagaDefinition, Any]] = []
    existing: dict[str, dict[str, Any]] = {}
    for kind, saga_id, input in sagas:
        if not isinstance(saga_id, str) or not _ID.match(saga_id):
            raise SagaError(f"saga id {saga_id!r} must be 1-200 chars of letters, digits, _.:@+=-")
        definition = _definition(kind)
        raw = journal.load(saga_id)
        if raw is not None and raw["kind"] != kind:
            raise SagaError(f"saga id {saga_id!r} is already a {raw['kind']!r} saga, not {kind!r}")
        if raw is not None:
            existing[saga_id] = raw
            continue
        at = time.time()
        plan = advance(new_saga(definition, saga_id, to_plain(input, "input"), at), Started(at))
        assert plan.record is not None
        op = journal.create_op(saga_id, plan.record, plan.state.to_dict())
        fresh.append((kind, saga_id, definition, op))
    ops = [item[3] for item in fresh]
    created: list[bool] = journal.commit(lambda txn: [op(txn) for op in ops]) if ops else []
    log = system.logs.logger("decision")
    for (kind, saga_id, definition, _), new in zip(fresh, created, strict=True):
        if new:
            with trace_scope(saga_id=saga_id):
                system.events.publish(
                    "saga_started", saga_path(saga_id, supervisor), saga_id=saga_id,
                    saga_kind=kind,
                )  # fmt: skip
                log.info("saga_started", saga_id=saga_id, saga_kind=kind,
                         steps=list(definition.order))  # fmt: skip
        else:  # a concurrent start (or a duplicate id in this batch) won the insert
            existing[saga_id] = journal.load(saga_id) or {}
    refs = []
    for _, saga_id, _ in sagas:
        raw = existing.get(saga_id)
        if raw and not SagaState.from_dict(raw).active:
            refs.append(Ref(system, saga_path(saga_id, supervisor)))
        else:
            refs.append(_start_child(system, saga_id, supervisor))
    return refs


def resume_sagas(system: ActorSystem, *, supervisor: str = SAGAS) -> list[str]:
    """Start an actor for every journaled saga that has not finished; returns their ids.

    Run it once at boot, after reconciliation. Each saga continues from its
    snapshot: the step that was in flight runs again (steps are idempotent).
    A saga that cannot start (kind not registered, steps changed) is skipped
    with a critical ``alert_fired`` and stays in the journal.
    """
    journal = SagaJournal(system.storage)
    resumed = []
    for saga_id in journal.active_ids():
        raw = journal.load(saga_id)
        if raw is None:
            continue
        try:
            _definition(raw["kind"])
            _start_child(system, saga_id, supervisor)
        except SagaError as exc:  # unknown kind, or steps that no longer match
            system.events.publish(
                "alert_fired", saga_path(saga_id, supervisor), severity="critical",
                alert="saga_resume_failed", saga_id=saga_id, error=str(exc),
            )  # fmt: skip
            system.logs.logger("decision").error(
                "saga_resume_failed", saga_id=saga_id, error=str(exc)
            )
            continue
        resumed.append(saga_id)
    return resumed


def saga_snapshot(storage: Storage, saga_id: str) -> SagaSnapshot | None:
    """The journaled :class:`SagaSnapshot` of ``saga_id`` (works for ended sagas), or None."""
    raw = SagaJournal(storage).load(saga_id)
    return None if raw is None else snapshot_of(SagaState.from_dict(raw))


def saga_outcomes(storage: Storage) -> dict[str, int]:
    """Counts from the journal: completed, compensated, running, compensation_failed.

    Works on a readonly (offline) storage too: no journal yet means all zeros.
    """
    try:
        journal = SagaJournal(storage)
    except StorageError:
        if not storage.readonly:
            raise
        return dict.fromkeys(("completed", "compensated", "running", "compensation_failed"), 0)
    return journal.outcomes()


def _ended(journal: SagaJournal, saga_id: str) -> SagaSnapshot | None:
    """The snapshot of ``saga_id`` once it has ended and is finalized, else None."""
    # Invariant: finalizing removes the saga from the active index in the
    # commit that writes its final snapshot, so while it is indexed there is
    # no snapshot worth unpacking: the snapshot is read once, at the end.
    if journal.is_active(saga_id):
        return None
    raw = journal.load(saga_id)
    state = SagaState.from_dict(raw) if raw is not None else None
    return snapshot_of(state) if state is not None and not state.active else None


def await_saga(system: ActorSystem, saga_id: str, timeout: float = 10.0) -> SagaSnapshot:
    """Wait until ``saga_id`` has ended and is finalized; its snapshot.

    Raises ``TimeoutError`` after ``timeout`` seconds (the saga keeps running).
    """
    journal = SagaJournal(system.storage)
    deadline = time.monotonic() + timeout
    ended = _ended(journal, saga_id)
    if ended is not None:  # no subscription needed
        return ended
    sub = system.events.subscribe(_END_KINDS)
    try:
        while True:
            # Checked after subscribing too: an end between the first check and
            # the subscription is seen here, not waited for.
            ended = _ended(journal, saga_id)
            if ended is not None:
                return ended
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raw = journal.load(saga_id)
                status = raw["status"] if raw is not None else "unknown"
                raise TimeoutError(f"saga {saga_id} still {status} after {timeout}s")
            # Re-checked at least every _RECHECK_S: a crash between the final commit
            # and the end event loses the event, never the outcome.
            sub.wait_for(lambda e: e.fields.get("saga_id") == saga_id, min(remaining, _RECHECK_S))
    finally:
        sub.close()
