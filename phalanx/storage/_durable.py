"""Durable mailboxes: envelopes journaled in LMDB until their handler finishes.

Layout of the ``mailboxes`` named DB:
``key = path utf-8 + b"\\x00" + big-endian u64 seq``, value = msgpack record.
Invariant: within one path, seqs increase in append order, so a prefix scan
replays unfinished messages in their original order.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import msgpack

from phalanx.errors import CodecError
from phalanx.protocols import decode, encode
from phalanx.storage._env import Storage

__all__ = ["DurableEntry", "DurableMailboxes"]

_DB = "mailboxes"
_SEQ = struct.Struct(">Q")


@dataclass(frozen=True, slots=True)
class DurableEntry:
    """One journaled, not yet finished message."""

    key: bytes
    message_id: str
    message: Any
    sender: str | None
    attempt: int
    enqueued_at: float
    trace: dict[str, str]


def _prefix(path: str) -> bytes:
    return path.encode() + b"\x00"


class DurableMailboxes:
    """Append, ack and replay journaled envelopes for durable mailboxes."""

    def __init__(self, storage: Storage) -> None:
        self._storage = storage
        self._db = storage.db(_DB)

    def key(self, path: str, seq: int) -> bytes:
        """The LMDB key of message ``seq`` at ``path``."""
        return _prefix(path) + _SEQ.pack(seq)

    def append(self, entries: Sequence[DurableEntry]) -> None:
        """Journal envelopes in one write; returns once they are committed.

        Raises :class:`CodecError` at once if any message cannot be encoded
        (nothing is written then): a message that cannot be journaled must not
        be accepted as durable.
        """
        records = [
            (
                entry.key,
                msgpack.packb(
                    {
                        "id": entry.message_id,
                        "sender": entry.sender,
                        "attempt": entry.attempt,
                        "at": entry.enqueued_at,
                        "trace": dict(entry.trace),
                        "payload": encode(entry.message),
                    },
                    use_bin_type=True,
                ),
            )
            for entry in entries
        ]
        db = self._db

        def op(txn: Any) -> None:
            for key, record in records:
                txn.put(key, record, db=db)

        self._storage.write_now(op)

    def ack(self, keys: Sequence[bytes]) -> None:
        """Remove finished entries, asynchronously, in one write.

        Ordering holds because an entry is only handled after its append
        committed, so its delete is always submitted after that commit.
        """
        db = self._db
        batch = list(keys)

        def op(txn: Any) -> None:
            for key in batch:
                txn.delete(key, db=db)

        self._storage.submit(op)

    def next_seq(self, path: str) -> int:
        """One more than the highest seq journaled for ``path`` (0 when none)."""
        prefix = _prefix(path)
        upper = prefix + b"\xff" * 8

        def op(txn: Any) -> int:
            cursor = txn.cursor(db=self._db)
            if cursor.set_range(upper):
                if not cursor.prev():
                    return 0
            elif not cursor.last():
                return 0
            key = bytes(cursor.key())
            if key.startswith(prefix) and len(key) == len(prefix) + 8:
                return int(_SEQ.unpack(key[len(prefix) :])[0]) + 1
            return 0

        return self._storage.read(op)

    def load(self, path: str) -> list[DurableEntry]:
        """Every unfinished entry for ``path``, oldest first.

        An entry that cannot be decoded is returned with ``message`` set to the
        :class:`CodecError`, so the caller can dead-letter it rather than lose it.
        """
        prefix = _prefix(path)

        def op(txn: Any) -> list[tuple[bytes, bytes]]:
            cursor = txn.cursor(db=self._db)
            out: list[tuple[bytes, bytes]] = []
            if not cursor.set_range(prefix):
                return out
            for key, value in cursor:
                if not bytes(key).startswith(prefix):
                    break
                out.append((bytes(key), bytes(value)))
            return out

        entries = []
        for key, raw in self._storage.read(op):
            try:
                record = msgpack.unpackb(raw, raw=False)
                message: Any = decode(record["payload"])
                entries.append(
                    DurableEntry(
                        key=key,
                        message_id=str(record["id"]),
                        message=message,
                        sender=record.get("sender"),
                        attempt=int(record.get("attempt", 1)),
                        enqueued_at=float(record.get("at", 0.0)),
                        trace=dict(record.get("trace") or {}),
                    )
                )
            except (CodecError, ValueError, KeyError, TypeError, msgpack.ExtraData) as exc:
                entries.append(
                    DurableEntry(
                        key, "", CodecError(f"corrupt durable entry: {exc}"), None, 1, 0.0, {}
                    )
                )
        return entries

    def depth(self, path: str) -> int:
        """How many entries are journaled for ``path``."""
        return len(self.load(path))
