"""Exchange connectivity: the ExchangeConnection actor and its limits."""

from phalanx.actors.exchange._connection import ExchangeConnection
from phalanx.actors.exchange._connection_spec import (
    ConnectionState,
    connection_decider,
    connection_spec,
)
from phalanx.actors.exchange._limits import LatencyWindow, TokenBucket
from phalanx.actors.exchange._replies import order_reply

__all__ = [
    "ConnectionState",
    "ExchangeConnection",
    "LatencyWindow",
    "TokenBucket",
    "connection_decider",
    "connection_spec",
    "order_reply",
]
