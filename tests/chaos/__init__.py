"""Chaos tests of the trading core, and the harness the trading tests share.

:func:`trading_node` boots an ActorSystem with the trading tree
(``start_trading``) against a :class:`PaperVenue`; :func:`verdict` checks
DESIGN section 8's invariants against the venue.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

from phalanx import ActorSystem, Retry
from phalanx.actors import TradingNode, start_trading
from phalanx.actors.order import intent_prefix
from phalanx.actors.venue import PaperVenue
from phalanx.runtime._config import (
    ExchangeConfig,
    NodeConfig,
    StrategyConfig,
    TradingConfig,
    VenueConfig,
)
from phalanx.storage._positions import PositionStore

ACCOUNT = "paper-key"  # the venue account behind PaperVenue.ccxt_config()
FAST_ORDERS = {
    "poll_interval_s": 0.05,
    "lookup_interval_s": 0.02,
    "lookup_max_interval_s": 0.2,
    "settle_s": 0.2,
}


def node_config(*, strategy: bool = False, **exchange: Any) -> NodeConfig:
    """A node trading on the embedded venue's connection ``paper`` (no strategy by default)."""
    limits = {"rate_limit_per_s": 100_000.0, "burst": 10_000.0, **exchange}
    return NodeConfig(
        venue=VenueConfig(),
        exchanges=[ExchangeConfig(name="paper", use_venue=True, **limits)],
        trading=TradingConfig(strategy=StrategyConfig(enabled=strategy)),
        demo=False,
    )


@contextmanager
def trading_node(
    var_dir: Path,
    venue: PaperVenue,
    *,
    config: NodeConfig | None = None,
    order_options: Mapping[str, Any] | None = None,
    risk_options: Mapping[str, Any] | None = None,
) -> Iterator[TradingNode]:
    """A started system with the trading tree; shut down (orderly) on exit."""
    with ActorSystem(
        name="trading-test",
        var_dir=var_dir,
        retry=Retry(max_attempts=3, backoff="fixed", base=0.0, jitter=0.0),
        sync=False,
    ) as system:
        yield start_trading(
            system, config or node_config(), venue,
            order_options={**FAST_ORDERS, **(order_options or {})}, risk_options=risk_options,
        )  # fmt: skip


def venue_totals(venue: PaperVenue) -> dict[str, Decimal]:
    """Free + locked per asset of the test account."""
    return {
        a: Decimal(v["free"]) + Decimal(v["locked"])
        for a, v in venue.engine.balances(ACCOUNT).items()
    }


def venue_fills(venue: PaperVenue, symbol: str) -> Decimal:
    """Signed sum of the account's venue fills on ``symbol`` (``BTC/USDT``)."""
    total = Decimal(0)
    for t in venue.engine.my_trades(ACCOUNT, symbol.replace("/", "")):
        qty = Decimal(t["qty"])
        total += qty if t["isBuyer"] else -qty
    return total


def duplicate_intents(venue: PaperVenue, saga_ids: list[str]) -> dict[str, int]:
    """Intents with more than one venue-accepted order (must stay empty)."""
    counts: dict[str, int] = {}
    prefixes = {intent_prefix(s): s for s in saga_ids}
    for accepted in venue.engine.accepted:
        cid = str(accepted["clientOrderId"])
        for prefix, saga_id in prefixes.items():
            if cid.startswith(prefix):
                counts[saga_id] = counts.get(saga_id, 0) + 1
    return {s: n for s, n in counts.items() if n > 1}


def verdict(node: TradingNode, venue: PaperVenue, saga_ids: list[str]) -> dict[str, Any]:
    """DESIGN section 8 on the trading core: what chaos must never break."""
    from phalanx.actors.saga import saga_snapshot

    storage = node.system.storage
    statuses: dict[str, int] = {}
    for saga_id in saga_ids:
        snap = saga_snapshot(storage, saga_id)
        status = snap.status if snap is not None else "missing"
        statuses[status] = statuses.get(status, 0) + 1
    positions = PositionStore(storage)
    symbols = sorted({a["symbol"] for a in venue.engine.accepted})
    position_gap = {}
    for raw in symbols:
        symbol = f"{raw[:-4]}/{raw[-4:]}"  # BTCUSDT -> BTC/USDT (USDT-quoted markets)
        gap = positions.load(symbol).quantity - venue_fills(venue, symbol)
        if gap:
            position_gap[symbol] = gap
    return {
        "duplicates": duplicate_intents(venue, saga_ids),
        "statuses": statuses,
        "trial_difference": node.ledger.trial_balance()["difference"],
        "ledger_vs_venue": node.ledger.verify(venue_totals(venue)),
        "position_gap": position_gap,
    }
