"""Invariants 4 and 5: the ledger balances and matches the venue; positions match fills.

The venue side is the embedded :class:`PaperVenue`, a :class:`VenueState`
(fetched from ``/__venue/...`` by an outside checker) or plain mappings. A
read-only store with no ledger or positions yet reads as empty, not as an
error: a node that never traded has nothing posted.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from phalanx.actors.venue import PaperVenue
from phalanx.errors import StorageError
from phalanx.runtime import ActorSystem
from phalanx.storage import Ledger, Storage
from phalanx.storage._positions import PositionStore
from phalanx.testing._invariant_result import (
    DEFAULT_ACCOUNT,
    ZERO,
    InvariantResult,
    _decimals,
    _storage,
)
from phalanx.testing._venue_state import VenueState

__all__ = [
    "check_ledger_balanced",
    "check_ledger_matches_venue",
    "check_positions_match_fills",
]

Holdings = PaperVenue | VenueState | Mapping[str, Decimal | str]


# --- 4. ledger ------------------------------------------------------------------------


def _ledger(source: ActorSystem | Storage | Ledger) -> Ledger:
    return source if isinstance(source, Ledger) else Ledger(_storage(source))


def check_ledger_balanced(source: ActorSystem | Storage | Ledger) -> InvariantResult:
    """The trial balance is zero, in total and per valuation currency (DESIGN 8.4).

    ``details`` carry the totals and, under ``by_currency``, each currency's
    difference (a fill's quote; ``""`` for openings).
    """
    try:
        ledger = _ledger(source)
        tb = ledger.trial_balance()
        per = ledger.trial_balances()
    except StorageError:  # read-only storage with no ledger yet: nothing posted
        tb = {"debits": ZERO, "credits": ZERO, "difference": ZERO}
        per = {}
    details: dict[str, Any] = {k: str(v) for k, v in tb.items()}
    details["by_currency"] = {c: str(v["difference"]) for c, v in per.items()}
    off = {c: v["difference"] for c, v in per.items() if v["difference"]}
    if tb["difference"] != 0 or off:
        per_currency = "".join(f"; in {c or 'unstated'}: {d}" for c, d in off.items())
        details["violation"] = f"debits - credits = {tb['difference']}{per_currency}"
    return InvariantResult("ledger_balanced", not details.get("violation"), details)


def check_ledger_matches_venue(
    source: ActorSystem | Storage | Ledger,
    venue: Holdings,
    *,
    account: str = DEFAULT_ACCOUNT,
) -> InvariantResult:
    """``Ledger.verify`` against the venue's balances is empty (DESIGN 8.4).

    Fees in any asset included: the ledger's ``assets:<A>`` quantity moves by
    exactly what the venue's balance of ``A`` moves by (a base fee lowers the
    base received, a BNB fee the BNB held).

    ``venue`` is the embedded venue, a :class:`VenueState`, or a
    ``{asset: total}`` mapping (free + locked). ``details["differences"]`` is
    ledger - venue per asset.
    """
    if isinstance(venue, PaperVenue):
        venue = VenueState.of(venue, account)
    totals = venue.totals if isinstance(venue, VenueState) else _decimals(venue)
    try:
        diff = _ledger(source).verify(totals)
    except StorageError:
        diff = {a: -v for a, v in totals.items() if v}
    details: dict[str, Any] = {"differences": {a: str(d) for a, d in diff.items()}}
    if diff:
        details["violation"] = ", ".join(f"{a}: ledger - venue = {d}" for a, d in diff.items())
    return InvariantResult("ledger_matches_venue", not diff, details)


# --- 5. positions ---------------------------------------------------------------------


def check_positions_match_fills(
    source: ActorSystem | Storage,
    venue: Holdings,
    *,
    account: str = DEFAULT_ACCOUNT,
) -> InvariantResult:
    """Each stored position's quantity equals the signed sum of its venue fills.

    The sum is net of fees the venue charged in the base asset (a buy of
    ``q`` paying ``f`` of it holds ``q - f``): a position holds what the
    account holds. ``venue`` is the embedded venue, a :class:`VenueState`, or
    ``{symbol: signed filled quantity}``. Every symbol with a position or a
    fill is compared; ``details["gaps"]`` is position - fills per symbol.
    """
    if isinstance(venue, PaperVenue):
        venue = VenueState.of(venue, account)
    fills = venue.fills if isinstance(venue, VenueState) else _decimals(venue)
    try:
        store = PositionStore(_storage(source))
        positions = {s: store.load(s).quantity for s in store.symbols()}
    except StorageError:
        positions = {}
    gaps = {}
    for symbol in sorted(set(fills) | set(positions)):
        gap = positions.get(symbol, ZERO) - fills.get(symbol, ZERO)
        if gap:
            gaps[symbol] = str(gap)
    details: dict[str, Any] = {
        "positions": {s: str(q) for s, q in sorted(positions.items())},
        "gaps": gaps,
    }
    if gaps:
        details["violation"] = ", ".join(f"{s}: position - fills = {g}" for s, g in gaps.items())
    return InvariantResult("positions_match_fills", not gaps, details)
