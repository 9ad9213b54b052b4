"""Replay's data: what it rebuilds from, the live state it checks, and its report.

:class:`ReplaySources` holds only records and log lines (never derived
state); :class:`LiveState` holds the derived state in LMDB that replay
checks; :class:`ReplayReport` counts what was replayed and lists every
:class:`Difference` (empty when the live state matches) and note.
``_short`` and ``_show`` bound what a finding quotes (one line of an
error, 160 characters of a value).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from phalanx.actors._position_model import PositionState

__all__ = ["Difference", "LiveState", "ReplayReport", "ReplaySources"]


@dataclass(frozen=True)
class Difference:
    """One finding: in ``area``, ``what`` should be ``expected`` but is ``found``."""

    area: str  # positions | ledger | sagas | logs | records
    what: str
    expected: str
    found: str

    def to_dict(self) -> dict[str, str]:
        """JSON-ready."""
        return {"area": self.area, "what": self.what, "expected": self.expected,
                "found": self.found}  # fmt: skip


@dataclass(frozen=True)
class ReplaySources:
    """What replay rebuilds from (decoded by the CLI; nothing here is derived state).

    ``records``: ``order_req_id`` -> idempotency record (wire dict);
    ``log_fills``: the ``order_fill`` log lines; ``ledger_txns``: key ->
    ``{"postings": [[account, side, value, quantity], ...]}`` (the openings
    are replayed, the fill keys cross-checked); ``journal``: saga id -> its
    records by seq; ``saga_kinds``: saga id -> kind (the ``saga_started``
    log line, else the snapshot); ``applied_at``: (symbol, trade id) -> when
    the Position applied it (ordering only); ``log_since``: the oldest time
    the order log still covers (retention deletes older files; None: there
    is no order log at all).
    """

    records: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    log_fills: Sequence[Mapping[str, Any]] = ()
    ledger_txns: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    journal: Mapping[str, Sequence[Mapping[str, Any]]] = field(default_factory=dict)
    saga_kinds: Mapping[str, str] = field(default_factory=dict)
    applied_at: Mapping[tuple[str, str], float] = field(default_factory=dict)
    log_since: float | None = 0.0


@dataclass(frozen=True)
class LiveState:
    """The derived state in LMDB that replay checks."""

    positions: Mapping[str, PositionState] = field(default_factory=dict)
    position_fills: Mapping[str, frozenset[str]] = field(default_factory=dict)
    balances: Mapping[str, tuple[Decimal, Decimal]] = field(default_factory=dict)
    snapshots: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)


@dataclass
class ReplayReport:
    """Counts of what was replayed, the differences (empty = match), and notes."""

    fills: int = 0
    sagas: int = 0
    positions: int = 0
    saga_outcomes: dict[str, int] = field(default_factory=dict)
    pruned_sagas: int = 0  # compacted by journal retention: outcome from the snapshot
    differences: list[Difference] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def match(self) -> bool:
        """True when nothing differs."""
        return not self.differences

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {
            "match": self.match, "fills": self.fills, "sagas": self.sagas,
            "positions": self.positions, "saga_outcomes": dict(self.saga_outcomes),
            "pruned_sagas": self.pruned_sagas,
            "differences": [d.to_dict() for d in self.differences], "notes": list(self.notes),
        }  # fmt: skip


def _short(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:200]


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 160 else text[:157] + "..."
