"""An acknowledged order the venue no longer knows must end, not be polled forever.

Venues drop orders from their books (Binance archives canceled orders with no
fills; an in-memory venue restarts). The Order actor polled such an order by
exchange id for ever: a FetchOrder every poll interval per order, a saga that
could only end by its hard timeouts (``compensation_failed``, with its
reservation held until then). After repeated misses over ten times ``settle_s`` and a check
that it is not among the open orders, the order is journaled ``expired`` with
every fill the venue still reports for it, and never sent again.
"""

from __future__ import annotations

from decimal import Decimal

from phalanx import ActorSystem
from phalanx.actors.order import order_snapshot, place_order
from phalanx.actors.venue import PaperVenue
from tests.trading._order_rig import ACCOUNT, Rig, wait_until


def _forget(venue: PaperVenue, exchange_order_id: str) -> None:
    """The venue cancels the order, then drops it from its books (archival)."""
    engine = venue.engine
    engine.cancel(ACCOUNT, "BTCUSDT", exchange_order_id, None)
    with engine._lock:
        order = engine._orders.pop(int(exchange_order_id))
        engine._by_client.pop((ACCOUNT, "BTCUSDT", order.client_id))


def test_an_order_the_venue_forgot_ends_expired_with_its_fills_and_is_never_resent(
    system: ActorSystem, venue: PaperVenue
) -> None:
    rig = Rig(system, venue, max_lookup_misses=2)
    ask = Decimal(venue.engine.ticker("BTCUSDT")["askPrice"])
    # 0.08 at the ask: 0.05 fills as taker at once (the book depth), 0.03 rests.
    place_order(system, rig.intent("gone1", type="limit", amount="0.08", price=ask))
    wait_until(
        lambda: (
            (s := order_snapshot(system, "gone1")) is not None and s.status == "partially_filled"
        )
    )
    record = rig.store.get("gone1")
    assert record is not None
    assert record.exchange_order_id is not None
    _forget(venue, record.exchange_order_id)

    done = rig.wait_done("gone1", timeout=15)
    assert (done.status, done.filled) == ("expired", Decimal("0.05"))
    assert len(rig.venue_orders("gone1")) == 1
    assert [f.amount for f in rig.sink.fills] == [Decimal("0.05")]
