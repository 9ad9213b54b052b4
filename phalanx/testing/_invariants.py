"""Invariant checkers for DESIGN section 8, each returning a structured result.

Every ``check_*`` returns an :class:`InvariantResult` (``ok`` plus JSON-able
``details`` that name the violation); every ``assert_*`` raises
:class:`InvariantViolation` (an ``AssertionError``) with those details.
Sources are either live objects (an :class:`ActorSystem`, a
:class:`PaperVenue`) or plain data (a venue's ``/__venue/orders`` list, a
read-only :class:`Storage`), so a checker running outside the node (the
``phalanx chaos`` driver) reuses them unchanged.

Client order ids follow ``px-<sha256(order_req_id)[:20]>-<generation>``
(``phalanx/actors/order/_ids.py``): the prefix names the intent whatever the
generation, so two accepted orders with one prefix are one intent placed twice.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from phalanx.actors.order import OrderStore, intent_prefix
from phalanx.actors.venue import PaperVenue
from phalanx.errors import StorageError
from phalanx.runtime import ActorSystem
from phalanx.storage import Ledger, Storage
from phalanx.storage._journal import SagaJournal
from phalanx.storage._positions import PositionStore
from phalanx.testing._venue_state import VenueState

__all__ = [
    "DEFAULT_ACCOUNT",
    "InvariantResult",
    "InvariantViolation",
    "check_conservation",
    "check_counters",
    "check_ledger_balanced",
    "check_ledger_matches_venue",
    "check_no_duplicate_intents",
    "check_positions_match_fills",
    "check_sagas_terminal",
]

DEFAULT_ACCOUNT = "paper-key"
"""The venue account behind ``PaperVenue.ccxt_config()`` (and ``phalanx run``)."""

ZERO = Decimal(0)
_CLIENT_ID = re.compile(r"^(px-[0-9a-f]{20}-)(\d+)$")
_GOOD_SAGA_END = ("completed", "compensated")


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


# --- 1. conservation ---------------------------------------------------------------


def _gap(c: Mapping[str, int]) -> int:
    return int(c["sent"]) - sum(
        int(c[k]) for k in ("handled", "dead_lettered", "queued", "journaled")
    )


def check_counters(counters: Mapping[str, int]) -> InvariantResult:
    """Conservation on one reading of ``system.counters()`` (e.g. from ``ctl metrics``).

    ``details`` carry the counters and the gap (positive: messages
    unaccounted for; negative: counted twice).
    """
    gap = _gap(counters)
    details: dict[str, Any] = {**counters, "gap": gap}
    if gap > 0:
        details["violation"] = (
            f"{gap} message(s) neither handled, dead-lettered, queued nor journaled"
        )
    elif gap < 0:
        details["violation"] = f"{-gap} message(s) counted twice"
    return InvariantResult("conservation", gap == 0, details)


def check_conservation(system: ActorSystem, *, timeout: float = 5.0) -> InvariantResult:
    """sent == handled + dead_lettered + queued + journaled, once quiescent.

    A message being handled is counted as sent but not yet handled, so the
    check polls ``system.counters()`` (every 10 ms, at most ``timeout`` s)
    until the books close, then judges the last reading (:func:`check_counters`).
    """
    deadline = time.monotonic() + timeout
    counters = system.counters()
    while _gap(counters) and time.monotonic() < deadline:
        time.sleep(0.01)  # sleep-ok: bounded polling for quiescence, no event to wait on
        counters = system.counters()
    result = check_counters(counters)
    if not result.ok:
        result.details["violation"] += f" after waiting {timeout}s for quiescence"
    return result


# --- 2. no duplicate intents --------------------------------------------------------


Accepted = PaperVenue | VenueState | Iterable[Mapping[str, Any]]
Holdings = PaperVenue | VenueState | Mapping[str, Decimal | str]


def _accepted(source: Accepted, account: str) -> list[Mapping[str, Any]]:
    if isinstance(source, PaperVenue):
        return list(VenueState.of(source, account).accepted)
    if isinstance(source, VenueState):
        return list(source.accepted)
    return list(source)


def _intent_names(intents: Iterable[str] | ActorSystem | Storage | None) -> dict[str, str]:
    """prefix -> order_req_id, from ids or from the node's idempotency records."""
    if intents is None:
        return {}
    if isinstance(intents, ActorSystem | Storage):
        try:
            records = OrderStore(_storage(intents)).list()
        except StorageError:  # a read-only store of a node that never placed an order
            return {}
        return {intent_prefix(r.order_req_id): r.order_req_id for r in records}
    return {intent_prefix(i): i for i in intents}


def check_no_duplicate_intents(
    accepted: Accepted,
    intents: Iterable[str] | ActorSystem | Storage | None = None,
    *,
    account: str = DEFAULT_ACCOUNT,
) -> InvariantResult:
    """No intent has two venue-accepted orders (DESIGN 8.2).

    ``accepted`` is the venue, a :class:`VenueState`, or a list of orders each
    with ``clientOrderId`` (``GET /__venue/orders``). ``intents``
    (order_req_ids, or a system/storage whose idempotency records name them)
    turns client-id prefixes back into intent names; an intent it cannot
    name is reported by its prefix. Orders whose client id is not ours
    (``px-...``) are counted as ``foreign``, not judged.
    """
    names = _intent_names(intents)
    groups: dict[str, list[str]] = {}
    foreign = 0
    orders = _accepted(accepted, account)
    for order in orders:
        cid = str(order.get("clientOrderId", ""))
        m = _CLIENT_ID.match(cid)
        if m is None:
            foreign += 1
            continue
        groups.setdefault(m.group(1), []).append(cid)
    duplicates = {names.get(p, p): ids for p, ids in sorted(groups.items()) if len(ids) > 1}
    details: dict[str, Any] = {
        "accepted": len(orders),
        "intents": len(groups),
        "foreign": foreign,
        "duplicates": duplicates,
    }
    if duplicates:
        first = next(iter(duplicates))
        details["violation"] = (
            f"{len(duplicates)} intent(s) placed more than once, e.g. {first}: {duplicates[first]}"
        )
    return InvariantResult("no_duplicate_intents", not duplicates, details)


# --- 3. sagas terminal --------------------------------------------------------------


def check_sagas_terminal(
    source: ActorSystem | Storage, saga_ids: Iterable[str] | None = None
) -> InvariantResult:
    """Every saga in the journal ended ``completed`` or ``compensated`` (DESIGN 8.3).

    With ``saga_ids``, each of them must also exist in the journal (a saga
    that was started but never journaled is ``missing``).
    """
    try:
        snapshots = SagaJournal(_storage(source)).snapshots()
    except StorageError:  # read-only storage of a node that never ran a saga
        snapshots = []
    statuses: dict[str, int] = {}
    not_terminal: dict[str, str] = {}
    seen = set()
    for snap in snapshots:
        saga_id, status = str(snap["saga_id"]), str(snap.get("status"))
        seen.add(saga_id)
        statuses[status] = statuses.get(status, 0) + 1
        if status not in _GOOD_SAGA_END:
            not_terminal[saga_id] = status
    missing = sorted(set(saga_ids or ()) - seen)
    for saga_id in missing:
        not_terminal[saga_id] = "missing"
    details: dict[str, Any] = {
        "sagas": len(snapshots),
        "statuses": statuses,
        "not_terminal": dict(sorted(not_terminal.items())),
    }
    if not_terminal:
        details["violation"] = f"{len(not_terminal)} saga(s) not completed or compensated"
    return InvariantResult("sagas_terminal", not not_terminal, details)


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
