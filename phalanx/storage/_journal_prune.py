"""Journal retention: drop the step records of sagas that ended long ago, keep a compact snapshot.

A saga's journal grows by one record per step transition (8-10 for a buy
saga) and a snapshot holding every step's result; nothing else ever removes
them, so a node that trades for months fills its map with finished history.
:func:`prune_journal` deletes the step records of every saga that is
**completed or compensated, finalized, out of the active index and last
updated before ``ended_before``** (``compensation_failed`` ones only with
``include_failed``: their funds may be stuck and someone must look), and
replaces its snapshot with a compact one:

- the same shape (``SagaState.from_dict`` reads it; ``await_saga``,
  ``GetSaga`` and the run summary work as before), with ``status``,
  ``error``, ``input``, the steps' statuses, attempts and errors, ``seq``
  (how many records there were) and the timestamps kept;
- the steps' ``result`` values and deadlines dropped, the outbox emptied;
- ``pruned_at`` (epoch seconds) added: :func:`is_pruned` tells, and
  ``phalanx replay`` takes such a saga's outcome from it instead of folding
  its (deleted) records.

Why the snapshot stays: it is what makes ``start_saga`` idempotent by id
(``SagaJournal.create_op`` refuses an id that has one), so a pruned id can
never start a second saga, place a second order or count twice; and the
demo strategy's id sequence starts past the ids it finds there, so it never
reuses a pruned id either. Order (idempotency) records and the ledger are
not touched: they are the audit trail of what was traded.

Invariant: a saga that may still run (active, not terminal, not finalized)
is never touched. A finalized saga is never written again, so this is safe
next to a running node as well as offline. Every batch is one write
transaction (``batch`` sagas at most) whose op re-checks each candidate,
so it is a pure function of the transaction. LMDB reuses the freed pages;
the file does not shrink.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import msgpack

from phalanx.storage._env import Storage, Txn
from phalanx.storage._journal import _ACTIVE, _JOURNAL, _SNAPSHOTS

__all__ = ["JournalPrune", "compact_snapshot", "is_pruned", "prune_journal"]

_ENDED = frozenset({"completed", "compensated"})
_FAILED = "compensation_failed"  # money may be stuck: kept unless asked (include_failed)


@dataclass
class JournalPrune:
    """What :func:`prune_journal` did (or, with ``dry_run``, would do)."""

    pruned: int = 0  # sagas whose records were deleted
    records_deleted: int = 0
    bytes_freed: int = 0  # keys + values deleted, minus the snapshots' shrink
    kept_running: int = 0  # active, not terminal or not finalized
    kept_recent: int = 0  # ended at or after the cutoff
    kept_failed: int = 0  # compensation_failed, without include_failed
    already_pruned: int = 0
    dry_run: bool = False
    pruned_ids: list[str] = field(default_factory=list)  # the first 100

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of the counts."""
        return {
            "pruned": self.pruned, "records_deleted": self.records_deleted,
            "bytes_freed": self.bytes_freed, "kept_running": self.kept_running,
            "kept_recent": self.kept_recent, "kept_failed": self.kept_failed,
            "already_pruned": self.already_pruned,
            "dry_run": self.dry_run, "pruned_ids": list(self.pruned_ids),
        }  # fmt: skip


def is_pruned(snapshot: Mapping[str, Any]) -> bool:
    """True for a snapshot :func:`prune_journal` compacted (its records are gone)."""
    return snapshot.get("pruned_at") is not None


def compact_snapshot(snapshot: Mapping[str, Any], *, records: int, at: float) -> dict[str, Any]:
    """The compact form of an ended saga's snapshot (see the module docstring)."""
    steps = {
        name: [row[0], row[1], row[2], None, None, row[5], None]
        for name, row in dict(snapshot["steps"]).items()
    }
    return {
        **dict(snapshot),
        "steps": steps,
        "outbox": [],
        "current": None,
        "pruned_at": at,
        "pruned_records": records,
    }


