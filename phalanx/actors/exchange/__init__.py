"""Exchange connectivity: the ExchangeConnection actor and its limits."""

from phalanx.actors.exchange._connection import (
    ConnectionState,
    ExchangeConnection,
    connection_decider,
    connection_spec,
    order_reply,
)
from phalanx.actors.exchange._limits import LatencyWindow, TokenBucket

__all__ = [
    "ConnectionState",
    "ExchangeConnection",
    "LatencyWindow",
    "TokenBucket",
    "connection_decider",
    "connection_spec",
    "order_reply",
]
