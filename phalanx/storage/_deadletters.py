"""The dead-letter store: every undeliverable message, with why and what happened next.

Layout (named DBs in the node's :class:`Storage`):

- ``deadletters``: key = ``id_to_key(id)`` (16 bytes, time-ordered, so a scan
  is oldest first); value = msgpack array ``[1, *_FIELDS]`` (1 = layout
  version). ``payload`` is the codec bytes of the message, or None when it
  could not be encoded: then ``redrivable`` is False and ``payload_repr``
  keeps its repr. Otherwise ``payload_repr`` is None on disk and rendered from
  the decoded payload on read: storing both pushed a 1 KiB message past LMDB's
  ~2 KiB inline node limit (one overflow page per record: 38k puts/s).
  ``history`` is None until the first change: the initial ``put`` event is
  implied by the record's own fields.
- ``dl_outbox``: key = record key; value = msgpack ``{"to", "at"}``. Redrives
  requested offline (no node running), delivered by :meth:`drain_outbox`.

Invariant: a record is redriven at most once per failure. The status flip
``pending -> redriven`` commits (one write txn) before ``deliver`` is called,
and the single writer serialises the check, so a second redrive sees it.

The put path (fresh records batched into one writer op) is in
``_deadletter_put.py``, the queries in ``_deadletter_reads.py``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from functools import partial
from typing import Any

from phalanx._ids import id_to_key
from phalanx.errors import DeadLetterError, StorageError
from phalanx.storage._deadletter_put import _DeadLetterPut, _PutBatch
from phalanx.storage._deadletter_reads import _DeadLetterReads
from phalanx.storage._deadletter_record import (
    _DB,
    _LAST,
    _OUTBOX,
    _SCAN_CHUNK,
    _STATUS,
    _STATUSES,
    REASONS,
    DeadLetter,
    Deliver,
    _flip_redriven,
    _key,
    _load,
    _model,
    _pack,
    _redrivable,
    _to_row,
    _unpack,
)
from phalanx.storage._env import Storage, Txn

__all__ = ["REASONS", "DeadLetter", "DeadLetterStore", "Deliver"]


class DeadLetterStore(_DeadLetterPut, _DeadLetterReads):
    """Put, browse, redrive, resolve and purge dead letters; works offline too.

    ``deliver(record, target)`` is how a running node redelivers; without it
    (offline tools) a redrive is queued in ``dl_outbox`` for the next start.
    ``put_failures`` counts records whose asynchronous write failed.
    """

    def __init__(
        self,
        storage: Storage,
        *,
        deliver: Deliver | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._storage = storage
        self._deliver = deliver
        self._clock = clock
        self._dbs: tuple[Any, Any] | None = None
        self._lock = threading.Lock()
        self._batch: _PutBatch | None = None
        self.put_failures = 0

    def set_deliver(self, deliver: Deliver | None) -> None:
        """Set (or clear) the redelivery callback of the running node."""
        self._deliver = deliver

    def _handles(self) -> tuple[Any, Any] | None:
        """(deadletters, dl_outbox) handles; None only readonly before any write."""
        if self._dbs is None:
            try:
                self._dbs = (self._storage.db(_DB), self._storage.db(_OUTBOX))
            except StorageError:
                if self._storage.readonly:
                    return None
                raise
        return self._dbs

    def _write_handles(self) -> tuple[Any, Any]:
        handles = self._handles()
        if handles is None:
            raise StorageError(f"storage at {self._storage.path} is open readonly")
        return handles

    # -- state changes ----------------------------------------------------------

    def redrive(self, ident: str, to: str | None = None) -> DeadLetter:
        """Redeliver a pending, redrivable record to ``to`` or its original target.

        Offline (no ``deliver``), queue it for the node's next start instead.
        """
        key = _key(ident)
        db, outbox = self._write_handles()
        now, deliver = self._clock(), self._deliver

        def op(txn: Txn) -> tuple[dict[str, Any], str]:
            rec, dest = _redrivable(txn, db, key, to)
            if deliver is None:
                if txn.get(key, db=outbox) is not None:
                    raise DeadLetterError(f"dead letter {ident} is already queued for redrive")
                txn.put(key, _pack({"to": dest, "at": now}), db=outbox)
                rec["history"].append({"action": "redrive_queued", "to": dest, "at": now})
            else:
                _flip_redriven(txn, outbox, key, rec, dest=dest, now=now)
            txn.put(key, _to_row(rec), db=db)
            return rec, dest

        rec, dest = self._storage.write(op)
        record = _model(key, rec)
        if deliver is not None:
            self._deliver_or_revert(deliver, record, dest)
        return record

    def drain_outbox(self, deliver: Deliver) -> int:
        """Redrive every offline-queued record through ``deliver``; returns how many."""
        db, outbox = self._write_handles()
        queued = self._storage.read(lambda txn: list(txn.cursor(db=outbox).iternext()))
        delivered = 0
        for key, raw in queued:
            dest, now = _unpack(raw)["to"], self._clock()

            def op(txn: Txn, key: bytes = key, dest: str = dest, now: float = now) -> Any:
                try:
                    rec, _ = _redrivable(txn, db, key, dest)
                except DeadLetterError:
                    txn.delete(key, db=outbox)  # resolved/purged since: drop the stale entry
                    return None
                _flip_redriven(txn, outbox, key, rec, dest=dest, now=now)
                txn.put(key, _to_row(rec), db=db)
                return rec

            rec = self._storage.write(op)
            if rec is not None:
                self._deliver_or_revert(deliver, _model(key, rec), dest)
                delivered += 1
        return delivered

    def resolve(self, ident: str, note: str) -> DeadLetter:
        """Mark a record resolved (handled by an operator), with a note."""
        key = _key(ident)
        db, outbox = self._write_handles()
        now = self._clock()

        def op(txn: Txn) -> dict[str, Any]:
            rec = _load(txn, db, key)
            if rec["status"] == "resolved":
                raise DeadLetterError(f"dead letter {ident} is already resolved")
            rec.update(status="resolved", note=note)
            rec["history"].append({"action": "resolve", "note": note, "at": now})
            txn.put(key, _to_row(rec), db=db)
            txn.delete(key, db=outbox)  # a resolved record is never redriven
            return rec

        return _model(key, self._storage.write(op))

    def purge(self, older_than_s: float | None = None, status: str | None = None) -> int:
        """Delete records with ``status`` whose last failure is older than ``older_than_s``."""
        if status is not None and status not in _STATUSES:
            raise ValueError(f"unknown status {status!r}; expected one of {_STATUSES}")
        db, outbox = self._write_handles()
        cutoff = None if older_than_s is None else self._clock() - older_than_s

        def op(txn: Txn, *, start: bytes | None) -> tuple[int, bytes | None]:
            cursor, deleted, scanned = txn.cursor(db=db), 0, 0
            positioned = cursor.set_range(start) if start else cursor.first()
            while positioned and scanned < _SCAN_CHUNK:
                scanned += 1
                row = _unpack(cursor.value())
                if (status is None or row[_STATUS] == status) and (
                    cutoff is None or row[_LAST] < cutoff
                ):
                    txn.delete(cursor.key(), db=outbox)
                    cursor.delete()  # moves to the next record; key() is b"" past the end
                    deleted += 1
                    positioned = bool(cursor.key())
                else:
                    positioned = cursor.next()
            return deleted, (cursor.key() if positioned else None)

        total, start = 0, None
        while True:  # chunked, so a big purge does not stall other writes
            deleted, start = self._storage.write(partial(op, start=start))
            total += deleted
            if start is None:
                return total

    def apply_retention(self, resolved_older_than_s: float) -> int:
        """Purge resolved records older than the retention; returns how many."""
        return self.purge(older_than_s=resolved_older_than_s, status="resolved")

    def _deliver_or_revert(self, deliver: Deliver, record: DeadLetter, dest: str) -> None:
        try:
            deliver(record, dest)
        except BaseException as exc:
            # Not delivered: back to pending, so the message is not lost.
            now, db, error = self._clock(), self._write_handles()[0], repr(exc)
            key = id_to_key(record.id)

            def op(txn: Txn) -> None:
                rec = _load(txn, db, key)
                rec["status"] = "pending"
                rec["history"].append({"action": "redrive_failed", "error": error, "at": now})
                txn.put(key, _to_row(rec), db=db)

            self._storage.write(op)
            raise
