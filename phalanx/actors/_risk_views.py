"""The Risk actor's state as the model's input and as a snapshot (a mixin of ``Risk``).

- :meth:`_RiskViews._live_usage`: the :class:`RiskUsage` of a check, from the
  kept indexes (``_positions``, ``_notional``, ``_reserved``, ``counted``)
  without copies; valid until the state changes.
- :meth:`_RiskViews.usage`: the same input rebuilt from ``held`` and ``pnl``,
  the reference the kept indexes must equal (tests/trading/test_risk_fast_path.py).
- :meth:`_RiskViews.snapshot`: the :class:`RiskSnapshot` of ``GetRisk`` and
  ``introspect``.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal

from phalanx.actors._risk_model import MarketFilter, RiskUsage
from phalanx.actors._risk_state import _RiskState
from phalanx.protocols.trading import RiskSnapshot

__all__: list[str] = []

ZERO = Decimal(0)


class _RiskViews(_RiskState):
    """Mixin of :class:`~phalanx.actors._risk.Risk`: its state as a usage or a snapshot."""

    # Set by Risk.on_start (written by the reservations mixin, _risk_funds.py).
    held: dict[str, tuple[str, Decimal]]
    _reserved: dict[str, dict[str, Decimal]]
    at_venue: dict[str, tuple[str, Decimal, float]]

    def _live_usage(
        self,
        free: Mapping[str, Decimal] | None = None,
        markets: Mapping[str, MarketFilter] | None = None,
    ) -> RiskUsage:
        """:meth:`usage` from the kept indexes, not copies: valid until the state changes.

        Equal to ``usage(free, markets)`` (tests/trading/test_risk_fast_path.py);
        ``counted`` alone used to cost a copy of every order counted today.
        """
        return RiskUsage(
            trading_state=self.state,
            positions=self._positions,
            notional=self._notional,
            drawdown=self.drawdown(),
            trades_today=self.trades,
            counted=self.counted,
            free=free,
            reserved=self._reserved,
            markets=markets or {},
        )

    def usage(
        self,
        free: Mapping[str, Decimal] | None = None,
        markets: Mapping[str, MarketFilter] | None = None,
    ) -> RiskUsage:
        """The model's input now (``free`` and ``markets`` as given), rebuilt from the state."""
        reserved: dict[str, dict[str, Decimal]] = {}
        for rid, (asset, amount) in self.held.items():
            reserved.setdefault(asset, {})[rid] = amount
        return RiskUsage(
            trading_state=self.state,
            positions={s: p["quantity"] for s, p in self.pnl.items()},
            notional={s: p["notional"] for s, p in self.pnl.items()},
            drawdown=self._drawdown(self._sum_pnl()),
            trades_today=self.trades,
            counted=frozenset(self.counted),
            free=free,
            reserved=reserved,
            markets=markets or {},
        )

    def snapshot(self) -> RiskSnapshot:
        """The current :class:`RiskSnapshot`."""
        reserved: dict[str, Decimal] = {}
        for asset, amount in self.held.values():
            reserved[asset] = reserved.get(asset, ZERO) + amount
        exposure = sum((p["notional"] for p in self.pnl.values()), ZERO)
        return RiskSnapshot(
            trading_state=self.state,
            limits=self.limits.model_dump(mode="json"),
            usage={
                "day": self.day,
                "trades_today": self.trades,
                "exposure": str(exposure),
                "pending": str(reserved.get(self.limits.quote_asset, ZERO)),
                "open_positions": sum(1 for p in self.pnl.values() if p["quantity"] != 0),
                "total_pnl": str(self._total_pnl()),
                "drawdown": str(self.drawdown()),
                "reserved": {a: str(v) for a, v in sorted(reserved.items())},
                "at_venue": {rid: f"{a} {v}" for rid, (a, v, _) in sorted(self.at_venue.items())},
                "state_reason": self.state_reason,
            },
            reservations={rid: f"{a} {v}" for rid, (a, v) in sorted(self.held.items())},
        )
