"""The ``/positions`` supervisor: one Position per symbol, more added at runtime.

``start_positions`` starts the one_for_one ``/positions`` supervisor with one
:class:`~phalanx.actors._position.Position` per symbol (child id
``BTC-USDT``, path :func:`position_path`) and records its defaults per
system (weakly: a stopped system drops them); ``ensure_position`` starts a
symbol's Position on first use with those defaults. Concurrent callers of
``ensure_position`` get the same ref: a lost race returns the winner's.

Usage::

    start_positions(system, ["BTC/USDT"], notify="/strategy", risk_path="/risk",
                    take_profit_pct=Decimal(2), stop_loss_pct=Decimal(1),
                    exchange="paper")           # subscribes to the connection's tickers
    ref = ensure_position(system, "ETH/USDT")   # added at runtime, same defaults
    snap = ref.ask(ApplyFill(fill=order_fill))  # idempotent by order_fill.trade_id
"""

from __future__ import annotations

import weakref
from decimal import Decimal
from typing import Any

from phalanx.actors._position import Position
from phalanx.errors import AlreadyPresent, AlreadyStarted
from phalanx.protocols.trading import symbol_segment
from phalanx.runtime import ActorSystem, Ref
from phalanx.supervision import ChildSpec, Retry
from phalanx.supervision._supervisor import SupervisorRef

__all__ = ["POSITIONS", "ensure_position", "position_path", "position_spec", "start_positions"]

POSITIONS = "/positions"

# Per-system defaults given to start_positions, reused by ensure_position.
_defaults: weakref.WeakKeyDictionary[ActorSystem, dict[str, Any]] = weakref.WeakKeyDictionary()


def position_path(symbol: str) -> str:
    """``BTC/USDT`` -> ``/positions/BTC-USDT``."""
    return f"{POSITIONS}/{symbol_segment(symbol)}"


def position_spec(
    symbol: str,
    *,
    notify: str | None = None,
    risk_path: str | None = "/risk",
    take_profit_pct: Decimal | None = None,
    stop_loss_pct: Decimal | None = None,
    exchange: str | None = None,
    retry: Retry | None = None,
) -> ChildSpec:
    """The child spec of one Position (child id ``BTC-USDT``)."""
    return ChildSpec(
        symbol_segment(symbol),
        Position,
        args=(symbol,),
        kwargs={
            "notify": notify,
            "risk_path": risk_path,
            "take_profit_pct": take_profit_pct,
            "stop_loss_pct": stop_loss_pct,
            "exchange": exchange,
        },
        retry=retry or Retry(max_attempts=5, backoff="exponential", base=0.05, max=1.0),
    )


def start_positions(
    system: ActorSystem,
    symbols: list[str] | tuple[str, ...] = (),
    notify: str | None = None,
    risk_path: str | None = "/risk",
    *,
    take_profit_pct: Decimal | None = None,
    stop_loss_pct: Decimal | None = None,
    exchange: str | None = None,
    intensity: int = 10,
    period: float = 5.0,
) -> SupervisorRef:
    """Start the one_for_one ``/positions`` supervisor with one Position per symbol."""
    defaults: dict[str, Any] = {
        "notify": notify,
        "risk_path": risk_path,
        "take_profit_pct": take_profit_pct,
        "stop_loss_pct": stop_loss_pct,
        "exchange": exchange,
    }
    _defaults[system] = defaults
    return system.supervise(
        POSITIONS,
        "one_for_one",
        intensity=intensity,
        period=period,
        children=[position_spec(s, **defaults) for s in dict.fromkeys(symbols)],
    )


def ensure_position(system: ActorSystem, symbol: str, **overrides: Any) -> Ref:
    """The Position of ``symbol``, started under ``/positions`` if it is not there yet.

    Uses the defaults given to :func:`start_positions` (``overrides`` win).
    Safe to call concurrently: a lost race returns the winner's ref.
    """
    path = position_path(symbol)
    if system.is_alive(path):
        return system.ref(path)
    sup = SupervisorRef(system, POSITIONS)
    spec = position_spec(symbol, **{**_defaults.get(system, {}), **overrides})
    try:
        return sup.start_child(spec)
    except AlreadyStarted:
        return system.ref(path)
    except AlreadyPresent:
        return sup.restart_child(spec.id)
