"""Deterministic client order ids and actor paths of an intent (docs/trading-core.md).

``client_order_id = px-<sha256(order_req_id)[:20]>-<generation>``: at most 36
characters of ``[A-Za-z0-9-]`` (Binance's limit, NOTES.md), and the prefix
names the intent, so the venue's order list shows which intent each order
belongs to whatever its generation.
"""

from __future__ import annotations

import hashlib
import re

__all__ = [
    "ORDER_ID_PATTERN",
    "client_order_id",
    "generation_of",
    "intent_prefix",
    "order_child_id",
    "order_path",
]

ORDER_ID_PATTERN = re.compile(r"^[A-Za-z0-9_.:@+=-]{1,120}$")
"""What an ``order_req_id`` may contain: it is an actor path segment too."""


def intent_prefix(order_req_id: str) -> str:
    """``px-<sha256(order_req_id)[:20]>-``: shared by every generation of one intent."""
    return f"px-{hashlib.sha256(order_req_id.encode()).hexdigest()[:20]}-"


def client_order_id(order_req_id: str, generation: int) -> str:
    """The client order id of ``generation`` (0 first) of an intent."""
    return f"{intent_prefix(order_req_id)}{generation}"


def generation_of(order_req_id: str, client_id: str) -> int | None:
    """The generation encoded in ``client_id`` if it belongs to this intent, else None."""
    prefix = intent_prefix(order_req_id)
    rest = client_id[len(prefix) :] if client_id.startswith(prefix) else ""
    return int(rest) if rest.isdigit() else None


def order_child_id(order_req_id: str) -> str:
    """The child id under the orders supervisor: ``o-<order_req_id>``."""
    if not ORDER_ID_PATTERN.match(order_req_id):
        raise ValueError(
            f"order_req_id {order_req_id!r} must be 1-120 characters of letters, digits "
            "and _ . : @ + = - (it is an actor path segment)"
        )
    return f"o-{order_req_id}"


def order_path(order_req_id: str, root: str = "/orders") -> str:
    """The Order actor's path: ``/orders/o-<order_req_id>``."""
    return f"{root.rstrip('/')}/{order_child_id(order_req_id)}"
