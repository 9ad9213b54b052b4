"""Reconciliation before trading is enabled (DESIGN section 6, issue 5).

The node compares the venue (open orders, recent trades per symbol, balances)
with what it stored (idempotency records, ledger) and closes the gap:

- in-flight records (``submitting``/``unknown`` or no exchange id yet) are
  looked up by client order id; found ones learn their exchange id;
- every venue trade the ledger has not posted is applied to its Position
  (``ApplyFill``) and posted to the Ledger, both idempotent by trade id;
- venue orders no record knows are adopted as ``external``;
- on first boot the ledger opens with the venue's balances
  (:func:`~phalanx.storage.plan_opening`), and the trades that already exist
  then are remembered as covered by the opening (never posted as fills);
- the result (counts, drift per asset, ``ok``) goes to the ``audit`` log as
  ``reconciliation_result`` and to ``system.events``.

Pure part: :func:`~phalanx.actors._reconcile_plan.plan_reconciliation` decides;
:func:`reconcile` does the I/O, reading the venue with
:func:`~phalanx.actors._reconcile_venue.fetch_venue` and opening the ledger
with :func:`~phalanx.actors._reconcile_opening.open_ledger`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from phalanx.actors._ledger_actor import ledger_fill_from
from phalanx.actors._reconcile_opening import load_covered, open_ledger
from phalanx.actors._reconcile_plan import plan_reconciliation
from phalanx.actors._reconcile_venue import fetch_venue
from phalanx.protocols.exchange import OrderReply
from phalanx.protocols.trading import OrderFill
from phalanx.runtime import ActorSystem
from phalanx.storage import Fill, Ledger

__all__ = ["ReconciliationResult", "ledger_marker", "reconcile"]


class ReconciliationResult(dict[str, Any]):
    """The ``reconciliation_result`` fields: counts, ``drift`` per asset, ``ok``, ``error``.

    ``adopted``: venue orders adopted now; ``external``: external orders known
    after it (earlier adoptions included); ``resolved``: in-flight records
    looked up by client id (``resolved_found`` of them exist at the venue);
    ``fills_applied``: venue trades the ledger lacked, applied now.
    """

    @property
    def ok(self) -> bool:
        """True when trading may be enabled."""
        return bool(self.get("ok"))


def reconcile(
    system: ActorSystem,
    *,
    exchange: str,
    ledger: Ledger,
    symbols: Iterable[str],
    records: Callable[[], list[Mapping[str, Any]]],
    apply_fill: Callable[[OrderFill], None],
    adopt: Callable[[OrderReply], object] | None = None,
    timeout: float = 10.0,
) -> ReconciliationResult:
    """Run one reconciliation; never raises: a failure is a result with ``ok: False``.

    ``apply_fill`` applies one fill to its Position and the Ledger (the node's
    fill sink); ``adopt`` records a venue order the node did not place.
    """
    started = time.monotonic()
    result = ReconciliationResult(
        exchange=exchange, adopted=0, resolved=0, resolved_found=0, fills_applied=0, external=0,
        unmatched_trades=0, opened=False, drift={}, ok=False, error=None,
    )  # fmt: skip
    try:
        loaded = list(records())
        wanted = set(symbols) | {str(r["symbol"]) for r in loaded if r.get("symbol")}
        venue = fetch_venue(system, exchange, wanted, loaded, timeout=timeout)
        result["opened"] = open_ledger(system, ledger, exchange, venue, sorted(wanted))
        _, covered = load_covered(system, exchange)
        marker = ledger_marker(system)
        plan = plan_reconciliation(loaded, venue, lambda f: marker(ledger_fill_from(f)), covered)
        for fill in plan.fills:
            apply_fill(fill)
        for order in plan.external:
            if adopt is not None:
                adopt(order)
        drift = ledger.verify(venue.totals)
        result.update(
            adopted=len(plan.external),
            external=len(plan.external) + sum(1 for r in loaded if r.get("external")),
            resolved=len(plan.resolved),
            resolved_found=sum(1 for found in plan.resolved.values() if found is not None),
            fills_applied=len(plan.fills),
            unmatched_trades=len(plan.unmatched_trades),
            drift={a: str(d) for a, d in drift.items()},
            ok=not drift and not plan.unmatched_trades,
        )
        if drift:
            result["error"] = f"ledger differs from the venue: {result['drift']}"
        elif plan.unmatched_trades:
            result["error"] = f"{len(plan.unmatched_trades)} venue trades without an order id"
    except Exception as exc:  # the verdict must be written whatever failed
        result["error"] = f"{type(exc).__name__}: {exc}"[:500]
    result["duration_s"] = round(time.monotonic() - started, 3)
    _report(system, result)
    return result


def ledger_marker(system: ActorSystem) -> Callable[[Fill], bool]:
    """``posted(fill)``: True when the ledger already holds that fill's marker."""
    ledger = Ledger(system.storage)
    return lambda fill: ledger.has_fill(fill.fill_id)


def _report(system: ActorSystem, result: ReconciliationResult) -> None:
    fields = dict(result)
    system.logs.logger("audit").info("reconciliation_result", **fields)
    system.events.publish("reconciliation_result", "/reconcile", **fields)
