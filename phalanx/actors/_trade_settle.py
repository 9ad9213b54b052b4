"""Settling a filled trade: ``update_position``, ``post_ledger``, ``finalize``.

The fills are the trades ``await_fill`` journaled in its result; each effect is
keyed by trade id, so a resumed step applies and posts only what is missing
(the fill sink may have applied them already). ``finalize`` releases the
reservation (it is not effect-free) and names the outcome.
"""

from __future__ import annotations

from typing import Any

from phalanx.actors._ledger_actor import ledger_fill_from
from phalanx.actors._reconcile import ledger_marker
from phalanx.actors._trade_admission import _release_funds
from phalanx.actors.saga._model import StepContext
from phalanx.protocols.trading import ApplyFill, OrderFill, symbol_segment
from phalanx.storage import Ledger
from phalanx.storage._positions import PositionStore


def _fills(ctx: StepContext) -> list[OrderFill]:
    raw = ctx.results["await_fill"]["fills"]
    return [OrderFill.model_validate(f) for f in raw]


def _update_position(ctx: StepContext) -> dict[str, Any]:
    from phalanx.actors._position_tree import ensure_position  # noqa: PLC0415

    symbol = str(ctx.input["symbol"])
    store = PositionStore(ctx.system.storage)
    # The fill sink applied them already (a read, not a write, to find out).
    missing = [f for f in _fills(ctx) if not store.applied(symbol, f.trade_id)]
    if missing:
        ref = ensure_position(ctx.system, symbol)
        for fill in missing:
            ref.ask(ApplyFill(fill=fill), timeout=5.0)
    return {"applied": len(missing), "path": f"/positions/{symbol_segment(symbol)}"}


def _post_ledger(ctx: StepContext) -> dict[str, Any]:
    ledger = Ledger(ctx.system.storage)
    posted_before = ledger_marker(ctx.system)
    fills = [ledger_fill_from(f) for f in _fills(ctx)]
    # One commit for all of the order's new fills (all or nothing); the marker
    # reads skip the commit entirely when a resumed step finds them all posted.
    posted = sum(ledger.post_fills([f for f in fills if not posted_before(f)]))
    return {"posted": posted, "fills": len(fills)}


def _finalize(ctx: StepContext) -> dict[str, Any]:
    _release_funds(ctx)
    got = ctx.results["await_fill"]
    outcome = "filled" if got["status"] == "filled" else "partial"
    return {"outcome": outcome, "filled": got["filled"], "average": got["average"]}
