"""The paper venue's fault injection: the kinds and one injected ``Fault``.

A fault fires on the requests its ``endpoint`` matches (``"*"``, a path, or
``"METHOD /path"``), ``count`` times, ``before`` the real action or
``after`` it. Every kind but ``latency`` replaces the reply: before, the
engine never sees the request; after, the action happened and its reply is
lost. ``PaperVenue.inject`` validates and queues one; the HTTP handler
(``_http.py``) applies it to the connection.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["FAULT_KINDS", "Fault"]

FAULT_KINDS = (
    "latency",  # delay the response by latency_ms
    "http_500",
    "http_502",
    "http_503",
    "http_429",  # with Retry-After
    "http_418",  # "IP banned until <ms>", with Retry-After
    "nonce",  # -1021 timestamp outside recvWindow
    "timeout",  # hold the request hold_s, then drop it unanswered
    "lost",  # do the real action, then drop the connection: accepted but response lost
    "empty",  # answer 200 with {} (ccxt then parses an order with id=None)
)


@dataclass
class Fault:
    """An injected fault: ``count`` shots on requests matching ``endpoint``."""

    kind: str
    endpoint: str = "*"  # "*" or "METHOD /path", e.g. "POST /api/v3/order"
    count: int = 1
    when: str = "before"  # before or after the real action
    latency_ms: int = 0
    retry_after_s: int = 1
    hold_s: float = 2.0

    def matches(self, method: str, path: str) -> bool:
        return self.endpoint in ("*", f"{method} {path}", path)
