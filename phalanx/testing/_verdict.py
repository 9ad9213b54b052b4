"""The verdict over every invariant, and the ``assert_*`` form of each checker."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from phalanx.actors.venue import PaperVenue
from phalanx.runtime import ActorSystem
from phalanx.storage import Ledger, Storage
from phalanx.testing._check_books import (
    Holdings,
    check_ledger_balanced,
    check_ledger_matches_venue,
    check_positions_match_fills,
)
from phalanx.testing._check_conservation import check_conservation
from phalanx.testing._check_orders import (
    Accepted,
    check_no_duplicate_intents,
    check_sagas_terminal,
)
from phalanx.testing._invariant_result import DEFAULT_ACCOUNT, InvariantResult
from phalanx.testing._venue_state import VenueState

__all__ = [
    "INVARIANTS",
    "Verdict",
    "assert_conservation",
    "assert_ledger_balanced",
    "assert_ledger_matches_venue",
    "assert_no_duplicate_intents",
    "assert_positions_match_fills",
    "assert_sagas_terminal",
    "check_all",
]

INVARIANTS = (
    "conservation",
    "no_duplicate_intents",
    "sagas_terminal",
    "ledger_balanced",
    "ledger_matches_venue",
    "positions_match_fills",
)
"""The names :func:`check_all` reports, in order."""


@dataclass(frozen=True)
class Verdict:
    """Every invariant's result; ``ok`` only if each holds. JSON via :meth:`to_json`."""

    invariants: dict[str, InvariantResult]
    campaign: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, results: Iterable[InvariantResult], **campaign: Any) -> Verdict:
        """A verdict over ``results`` (later results of one name replace earlier ones)."""
        return cls({r.name: r for r in results}, dict(campaign))

    @property
    def ok(self) -> bool:
        """True when every invariant holds (and at least one was checked)."""
        return bool(self.invariants) and all(r.ok for r in self.invariants.values())

    @property
    def violations(self) -> dict[str, dict[str, Any]]:
        """``{name: details}`` of the invariants that do not hold."""
        return {n: r.details for n, r in self.invariants.items() if not r.ok}

    def with_campaign(self, **campaign: Any) -> Verdict:
        """The same results with ``campaign`` facts (actions run, kills...) merged in."""
        return Verdict(self.invariants, {**self.campaign, **campaign})

    def to_json(self) -> dict[str, Any]:
        """``{"ok": bool, "invariants": {name: {"ok", "details"}}}`` (+ ``campaign``)."""
        out: dict[str, Any] = {
            "ok": self.ok,
            "invariants": {n: r.to_json() for n, r in self.invariants.items()},
        }
        if self.campaign:
            out["campaign"] = self.campaign
        return out

    def dumps(self, **kwargs: Any) -> str:
        """:meth:`to_json` as a JSON string (``kwargs`` go to ``json.dumps``)."""
        return json.dumps(self.to_json(), default=str, **kwargs)

    def check(self) -> Verdict:
        """Raise ``AssertionError`` naming every violation unless ``ok``; returns self."""
        if not self.ok:
            raise AssertionError(f"invariants violated: {json.dumps(self.violations, default=str)}")
        return self


def check_all(
    system: ActorSystem | Storage,
    venue: PaperVenue | VenueState | None = None,
    *,
    account: str = DEFAULT_ACCOUNT,
    saga_ids: Iterable[str] | None = None,
    skip: Iterable[str] = (),
    quiesce_timeout: float = 5.0,
) -> Verdict:
    """Check DESIGN section 8 on a node (and its venue); a JSON-serialisable :class:`Verdict`.

    ``system`` is a live :class:`ActorSystem` (conservation is checked too) or
    a storage opened after the node stopped. ``venue`` is the embedded venue
    or a :class:`VenueState` (e.g. ``VenueState.fetch(url)`` from outside);
    without it only the node-side invariants run (sagas terminal, ledger
    balanced). ``skip`` names invariants not to check (e.g.
    ``ledger_matches_venue`` for a node that never reconciled an opening
    balance).
    """
    skipped = set(skip)
    unknown = skipped - set(INVARIANTS)
    if unknown:
        raise ValueError(f"unknown invariant(s) {sorted(unknown)}; valid: {list(INVARIANTS)}")
    state = VenueState.of(venue, account) if isinstance(venue, PaperVenue) else venue
    checks: list[tuple[str, Callable[[], InvariantResult]]] = []
    if isinstance(system, ActorSystem):
        live = system
        checks.append(("conservation", lambda: check_conservation(live, timeout=quiesce_timeout)))
    if state is not None:
        seen = state
        checks.append(("no_duplicate_intents", lambda: check_no_duplicate_intents(seen, system)))
    checks.append(("sagas_terminal", lambda: check_sagas_terminal(system, saga_ids)))
    checks.append(("ledger_balanced", lambda: check_ledger_balanced(system)))
    if state is not None:
        checks.append(("ledger_matches_venue", lambda: check_ledger_matches_venue(system, seen)))
        checks.append(("positions_match_fills", lambda: check_positions_match_fills(system, seen)))
    return Verdict.of(run() for name, run in checks if name not in skipped)


# --- assert_* variants: raise InvariantViolation with the checker's details ---------------


def assert_conservation(system: ActorSystem, *, timeout: float = 5.0) -> InvariantResult:
    """:func:`check_conservation`, raising :class:`InvariantViolation` if it fails."""
    return check_conservation(system, timeout=timeout).check()


def assert_no_duplicate_intents(
    accepted: Accepted,
    intents: Iterable[str] | ActorSystem | Storage | None = None,
    *,
    account: str = DEFAULT_ACCOUNT,
) -> InvariantResult:
    """:func:`check_no_duplicate_intents`, raising :class:`InvariantViolation` if it fails."""
    return check_no_duplicate_intents(accepted, intents, account=account).check()


def assert_sagas_terminal(
    source: ActorSystem | Storage, saga_ids: Iterable[str] | None = None
) -> InvariantResult:
    """:func:`check_sagas_terminal`, raising :class:`InvariantViolation` if it fails."""
    return check_sagas_terminal(source, saga_ids).check()


def assert_ledger_balanced(source: ActorSystem | Storage | Ledger) -> InvariantResult:
    """:func:`check_ledger_balanced`, raising :class:`InvariantViolation` if it fails."""
    return check_ledger_balanced(source).check()


def assert_ledger_matches_venue(
    source: ActorSystem | Storage | Ledger,
    venue: Holdings,
    *,
    account: str = DEFAULT_ACCOUNT,
) -> InvariantResult:
    """:func:`check_ledger_matches_venue`, raising :class:`InvariantViolation` if it fails."""
    return check_ledger_matches_venue(source, venue, account=account).check()


def assert_positions_match_fills(
    source: ActorSystem | Storage,
    venue: Holdings,
    *,
    account: str = DEFAULT_ACCOUNT,
) -> InvariantResult:
    """:func:`check_positions_match_fills`, raising :class:`InvariantViolation` if it fails."""
    return check_positions_match_fills(source, venue, account=account).check()
