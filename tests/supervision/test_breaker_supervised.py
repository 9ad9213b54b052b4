"""A child spec with a breaker opens its circuit instead of escalating."""

from __future__ import annotations

from typing import Any

import pytest

from phalanx import ActorSystem, Breaker, ChildSpec, CircuitOpen, Retry
from phalanx.runtime import Actor, Event


class Venue(Actor):
    def on_receive(self, message: Any) -> Any:
        if message == "fail":
            raise ConnectionError("venue down")
        return message


def _state(event: Event, new: str) -> bool:
    return event.kind == "breaker_state" and event.fields["new"] == new


def test_circuit_opens_fails_fast_then_half_open_trial_closes_and_reopens_longer(
    system: ActorSystem,
) -> None:
    system.supervise(
        "/s",
        intensity=1,
        period=5,
        children=[
            ChildSpec(
                "venue",
                Venue,
                retry=Retry(max_attempts=1, base=0.0, jitter=0.0),
                breaker=Breaker(reset_timeout=0.05, multiplier=2.0, max_reset_timeout=1.0),
            )
        ],
    )
    events = system.events.subscribe(kinds={"breaker_state", "supervisor_escalated"})
    try:
        system.tell("/s/venue", "fail")
        system.tell("/s/venue", "fail")  # second restart in the window: intensity 1 exceeded
        opened = events.wait_for(lambda e: _state(e, "open"), timeout=5)
        assert opened is not None
        with pytest.raises(CircuitOpen):
            system.ask("/s/venue", "ping", timeout=5)
        system.tell("/s/venue", "dropped-while-open")
        assert system.stats("/s/venue")["status"] == "circuit_open"

        assert events.wait_for(lambda e: _state(e, "half_open"), timeout=5) is not None
        assert system.ask("/s/venue", "trial", timeout=5) == "trial"
        closed = events.wait_for(lambda e: _state(e, "closed"), timeout=5)
        assert closed is not None
        assert system.stats("/s/venue")["breaker"] == "closed"

        system.tell("/s/venue", "fail")
        system.tell("/s/venue", "fail")
        assert events.wait_for(lambda e: _state(e, "open"), timeout=5) is not None
        assert events.wait_for(lambda e: _state(e, "half_open"), timeout=5) is not None
        system.tell("/s/venue", "fail")  # the trial fails
        reopened = events.wait_for(lambda e: _state(e, "open"), timeout=5)
        assert reopened is not None
        assert reopened.fields["reset_timeout_s"] == pytest.approx(0.1)
    finally:
        events.close()
    assert not [e for e in system.events.recent(500) if e.kind == "supervisor_escalated"]
    system.storage.flush()
    open_dl = system.dead_letters.list(reason="circuit_open")
    assert {d.message for d in open_dl} >= {"ping", "dropped-while-open"}
