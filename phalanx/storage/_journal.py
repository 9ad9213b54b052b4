"""The saga journal: append-only step records, one snapshot per saga, an active index.

Layout (named DBs in the node's :class:`Storage`, values msgpack):

- ``journal``: key = ``saga_id utf-8 + b"\\x00" + big-endian u64 seq``, value =
  the plan record (event, status, commands). A prefix scan returns one saga's
  history in order. Records are check-and-insert (``overwrite=False``): two
  incarnations of one saga writing the same seq is a bug, and it fails loudly
  (:class:`JournalConflict`) instead of rewriting history.
- ``journal_snapshots``: key = ``saga_id``, value = the latest state dict.
- ``journal_active``: key = ``saga_id``, value = ``b""``, for every saga a
  restarted node must resume (not terminal, or terminal but not finalized).

Invariant: a record, its snapshot and the active-index change commit in ONE
write transaction (:meth:`SagaJournal.plan_op`), so the snapshot is never
ahead of or behind the history. The op builders are pure functions of the
transaction (they may run more than once) and can be called inside a
caller's own op to commit more in the same transaction.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import msgpack

from phalanx.errors import StorageError
from phalanx.storage._env import Storage, Txn

__all__ = ["JournalConflict", "SagaJournal", "record_key"]

_JOURNAL, _SNAPSHOTS, _ACTIVE = "journal", "journal_snapshots", "journal_active"
_SEQ = struct.Struct(">Q")
_RUNNING = ("running", "compensating")
_OUTCOMES = ("completed", "compensated", "compensation_failed")


class JournalConflict(StorageError):
    """A journal record or a new saga that already exists (a second writer)."""


def record_key(saga_id: str, seq: int) -> bytes:
    """The ``journal`` key of record ``seq`` of ``saga_id``."""
    return saga_id.encode() + b"\x00" + _SEQ.pack(seq)


def _pack(obj: Any) -> bytes:
    packed: bytes = msgpack.packb(obj, use_bin_type=True)
    return packed


def _unpack(raw: bytes) -> Any:
    return msgpack.unpackb(raw, raw=False)


class SagaJournal:
    """Read and write saga records and snapshots (see the module docstring)."""

    def __init__(self, storage: Storage) -> None:
        self._storage = storage
        self._journal = storage.db(_JOURNAL)
        self._snapshots = storage.db(_SNAPSHOTS)
        self._active = storage.db(_ACTIVE)

    # -- op builders (pure functions of the write txn) -------------------------

    def record_op(self, saga_id: str, record: Mapping[str, Any]) -> Callable[[Txn], None]:
        """Append ``record`` (its ``seq`` field is the key); conflicts raise."""
        key, value, db = record_key(saga_id, int(record["seq"])), _pack(dict(record)), self._journal

        def op(txn: Txn) -> None:
            if not txn.put(key, value, db=db, overwrite=False):
                raise JournalConflict(f"saga {saga_id}: journal record {record['seq']} exists")

        return op

    def snapshot_op(
        self, saga_id: str, snapshot: Mapping[str, Any] | bytes, *, active: bool
    ) -> Callable[[Txn], None]:
        """Replace the snapshot of ``saga_id`` and set its active-index membership.

        ``snapshot`` is the state dict, or its msgpack bytes already packed
        (the Saga actor's incremental ``SnapshotPacker``: the same bytes).
        """
        key = saga_id.encode()
        value = snapshot if isinstance(snapshot, bytes) else _pack(dict(snapshot))
        snapshots, index = self._snapshots, self._active

        def op(txn: Txn) -> None:
            txn.put(key, value, db=snapshots)
            if not active:
                txn.delete(key, db=index)
            elif txn.get(key, db=index) is None:
                # Only when missing: rewriting the same b"" still copies the index's
                # pages into the txn (a running saga is indexed from its creation).
                txn.put(key, b"", db=index)

        return op

    def plan_op(
        self,
        saga_id: str,
        record: Mapping[str, Any] | None,
        snapshot: Mapping[str, Any] | bytes,
        *,
        active: bool,
        earlier: Sequence[Mapping[str, Any]] = (),
    ) -> Callable[[Txn], None]:
        """Records (``earlier``, in order, then ``record`` if any) + snapshot + index in one op.

        ``snapshot`` is a dict or its packed bytes. ``earlier``: records that
        must commit in the same transaction ahead of ``record`` (the Saga
        actor's held records of effect-free steps, or a saga's end record
        finalized with it).
        """
        records = [*earlier, record] if record is not None else list(earlier)
        puts = [self.record_op(saga_id, r) for r in records]
        put_snapshot = self.snapshot_op(saga_id, snapshot, active=active)

        def op(txn: Txn) -> None:
            for put in puts:
                put(txn)
            put_snapshot(txn)

        return op

    def create_op(
        self, saga_id: str, record: Mapping[str, Any], snapshot: Mapping[str, Any]
    ) -> Callable[[Txn], bool]:
        """Insert a new saga; False (nothing written) if ``saga_id`` already has a snapshot."""
        key, snapshots = saga_id.encode(), self._snapshots
        rest = self.plan_op(saga_id, record, snapshot, active=True)

        def op(txn: Txn) -> bool:
            if txn.get(key, db=snapshots) is not None:
                return False
            rest(txn)
            return True

        return op

    def commit(self, op: Callable[[Txn], Any]) -> Any:
        """Commit ``op`` now (``Storage.write_now``) and return its result."""
        return self._storage.write_now(op)

    # -- reads ----------------------------------------------------------------------

    def load(self, saga_id: str) -> dict[str, Any] | None:
        """The latest snapshot of ``saga_id``, or None."""
        key, db = saga_id.encode(), self._snapshots
        raw = self._storage.read(lambda txn: txn.get(key, db=db))
        return None if raw is None else dict(_unpack(raw))

    def is_active(self, saga_id: str) -> bool:
        """True while ``saga_id`` is in the active index (journaled and not finalized).

        One key read, no snapshot to unpack: the index entry and the snapshot
        are written in the same transaction (see :meth:`snapshot_op`).
        """
        key, db = saga_id.encode(), self._active
        return bool(self._storage.read(lambda txn: txn.get(key, db=db) is not None))

    def records(self, saga_id: str) -> list[dict[str, Any]]:
        """Every record of ``saga_id``, oldest first."""
        prefix, db = saga_id.encode() + b"\x00", self._journal

        def op(txn: Txn) -> list[bytes]:
            cursor = txn.cursor(db=db)
            out: list[bytes] = []
            if not cursor.set_range(prefix):
                return out
            for key, value in cursor:
                if not bytes(key).startswith(prefix) or len(key) != len(prefix) + 8:
                    break
                out.append(bytes(value))
            return out

        return [dict(_unpack(raw)) for raw in self._storage.read(op)]

    def active_ids(self) -> list[str]:
        """Sagas a restarted node must resume, in key order."""
        db = self._active
        return self._storage.read(lambda txn: [bytes(k).decode() for k, _ in txn.cursor(db=db)])

    def snapshots(self) -> list[dict[str, Any]]:
        """Every saga's latest snapshot (a full scan: for summaries and tools)."""
        db = self._snapshots
        raws = self._storage.read(lambda txn: [bytes(v) for _, v in txn.cursor(db=db)])
        return [dict(_unpack(raw)) for raw in raws]

    def outcomes(self) -> dict[str, int]:
        """``{"completed", "compensated", "running", "compensation_failed"}`` counts."""
        counts = dict.fromkeys(("completed", "compensated", "running", "compensation_failed"), 0)
        for snap in self.snapshots():
            status = snap.get("status")
            if status in _OUTCOMES:
                counts[status] += 1
            elif status in _RUNNING:
                counts["running"] += 1
        return counts
