"""Building blocks of test nodes: a fast test ActorSystem and a paper-venue trading config."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from phalanx.runtime import ActorSystem
from phalanx.runtime._config import (
    ExchangeConfig,
    NodeConfig,
    StrategyConfig,
    TradingConfig,
    VenueConfig,
)
from phalanx.supervision import Retry

__all__ = ["FAST_ORDER_OPTIONS", "make_system", "trading_config"]

FAST_ORDER_OPTIONS: Mapping[str, float] = {
    "poll_interval_s": 0.05,
    "lookup_interval_s": 0.02,
    "lookup_max_interval_s": 0.2,
    "settle_s": 0.2,
}
"""Order actor poll and settle intervals short enough for tests (``start_trading`` kwargs)."""


def make_system(var_dir: Path, name: str = "test", **kwargs: Any) -> ActorSystem:
    """An unstarted ActorSystem for tests: ``sync=False`` and a fast, jitter-free retry."""
    options: dict[str, Any] = {
        "retry": Retry(max_attempts=3, backoff="fixed", base=0.0, jitter=0.0),
        "sync": False,
        **kwargs,
    }
    return ActorSystem(name=name, var_dir=var_dir, **options)


def trading_config(*, strategy: bool | StrategyConfig = False, **exchange: Any) -> NodeConfig:
    """A node config trading on the embedded venue's connection ``paper``.

    ``strategy``: False (no strategy: the test launches sagas), True (the demo
    strategy's defaults) or a :class:`StrategyConfig`. ``exchange`` overrides
    :class:`ExchangeConfig` fields (timeouts, limits); rate limits default high.
    """
    if isinstance(strategy, bool):
        strategy = StrategyConfig(enabled=strategy)
    limits = {"rate_limit_per_s": 100_000.0, "burst": 10_000.0, **exchange}
    return NodeConfig(
        venue=VenueConfig(),
        exchanges=[ExchangeConfig(name="paper", use_venue=True, **limits)],
        trading=TradingConfig(strategy=strategy),
        demo=False,
    )
