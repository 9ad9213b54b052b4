"""An Order-actor rig over the embedded venue (the order and review tests share it)."""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from phalanx import ActorSystem, Mailbox, Retry
from phalanx.actors.exchange import connection_spec
from phalanx.actors.order import (
    OrderServices,
    OrderStore,
    intent_prefix,
    order_path,
    place_order,
    start_order_supervisor,
)
from phalanx.actors.venue import PaperVenue
from phalanx.protocols.trading import OrderFill, OrderIntent
from phalanx.runtime._config import ExchangeConfig
from phalanx.storage._orders import OrderRecord

BTC = "BTC/USDT"
ACCOUNT = "paper-key"


def wait_until(pred: Callable[[], bool], timeout: float = 10.0, what: str = "condition") -> None:
    """Bounded polling on an Event (never time.sleep)."""
    deadline = time.monotonic() + timeout
    idle = threading.Event()
    while not pred():
        assert time.monotonic() < deadline, f"timed out after {timeout}s waiting for {what}"
        idle.wait(0.01)


class Sink:
    """The fill sink: records every fill it is handed (thread-safe)."""

    def __init__(self) -> None:
        self.fills: list[OrderFill] = []
        self.lock = threading.Lock()
        self.fail_next = 0  # refuse this many fills first (a sink that is down)

    def __call__(self, fill: OrderFill) -> None:
        with self.lock:
            if self.fail_next:
                self.fail_next -= 1
                raise RuntimeError("sink down")
            self.fills.append(fill)


class Rig:
    """``/exchanges/paper`` (ccxt over HTTP to the venue) and ``/orders`` with a sink."""

    def __init__(
        self,
        system: ActorSystem,
        venue: PaperVenue,
        *,
        conn_mailbox: Mailbox | None = None,
        conn_retry: Retry | None = None,
        conn_timeout_ms: int = 2000,
        order_retry: Retry | None = None,
        **services: Any,
    ) -> None:
        self.system, self.venue = system, venue
        cc = venue.ccxt_config()
        config = ExchangeConfig(
            name="paper", urls=cc["urls"], options=cc["options"], rate_limit_per_s=1000,
            burst=1000, timeout_min_ms=min(200, conn_timeout_ms),
            timeout_default_ms=conn_timeout_ms, timeout_max_ms=conn_timeout_ms,
        )  # fmt: skip
        spec = connection_spec(
            config,
            client_config={"apiKey": cc["apiKey"], "secret": cc["secret"]},
            retry=conn_retry or Retry(max_attempts=3, backoff="fixed", base=0.0, jitter=0.0),
        )
        if conn_mailbox is not None:
            spec = dataclasses.replace(spec, mailbox=conn_mailbox)
        system.supervise("/exchanges", intensity=10, period=5, children=[spec])
        self.store = OrderStore(system.storage)
        self.sink = Sink()
        defaults: dict[str, Any] = {
            "poll_interval_s": 0.05, "lookup_interval_s": 0.02, "lookup_max_interval_s": 0.1,
            "settle_s": 0.1, "ask_timeout_s": 10.0,
        }  # fmt: skip
        self.services = OrderServices(
            store=self.store, fill_sink=self.sink, **{**defaults, **services}
        )
        start_order_supervisor(system, self.services, retry=order_retry)

    def intent(
        self, req: str, type: str = "market", amount: str = "0.01", **kw: Any
    ) -> OrderIntent:
        return OrderIntent(
            order_req_id=req, symbol=BTC, side=kw.pop("side", "buy"), type=type,  # type: ignore[arg-type]
            amount=Decimal(amount), saga_id=f"saga-{req}", **kw,
        )  # fmt: skip

    def run(self, intent: OrderIntent, timeout: float = 15.0) -> OrderRecord:
        """Place and wait until the actor stopped with a terminal record."""
        place_order(self.system, intent)
        return self.wait_done(intent.order_req_id, timeout)

    def wait_done(self, req: str, timeout: float = 15.0) -> OrderRecord:
        path = order_path(req)

        def done() -> bool:
            record = self.store.get(req)
            return record is not None and record.terminal and not self.system.is_alive(path)

        wait_until(done, timeout, f"order {req} to finish")
        record = self.store.get(req)
        assert record is not None
        return record

    def venue_orders(self, req: str) -> list[dict[str, Any]]:
        """Every order the venue accepted for this intent (any generation)."""
        prefix = intent_prefix(req)
        return [o for o in self.venue.engine.accepted if o["clientOrderId"].startswith(prefix)]

    def count(self, method: str, path: str) -> int:
        """API requests the venue received with this method and path."""
        return sum(1 for r in self.venue.requests if (r["method"], r["path"]) == (method, path))