def _prunable(
    snap: Mapping[str, Any], active: bool, ended_before: float, include_failed: bool
) -> str:
    """``prune``, or why not: ``running``, ``failed``, ``recent`` or ``pruned``."""
    if is_pruned(snap):
        return "pruned"
    status = snap.get("status")
    ended = status in _ENDED or (status == _FAILED and include_failed)
    if active or not snap.get("finalized") or not (ended or status == _FAILED):
        return "running"
    if not ended:
        return "failed"
    if float(snap.get("updated_at") or 0.0) >= ended_before:
        return "recent"
    return "prune"


def prune_journal(
    storage: Storage,
    *,
    ended_before: float,
    dry_run: bool = False,
    include_failed: bool = False,
    batch: int = 500,
    now: Callable[[], float] = time.time,
) -> JournalPrune:
    """Compact every saga that ended before ``ended_before`` (epoch seconds).

    A ``compensation_failed`` saga (a dead letter and an alert were raised:
    funds may be stuck) is kept unless ``include_failed``.

    Raises :class:`~phalanx.errors.StorageError` if the storage cannot be
    read or written (nothing of a failed batch is kept).
    """
    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    journal, snapshots, index = (storage.db(n) for n in (_JOURNAL, _SNAPSHOTS, _ACTIVE))
    out = JournalPrune(dry_run=dry_run)

    def candidates(txn: Txn) -> list[str]:
        ids: list[str] = []
        for key, raw in txn.cursor(db=snapshots):
            snap = msgpack.unpackb(raw, raw=False)
            active = txn.get(key, db=index) is not None
            verdict = _prunable(snap, active, ended_before, include_failed)
            if verdict == "prune":
                ids.append(bytes(key).decode())
            elif verdict == "running":
                out.kept_running += 1
            elif verdict == "failed":
                out.kept_failed += 1
            elif verdict == "recent":
                out.kept_recent += 1
            else:
                out.already_pruned += 1
        return ids

    ids = storage.read(candidates)
    for start in range(0, len(ids), batch):
        chunk = ids[start : start + batch]
        at = now()

        def op(txn: Txn, chunk: list[str] = chunk, at: float = at) -> list[tuple[str, int, int]]:
            done: list[tuple[str, int, int]] = []  # (id, records, bytes freed)
            for saga_id in chunk:
                key = saga_id.encode()
                raw = txn.get(key, db=snapshots)
                if raw is None:
                    continue
                snap = msgpack.unpackb(raw, raw=False)
                active = txn.get(key, db=index) is not None
                if _prunable(snap, active, ended_before, include_failed) != "prune":
                    continue  # changed since the scan
                records, freed = _delete_records(txn, journal, key + b"\x00", dry_run)
                compact = msgpack.packb(
                    compact_snapshot(snap, records=records, at=at), use_bin_type=True
                )
                freed += len(raw) - len(compact)
                if not dry_run:
                    txn.put(key, compact, db=snapshots)
                done.append((saga_id, records, freed))
            return done

        done = storage.read(op) if dry_run else storage.write(op)
        for saga_id, records, freed in done:
            out.pruned += 1
            out.records_deleted += records
            out.bytes_freed += freed
            if len(out.pruned_ids) < 100:
                out.pruned_ids.append(saga_id)
    return out


def _delete_records(txn: Txn, db: Any, prefix: bytes, dry_run: bool) -> tuple[int, int]:
    """Delete (or count) the records under ``prefix``: (how many, bytes)."""
    cursor = txn.cursor(db=db)
    count = freed = 0
    if not cursor.set_range(prefix):
        return 0, 0
    while True:
        key = bytes(cursor.key())
        # Invariant: a record key is the prefix plus a big-endian u64 seq
        # (another saga's id may extend this one's: "s-1" vs "s-10").
        if not key.startswith(prefix) or len(key) != len(prefix) + 8:
            break
        count += 1
        freed += len(key) + len(cursor.value())
        if dry_run:
            if not cursor.next():
                break
        elif not cursor.delete():  # moves to the next record; False at the end
            break
    return count, freed
