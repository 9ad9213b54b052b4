"""A cancel that reaches an Order actor before it ever registered must not place the order.

An incarnation whose ``_Drive`` crashed past its retry budget (the message is
dead-lettered, ``retries_exhausted``) leaves the next incarnation to start from
its own ``_Drive``, queued behind whatever arrived during the backoff. When
that is the saga's ``CancelIntent`` (its place step timed out), the actor used
to register the intent and SEND the order in order to cancel it: an order the
caller had just given up on, at a stale price, filled before the cancel.
"""

from __future__ import annotations

from phalanx import ActorSystem, Retry
from phalanx.actors.order import order_path
from phalanx.actors.order._ids import order_child_id
from phalanx.actors.venue import PaperVenue
from phalanx.protocols.trading import CancelIntent, OrderSnapshot
from phalanx.supervision._supervisor import SupervisorRef
from tests.trading._order_rig import Rig


def test_a_cancel_ahead_of_the_first_registration_abandons_the_intent_without_sending(
    system: ActorSystem, venue: PaperVenue
) -> None:
    # Incarnation 1 crashes registering; a budget of one delivery dead-letters that
    # _Drive, and the 2 s backoff leaves time for the cancel to queue up first.
    rig = Rig(
        system, venue, crash_at=frozenset({"before_journal"}),
        order_retry=Retry(max_attempts=1, backoff="fixed", base=2.0, jitter=0.0),
    )  # fmt: skip
    restarting = system.events.subscribe(kinds={"child_restarting"})
    try:
        intent = rig.intent("cx1")
        SupervisorRef(system, "/orders").start_child(child_id=order_child_id("cx1"), intent=intent)
        assert restarting.get(timeout=5) is not None  # incarnation 1 crashed
    finally:
        restarting.close()
    snap = system.ask(order_path("cx1"), CancelIntent(reason="place_timeout"), timeout=10)
    assert isinstance(snap, OrderSnapshot)
    record = rig.wait_done("cx1")
    assert (record.status, record.cancel_requested, record.filled) == ("canceled", True, 0)
    assert rig.venue_orders("cx1") == []
    assert rig.count("POST", "/api/v3/order") == 0
    stopped = system.dead_letters.list(reason="actor_stopped", target=order_path("cx1"))
    assert stopped == []  # the queued _Drive ended the actor: nothing left behind
