"""The ledger's opening on first boot, and the venue trades it covers.

On first boot the ledger opens with the venue's balances
(:func:`~phalanx.storage.plan_opening`), and the trades that already exist
then are remembered as covered by the opening (never posted as fills). Both
live per exchange: the opening in the ledger (idempotent by its key), the
covered trade ids under ``opening:<exchange>`` in the ``reconcile`` db.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from decimal import Decimal
from typing import Any

import ccxt
import msgpack

from phalanx.actors._reconcile_plan import VenueView
from phalanx.actors._reconcile_venue import _ask
from phalanx.errors import PhalanxError
from phalanx.protocols.exchange import FetchTicker
from phalanx.runtime import ActorSystem
from phalanx.storage import Ledger, plan_opening

__all__ = ["load_covered", "open_ledger"]

_DB = "reconcile"


def _state(system: ActorSystem) -> Any:
    return system.storage.db(_DB)


def load_covered(system: ActorSystem, exchange: str) -> tuple[bool, frozenset[str]]:
    """(opened, trade ids the opening covers) for ``exchange``."""
    db = _state(system)
    raw = system.storage.read(lambda t: t.get(f"opening:{exchange}".encode(), db=db))
    if raw is None:
        return False, frozenset()
    return True, frozenset(msgpack.unpackb(bytes(raw), raw=False)["trades"])


def _save_covered(system: ActorSystem, exchange: str, trade_ids: Iterable[str]) -> None:
    db = _state(system)
    record = msgpack.packb({"at": time.time(), "trades": sorted(trade_ids)}, use_bin_type=True)
    key = f"opening:{exchange}".encode()
    system.storage.write_now(lambda t: t.put(key, record, db=db, overwrite=False))


def open_ledger(
    system: ActorSystem, ledger: Ledger, exchange: str, venue: VenueView, symbols: Iterable[str]
) -> bool:
    """First boot: post the venue's balances as the opening; False if already opened.

    The opening is posted first (idempotent by its key), then the covered
    trade ids: a crash between the two re-covers the same trades next boot,
    since nothing trades before reconciliation ends.
    """
    opened, _ = load_covered(system, exchange)
    if opened:
        return False
    prices: dict[str, Decimal] = {}
    for symbol in symbols:
        base = symbol.split("/", 1)[0]
        try:
            ticker = _ask(system, exchange, FetchTicker(symbol=symbol), 10.0)
        except (PhalanxError, ccxt.BaseError):
            continue  # the valuation only; quantities are what reconcile
        if ticker.last is not None:
            prices[base] = ticker.last
    holdings = {a: q for a, q in venue.totals.items() if q}
    ledger.post(plan_opening(exchange, holdings, prices))
    _save_covered(system, exchange, (t.id for ts in venue.trades.values() for t in ts))
    return True
