"""What every Order actor shares (:class:`OrderServices`), the sink's op type, the crash points.

One :class:`OrderServices` is built per ``/orders`` supervisor and handed to
every Order actor it starts; it is frozen and validated when built, so a bad
rate or an unknown crash point fails at start, naming the field.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from phalanx.protocols.trading import OrderFill
from phalanx.storage._env import Txn
from phalanx.storage._orders import OrderStore

__all__ = ["CRASH_POINTS", "OrderServices", "SinkOp"]

CRASH_POINTS: frozenset[str] = frozenset(
    {"before_journal", "after_journal", "after_send", "after_ack_before_journal"}
)
SinkOp = Callable[[Txn], object]
"""A fill sink's write, returned for the actor to commit with the fill's sunk marker."""


@dataclass(frozen=True)
class OrderServices:
    """What every Order actor shares: the store, the venue, the fill sink and the rates.

    ``fill_sink`` is handed each journaled fill once (again after a restart if
    its sunk marker was not journaled); it must be idempotent by trade id. It
    either writes what it writes itself and returns None, or returns that write
    as a storage op, which the actor commits in the same transaction as the
    fill's sunk marker: one write per fill instead of two, and the sink's write
    and the marker commit together or not at all.

    ``crash_at`` and ``blind_resend`` are test-only switches (never config):
    ``crash_at`` raises ``ConnectionError`` once, in incarnation 1, at each named
    point of :data:`CRASH_POINTS`; ``blind_resend`` is the broken actor of issue
    7 that resends the same client id on ``unknown`` instead of looking it up.
    """

    store: OrderStore
    exchanges: str = "/exchanges"  # the connection is at <exchanges>/<intent.exchange>
    # A sink may return a write op instead of committing its own write: the op then
    # commits in the transaction that journals the fill sunk (see _order_fills._sink_pending).
    fill_sink: Callable[[OrderFill], SinkOp | None] | None = None
    poll_interval_s: float = 0.25  # open orders: one FetchOrder per interval
    lookup_interval_s: float = 0.05  # unknown: first lookup delay, then x2 up to the max
    lookup_max_interval_s: float = 1.0
    max_lookup_misses: int = 3  # OrderNotFound this many times before the absence check
    # ... and at least this long since the order became unknown: longer than a
    # request can sit at the venue before it acts (a timed-out create may still land).
    # ccxt signs Binance requests with recvWindow 10 s: Binance executes a create up
    # to 10 s after it was signed (+1 s of clock tolerance), so 11 s.
    settle_s: float = 11.0
    ask_timeout_s: float = 15.0  # > the connection's timeout_max_ms plus rate-limit waits
    trade_lookback_ms: int = 60_000
    max_trade_order_lookups: int = 20  # FetchOrder calls per absence check, at most
    clock: Callable[[], float] = time.time
    crash_at: frozenset[str] = frozenset()
    blind_resend: bool = False

    def __post_init__(self) -> None:
        unknown = set(self.crash_at) - CRASH_POINTS
        if unknown:
            raise ValueError(
                f"unknown crash points {sorted(unknown)}; valid: {sorted(CRASH_POINTS)}"
            )
        if self.max_lookup_misses < 1:
            raise ValueError("max_lookup_misses must be >= 1")
        if min(self.poll_interval_s, self.lookup_interval_s, self.ask_timeout_s) <= 0:
            raise ValueError("poll_interval_s, lookup_interval_s and ask_timeout_s must be > 0")
