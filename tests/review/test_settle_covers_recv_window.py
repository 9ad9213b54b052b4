"""The default settle window must outlast the venue's acceptance window for a create.

``OrderServices.settle_s`` must exceed the longest a create can sit before
the venue acts on it (its docstring). ccxt signs every Binance request with
``recvWindow`` = 10 s, so Binance still executes a create that reaches it up
to 10 s after it was signed. The default was 3 s: a create delayed 4 s on its
way (a congested path, a queueing gateway) timed out at the client, missed its
lookups, and generation 1 was sent while generation 0 was still to land: the
intent placed twice.
"""

from __future__ import annotations

import dataclasses

import ccxt

from phalanx import ActorSystem
from phalanx.actors.order import OrderServices, client_order_id
from phalanx.actors.venue import Fault, PaperVenue
from tests.trading._order_rig import Rig

DEFAULT_SETTLE_S = next(
    f.default for f in dataclasses.fields(OrderServices) if f.name == "settle_s"
)


def test_the_default_settle_window_covers_ccxt_binance_recv_window() -> None:
    recv_window_ms = ccxt.binance().options["recvWindow"]
    assert float(DEFAULT_SETTLE_S) * 1000 > recv_window_ms  # type: ignore[arg-type]


def test_a_create_delayed_4s_at_the_venue_is_found_not_placed_twice_with_default_settings(
    system: ActorSystem, venue: PaperVenue
) -> None:
    # The client gives up after 0.5 s; the venue acts on the create 4 s after it
    # arrived, well inside the 10 s recvWindow Binance would honour.
    rig = Rig(system, venue, conn_timeout_ms=500, settle_s=DEFAULT_SETTLE_S)
    venue.inject(Fault("latency", endpoint="POST /api/v3/order", latency_ms=4000))
    record = rig.run(rig.intent("late4"), timeout=30)
    assert record.status == "filled"
    assert [o["clientOrderId"] for o in rig.venue_orders("late4")] == [client_order_id("late4", 0)]
