"""The absence check must not send a new generation before it has checked every candidate.

Before a new client id, the Order actor looks up the orders behind the recent
trades that no record owns (one of them may be its own order, filled while the
client-id lookup kept missing). It looks up at most ``max_trade_order_lookups``
of them per check. With more candidates than that, it used to check the most
recent ones and then send generation 1 anyway, though its own filled order was
among those never checked: a second order for the intent.
"""

from __future__ import annotations

from decimal import Decimal

from phalanx import ActorSystem
from phalanx.actors.order import client_order_id
from phalanx.actors.venue import Fault, PaperVenue
from tests.trading._order_rig import ACCOUNT, Rig


def _market_buy(venue: PaperVenue, client_id: str) -> None:
    venue.engine.place(
        ACCOUNT, {"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET", "quantity": "0.001",
                  "newClientOrderId": client_id},
    )  # fmt: skip


def test_more_unowned_traded_orders_than_the_lookup_budget_never_yield_a_second_order(
    system: ActorSystem, venue: PaperVenue
) -> None:
    rig = Rig(system, venue, max_lookup_misses=2, max_trade_order_lookups=5)
    cid = client_order_id("ab1", 0)
    venue.inject(Fault("http_503", endpoint="POST /api/v3/order"))
    _market_buy(venue, cid)  # the venue filled it, but its client-id index lags
    venue.engine._by_client.pop((ACCOUNT, "BTCUSDT", cid))
    for n in range(12):  # then the account traded a dozen orders of its own
        _market_buy(venue, f"manual-{n}")
    record = rig.run(rig.intent("ab1", amount="0.001"), timeout=30)
    assert [o["clientOrderId"] for o in rig.venue_orders("ab1")] == [cid]
    assert (record.status, record.generation, record.filled) == ("filled", 0, Decimal("0.001"))
