"""Invariants 2 and 3: no intent placed twice at the venue, every saga terminal.

Client order ids follow ``px-<sha256(order_req_id)[:20]>-<generation>``
(``phalanx/actors/order/_ids.py``): the prefix names the intent whatever the
generation, so two accepted orders with one prefix are one intent placed twice.
A saga is terminal once its journal snapshot says ``completed`` or
``compensated``; any other status (or a saga never journaled) is a violation.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from phalanx.actors.order import OrderStore, intent_prefix
from phalanx.actors.venue import PaperVenue
from phalanx.errors import StorageError
from phalanx.runtime import ActorSystem
from phalanx.storage import Storage
from phalanx.storage._journal import SagaJournal
from phalanx.testing._invariant_result import DEFAULT_ACCOUNT, InvariantResult, _storage
from phalanx.testing._venue_state import VenueState

__all__ = ["check_no_duplicate_intents", "check_sagas_terminal"]

_CLIENT_ID = re.compile(r"^(px-[0-9a-f]{20}-)(\d+)$")
_GOOD_SAGA_END = ("completed", "compensated")

# --- 2. no duplicate intents --------------------------------------------------------


Accepted = PaperVenue | VenueState | Iterable[Mapping[str, Any]]


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
