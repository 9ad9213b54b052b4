"""What supervision gives each connection incarnation: its surviving state, decider, spec.

State that must outlive a restart (the ban breaker, the token bucket, the
latency window, ticker subscribers, the markets) lives in
:class:`ConnectionState`, which the child spec passes to every incarnation.
Bad credentials stop the connection; every other failure is the default
decider's.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import ccxt

from phalanx.actors.exchange._connection import ExchangeConnection
from phalanx.actors.exchange._limits import LatencyWindow, TokenBucket
from phalanx.runtime._config import ExchangeConfig
from phalanx.supervision import (
    Breaker,
    ChildSpec,
    CircuitBreaker,
    Directive,
    Retry,
    default_decider,
)

__all__ = ["ConnectionState", "connection_decider", "connection_spec"]

# Request weights (Binance spot, simplified).
_WEIGHTS = {
    "load_markets": 20,
    "fetch_ticker": 2,
    "fetch_balance": 20,
    "create_order": 1,
    "fetch_order": 4,
    "cancel_order": 1,
    "fetch_open_orders": 6,
    "fetch_my_trades": 20,
}


def connection_decider(exc: BaseException) -> Directive:
    """Bad credentials stop the connection (no retry can fix them); else the default."""
    if isinstance(exc, ccxt.AuthenticationError):
        return Directive.STOP
    return default_decider(exc)


class ConnectionState:
    """What survives the connection's restarts."""

    def __init__(
        self,
        config: ExchangeConfig,
        *,
        weights: dict[str, float] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.bucket = TokenBucket(config.rate_limit_per_s, config.burst)
        self.latency = LatencyWindow(
            config.timeout_min_ms, config.timeout_max_ms, config.timeout_default_ms
        )
        # Opened only by bans (open_for Retry-After); ordinary errors go to the decider.
        self.breaker = CircuitBreaker(
            Breaker(reset_timeout=1.0, max_reset_timeout=600.0),
            name=f"exchange:{config.name}",
            failure_threshold=10**9,
            clock=clock,
        )
        self.clock = clock
        self.weights = {**_WEIGHTS, **config.weights, **(weights or {})}
        self.subscribers: dict[str, set[str]] = {}
        self.markets: dict[str, Any] | None = None
        self.state = "connecting"
        self.consecutive_errors = 0
        self.calls = 0
        self.lock = threading.Lock()


def connection_spec(
    config: ExchangeConfig,
    *,
    client_config: dict[str, Any] | None = None,
    retry: Retry | None = None,
    state: ConnectionState | None = None,
) -> ChildSpec:
    """The child spec of one connection: its state survives restarts; bad keys stop it."""
    return ChildSpec(
        config.name,
        ExchangeConnection,
        kwargs={"state": state or ConnectionState(config), "client_config": client_config},
        retry=retry or Retry(max_attempts=4, backoff="exponential", base=0.05, max=2.0),
        decider=connection_decider,
        shutdown=5.0,
    )
