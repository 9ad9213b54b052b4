"""The exchange connection never sends one CreateOrder twice.

ccxt's network errors on ``create_order`` were mapped to ``UnknownOutcome``
(never retried), but any other exception escaping the call after the venue
accepted the order (ccxt's response parsing failing with a ``TypeError`` on an
unexpected payload) was an *unknown* error: the supervisor restarted the
connection and redelivered the same ``CreateOrder``, which sent the same client
order id again. The venue accepts a repeated id once the first order has
filled, so a market order was placed twice behind the Order actor's back.
Now everything but a rejection is an ``UnknownOutcome``, resolved by lookup.
"""

from __future__ import annotations

from typing import Any

import ccxt
import pytest

from phalanx import ActorSystem, Retry
from phalanx.actors.order import client_order_id
from phalanx.actors.venue import PaperVenue
from tests.trading._order_rig import Rig


def test_a_parse_error_after_the_venue_accepted_a_create_never_sends_it_again(
    system: ActorSystem, venue: PaperVenue, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The production connection's retry (connection_spec's default: 4 attempts, so an
    # unknown error is delivered twice), without its backoff.
    rig = Rig(system, venue, conn_retry=Retry(max_attempts=4, backoff="fixed", base=0.0))
    parse = ccxt.binance.parse_order
    broken: list[bool] = []

    def parse_once_broken(self: Any, order: Any, market: Any = None) -> Any:
        if not broken and isinstance(order, dict) and "fills" in order:  # the create reply
            broken.append(True)
            raise TypeError("unexpected field in the order payload")
        return parse(self, order, market)

    monkeypatch.setattr(ccxt.binance, "parse_order", parse_once_broken)
    record = rig.run(rig.intent("rd1"))
    assert broken  # the create reply really failed to parse
    assert record.status == "filled"
    assert [o["clientOrderId"] for o in rig.venue_orders("rd1")] == [client_order_id("rd1", 0)]
