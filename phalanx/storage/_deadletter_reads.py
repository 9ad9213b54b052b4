"""The reads of :class:`~phalanx.storage._deadletters.DeadLetterStore`: get, list, stats, count.

Every read runs in the caller's thread in one read txn (it never waits for
the writer); payloads are decoded and models built outside the txn. A
readonly store opened before any write has no databases yet: reads then see
no records instead of failing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from phalanx.errors import DeadLetterError
from phalanx.storage._deadletter_record import (
    _FIRST,
    _LAST,
    _REASON,
    _STATUS,
    _TARGET,
    DeadLetter,
    _key,
    _model,
    _unpack,
)
from phalanx.storage._env import Storage, Txn

__all__: list[str] = []


class _DeadLetterReads:
    """Mixin of :class:`DeadLetterStore`: the queries (no state of its own)."""

    _storage: Storage
    _clock: Callable[[], float]

    if TYPE_CHECKING:

        def _handles(self) -> tuple[Any, Any] | None: ...

    def get(self, ident: str) -> DeadLetter:
        """The record ``ident``; DeadLetterError if there is none."""
        key, handles = _key(ident), self._handles()
        raw = None if handles is None else self._storage.read(lambda t: t.get(key, db=handles[0]))
        if raw is None:
            raise DeadLetterError(f"no dead letter {ident!r}")
        return _model(key, _unpack(raw))

    def list(
        self,
        reason: str | None = None,
        target: str | None = None,
        status: str | None = None,
        since: float | None = None,
        limit: int = 100,
        after: str | None = None,
    ) -> list[DeadLetter]:
        """Records oldest first, filtered; ``since`` is an inclusive bound on ``last_failed_at``.

        Page with ``after`` = the last id of the previous page (exclusive).
        """
        start = _key(after) if after else None
        handles = self._handles()
        if handles is None or limit <= 0:
            return []
        db = handles[0]

        def scan(txn: Txn) -> list[tuple[bytes, list[Any]]]:
            cursor = txn.cursor(db=db)
            if start is not None and not cursor.set_range(start):
                return []  # unpositioned: iternext would restart at the first key
            out: list[tuple[bytes, list[Any]]] = []
            for key, raw in cursor.iternext():
                row = _unpack(raw)
                if (
                    key != start
                    and (reason is None or row[_REASON] == reason)
                    and (target is None or row[_TARGET] == target)
                    and (status is None or row[_STATUS] == status)
                    and (since is None or row[_LAST] >= since)
                ):
                    out.append((key, row))
                    if len(out) >= limit:
                        break
            return out

        # Decode payloads and build models outside the read txn.
        return [_model(key, row) for key, row in self._storage.read(scan)]

    def stats(self) -> dict[str, Any]:
        """Pending depth, pending counts by reason and by target ("-" if none), oldest age."""
        by_reason: dict[str, int] = {}
        by_target: dict[str, int] = {}
        handles = self._handles()

        def scan(txn: Txn) -> float | None:
            first = None
            for raw in txn.cursor(db=db).iternext(keys=False):
                row = _unpack(raw)
                if row[_STATUS] == "pending":
                    by_reason[row[_REASON]] = by_reason.get(row[_REASON], 0) + 1
                    by_target[row[_TARGET] or "-"] = by_target.get(row[_TARGET] or "-", 0) + 1
                    first = row[_FIRST] if first is None else min(first, row[_FIRST])
            return first

        oldest = None
        if handles is not None:
            db = handles[0]
            oldest = self._storage.read(scan)
        return {
            "depth": sum(by_reason.values()),
            "by_reason": by_reason,
            "by_target": by_target,
            "oldest_age_s": None if oldest is None else max(0.0, self._clock() - oldest),
        }

    def count(self) -> int:
        """How many records there are, in any status (O(1))."""
        handles = self._handles()
        if handles is None:
            return 0
        return self._storage.read(lambda txn: txn.stat(handles[0])["entries"])
