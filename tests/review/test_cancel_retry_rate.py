"""Repeated cancel requests must not multiply venue cancel calls.

The buy saga's ``await_fill`` asks ``CancelIntent`` on every 20 ms poll until
the order is terminal. Each one used to send another ``DELETE /api/v3/order``,
so a cancel the venue does not confirm (5xx, an order it cannot find) turned
into ~50 venue calls a second per order, on top of the actor's own retry:
the rate-limit budget burned, then 429 and a 418 ban, with positions open
that can no longer be managed. A cancel in flight is retried by the Order
actor at its poll interval, whoever asks again meanwhile.
"""

from __future__ import annotations

from decimal import Decimal

from phalanx import ActorSystem
from phalanx.actors.order import order_path, order_snapshot, place_order
from phalanx.actors.venue import Fault, PaperVenue
from phalanx.protocols.trading import CancelIntent
from tests.trading._order_rig import Rig, wait_until


def test_cancel_requests_while_a_cancel_is_in_flight_send_no_extra_venue_cancels(
    system: ActorSystem, venue: PaperVenue
) -> None:
    rig = Rig(system, venue, poll_interval_s=30.0)  # the actor's own retry is far away
    bid = Decimal(venue.engine.ticker("BTCUSDT")["bidPrice"])
    place_order(system, rig.intent("cr1", type="limit", price=bid - Decimal(100)))
    wait_until(lambda: (s := order_snapshot(system, "cr1")) is not None and s.status == "open")
    venue.inject(Fault("http_503", endpoint="DELETE /api/v3/order", count=1000))
    system.ask(order_path("cr1"), CancelIntent(reason="fill_timeout"), timeout=10)
    first = rig.count("DELETE", "/api/v3/order")  # the connection retries a 5xx itself
    assert first >= 1
    for _ in range(10):  # the saga's next polls
        system.ask(order_path("cr1"), CancelIntent(reason="fill_timeout"), timeout=10)
    snap = order_snapshot(system, "cr1")
    assert snap is not None
    assert snap.status == "canceling"
    assert rig.count("DELETE", "/api/v3/order") == first
