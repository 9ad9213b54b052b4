"""The result of an invariant check (DESIGN section 8), and what every checker shares.

Every ``check_*`` returns an :class:`InvariantResult` (``ok`` plus JSON-able
``details`` that name the violation); every ``assert_*`` raises
:class:`InvariantViolation` (an ``AssertionError``) with those details.
Sources are either live objects (an :class:`ActorSystem`, a
:class:`PaperVenue`) or plain data (a venue's ``/__venue/orders`` list, a
read-only :class:`Storage`), so a checker running outside the node (the
``phalanx chaos`` driver) reuses them unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from phalanx.runtime import ActorSystem
from phalanx.storage import Storage

__all__ = ["DEFAULT_ACCOUNT", "InvariantResult", "InvariantViolation"]

DEFAULT_ACCOUNT = "paper-key"
"""The venue account behind ``PaperVenue.ccxt_config()`` (and ``phalanx run``)."""

ZERO = Decimal(0)


@dataclass(frozen=True)
class InvariantResult:
    """One invariant's outcome: ``ok`` and JSON-able ``details`` naming any violation."""

    name: str
    ok: bool
    details: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """``{"ok": bool, "details": {...}}`` (the verdict's per-invariant shape)."""
        return {"ok": self.ok, "details": self.details}

    def check(self) -> InvariantResult:
        """Raise :class:`InvariantViolation` unless ``ok``; returns self."""
        if not self.ok:
            raise InvariantViolation(self)
        return self


class InvariantViolation(AssertionError):
    """An ``assert_*`` failed; ``result`` holds the details that name the violation."""

    def __init__(self, result: InvariantResult) -> None:
        super().__init__(f"invariant {result.name} violated: {result.details}")
        self.result = result


def _decimals(values: Mapping[str, Decimal | str]) -> dict[str, Decimal]:
    return {k: Decimal(str(v)) for k, v in values.items()}


def _storage(source: ActorSystem | Storage) -> Storage:
    return source.storage if isinstance(source, ActorSystem) else source
