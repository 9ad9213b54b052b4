"""Replay's sagas: each saga's outcome from feeding its journaled events through ``advance``.

Never from its snapshot: each record's status and commands must be what
:func:`~phalanx.actors.saga.advance` gives, and the folded state must equal
the snapshot field by field. A saga compacted by journal retention has no
records left: its outcome is the snapshot's (counted as pruned).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from phalanx.actors._replay_model import (
    Difference,
    LiveState,
    ReplayReport,
    ReplaySources,
    _short,
    _show,
)
from phalanx.actors.saga import _protocol as sp
from phalanx.actors.saga._model import SagaError, advance, new_saga, saga_definition
from phalanx.actors.saga._state import SagaState
from phalanx.storage._journal_prune import is_pruned

__all__ = ["replay_saga"]

_EVENTS: dict[str, type[Any]] = {
    c.tag: c
    for c in (
        sp.Started, sp.StepSucceeded, sp.StepPending, sp.StepFailed, sp.CompensationSucceeded,
        sp.CompensationPending, sp.CompensationFailed, sp.Finalized,
    )
}  # fmt: skip
_SAGA_SKIP = ("v", "input")  # the input is the saga's identity, not derived from its events


def _event(raw: Mapping[str, Any]) -> sp.Event:
    fields = dict(raw)
    cls = _EVENTS[fields.pop("tag")]
    event: sp.Event = cls(**fields)
    return event


def _strip_ids(commands: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    # The actor fills dead_letter_id (a fresh id) after advance; everything else is pure.
    return [{k: v for k, v in c.items() if k != "dead_letter_id"} for c in commands]


def replay_saga(
    saga_id: str, kind: str, records: Sequence[Mapping[str, Any]]
) -> tuple[SagaState | None, str, list[str]]:
    """Fold one saga's journal through ``advance``: (state or None, status, problems).

    Without a registered definition for ``kind`` the state is None and the
    status is the last record's (checked for a gap-free seq only).
    """
    problems: list[str] = []
    for n, record in enumerate(records, 1):
        if record.get("seq") != n:
            problems.append(f"record {n} has seq {record.get('seq')!r} (a gap or a duplicate)")
            return None, "corrupt", problems
    if not records:
        return None, "missing", ["no journal records"]
    try:
        definition = saga_definition(kind)
    except SagaError:
        return None, str(records[-1].get("status")), [f"kind {kind!r} is not registered"]
    state = new_saga(definition, saga_id, {}, 0.0)
    for record in records:
        try:
            if record["seq"] == 1:  # created_at is the Started event's time
                state = replace(
                    state, created_at=float(record["at"]), updated_at=float(record["at"])
                )
            plan = advance(state, _event(record["event"]), definition)
            commands = list(record.get("commands") or ())
            outbox = tuple(sp.command_from_dict(c) for c in commands)
        except (SagaError, KeyError, TypeError, ValueError) as exc:
            problems.append(f"record {record['seq']}: {_short(exc)}")
            return None, "corrupt", problems
        if plan.record is None:
            problems.append(f"record {record['seq']}: a poll event was journaled")
            return None, "corrupt", problems
        if plan.record["status"] != record.get("status"):
            problems.append(f"record {record['seq']}: status {record.get('status')!r}, "
                            f"replay says {plan.record['status']!r}")  # fmt: skip
        if _strip_ids(plan.record["commands"]) != _strip_ids(commands):
            problems.append(f"record {record['seq']}: commands differ from the replay")
        state = replace(plan.state, outbox=outbox)
    return state, state.status, problems


def _sagas(src: ReplaySources, live: LiveState, out: ReplayReport) -> None:
    ids = sorted(set(src.journal) | set(live.snapshots))
    for saga_id in ids:
        snap = live.snapshots.get(saga_id)
        records = src.journal.get(saga_id, ())
        what = f"saga {saga_id}"
        if snap is None:
            out.differences.append(Difference("sagas", what, "a snapshot", "none"))
        elif is_pruned(snap):
            # Its records were dropped by retention: the outcome is the snapshot's.
            status = str(snap.get("status"))
            out.saga_outcomes[status] = out.saga_outcomes.get(status, 0) + 1
            out.pruned_sagas += 1
            if records:
                out.differences.append(Difference("sagas", f"{what} journal", "pruned: no records",
                                                  f"{len(records)} records"))  # fmt: skip
            continue
        kind = src.saga_kinds.get(saga_id) or (snap or {}).get("kind") or ""
        if snap is not None and snap.get("kind") != kind:
            out.differences.append(Difference("sagas", f"{what} kind", kind, str(snap.get("kind"))))
        state, status, problems = replay_saga(saga_id, kind, records)
        out.saga_outcomes[status] = out.saga_outcomes.get(status, 0) + 1
        for problem in problems:
            if problem.startswith("kind "):
                out.notes.append(f"{what}: {problem}: status from its last record")
            else:
                out.differences.append(Difference("sagas", f"{what} journal", "consistent",
                                                  problem))  # fmt: skip
        if snap is None:
            continue
        if state is None:
            if status != snap.get("status"):
                out.differences.append(Difference("sagas", f"{what} status", status,
                                                  str(snap.get("status"))))  # fmt: skip
            continue
        expected = state.to_dict()
        for name in sorted(set(expected) | set(snap)):
            if name in _SAGA_SKIP or expected.get(name) == _plain(snap.get(name)):
                continue
            out.differences.append(Difference("sagas", f"{what} {name}",
                                              _show(expected.get(name)),
                                              _show(snap.get(name))))  # fmt: skip
    out.sagas = len(ids)


def _plain(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value
