"""A CreateOrder that was dead-lettered must never place the intent a second time.

The connection's bounded mailbox dead-letters an overflowing ``CreateOrder``
(redrivable, like every registered message), and the asker gets
``MailboxFull``. The Order actor then resolves the intent by lookup and, after
the misses and the absence check, sends generation 1. An operator who later
clears the dead-letter queue with ``dlq redrive`` would send generation 0 too:
two venue orders for one intent, the second tracked by nobody.
"""

from __future__ import annotations

import pytest

from phalanx import ActorSystem, Mailbox
from phalanx.actors.order import client_order_id, place_order
from phalanx.actors.venue import Fault, PaperVenue
from phalanx.errors import DeadLetterError, MailboxFull
from phalanx.protocols.exchange import CreateOrder, FetchBalance, FetchTicker
from tests.trading._order_rig import BTC, Rig, wait_until


def _redrive_all_pending(system: ActorSystem) -> list[str]:
    """What an operator clearing the queue does: redrive every pending record."""
    redriven = []
    for record in system.dead_letters.list(status="pending", limit=1000):
        try:
            system.dead_letters.redrive(record.id)
        except DeadLetterError:
            continue
        redriven.append(type(record.message).__name__)
    return redriven


def _asked(system: ActorSystem, conn: str) -> bool:
    """One ask answered: everything queued before it (a redriven create) was handled."""
    try:
        system.ask(conn, FetchBalance(), timeout=5)
    except MailboxFull:
        return False
    return True


def test_a_dead_lettered_create_is_resolved_so_a_redrive_never_places_the_intent_twice(
    system: ActorSystem, venue: PaperVenue
) -> None:
    rig = Rig(system, venue, conn_mailbox=Mailbox(capacity=1))
    conn = "/exchanges/paper"
    # Keep the connection busy in one slow request and its one-slot mailbox full,
    # so the order's CreateOrder overflows into the dead-letter store.
    venue.inject(Fault("latency", endpoint="GET /api/v3/ticker/24hr", latency_ms=1500))
    arrived = len(venue.requests)
    system.tell(conn, FetchTicker(symbol=BTC))
    assert venue.wait_requests(arrived + 1, timeout=5)  # the slow one is at the venue
    system.tell(conn, FetchTicker(symbol=BTC))
    with pytest.raises(MailboxFull):
        system.ask(conn, FetchBalance(), timeout=5)  # the slot is taken: overflow is real
    place_order(system, rig.intent("dl1"))
    record = rig.wait_done("dl1")
    assert (record.status, record.generation) == ("filled", 1)
    [dead] = [
        d
        for d in system.dead_letters.list(reason="mailbox_overflow", limit=1000)
        if isinstance(d.message, CreateOrder)
    ]
    assert dead.message.client_order_id == client_order_id("dl1", 0)

    _redrive_all_pending(system)
    wait_until(lambda: _asked(system, conn), what="the connection to drain")  # FIFO

    assert [o["clientOrderId"] for o in rig.venue_orders("dl1")] == [client_order_id("dl1", 1)]
    after = system.dead_letters.get(dead.id)
    assert after.status == "resolved"
    assert "dl1" in (after.note or "")
