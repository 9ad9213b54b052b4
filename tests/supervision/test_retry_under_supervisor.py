"""Retry is restart with backoff plus redelivery, under an OTP supervisor."""

from __future__ import annotations

import threading
from typing import Any

from phalanx import ActorSystem, ChildSpec, Retry
from phalanx.runtime import Actor

_fails_left: dict[str, int] = {}
_effects: list[Any] = []
_lock = threading.Lock()


class Payments(Actor):
    """Fails a message's first ``n`` deliveries (n from the message), then applies it once."""

    def on_receive(self, message: Any) -> Any:
        if message == "effects":
            return list(_effects)
        name, fail_times = message
        with _lock:
            left = _fails_left.setdefault(name, fail_times)
            if left > 0:
                _fails_left[name] = left - 1
                raise ConnectionError(f"venue hiccup on {name} ({left} left)")
        assert self.envelope is not None
        _effects.append((name, self.envelope.attempt))
        return name


def _supervise(system: ActorSystem, retry: Retry) -> None:
    _fails_left.clear()
    _effects.clear()
    system.supervise(
        "/pay", intensity=20, period=5, children=[ChildSpec("p", Payments, retry=retry)]
    )


def test_message_failing_twice_then_succeeding_is_applied_exactly_once(
    system: ActorSystem,
) -> None:
    _supervise(system, Retry(max_attempts=5, backoff="fixed", base=0.01, jitter=0.0))
    assert system.ask("/pay/p", ("charge-1", 2), timeout=10) == "charge-1"
    assert system.ask("/pay/p", "effects", timeout=10) == [("charge-1", 3)]
    assert system.stats("/pay/p")["restarts"] == 2


def test_messages_sent_during_backoff_wait_and_keep_fifo_order(system: ActorSystem) -> None:
    _supervise(system, Retry(max_attempts=5, backoff="exponential", base=0.05, jitter=0.0))
    events = system.events.subscribe(kinds={"child_restarting"})
    try:
        system.tell("/pay/p", ("first", 1))
        assert events.get(timeout=5) is not None  # the child is now in its backoff
        for i in range(20):
            system.tell("/pay/p", (f"queued-{i}", 0))
    finally:
        events.close()
    effects = system.ask("/pay/p", "effects", timeout=10)
    assert effects == [("first", 2)] + [(f"queued-{i}", 1) for i in range(20)]


def test_exhausted_attempts_land_in_the_dlq_with_count_and_traceback(system: ActorSystem) -> None:
    _supervise(system, Retry(max_attempts=3, backoff="fixed", base=0.0, jitter=0.0))
    system.tell("/pay/p", ("doomed", 99))
    system.tell("/pay/p", ("fine", 0))
    assert system.ask("/pay/p", "effects", timeout=10) == [("fine", 1)]
    system.storage.flush()
    [record] = system.dead_letters.list(reason="retries_exhausted")
    assert record.message == ["doomed", 99]
    assert record.attempts == 3
    assert record.target == "/pay/p"
    assert record.traceback is not None
    assert "venue hiccup on doomed" in record.traceback


def test_a_child_spec_can_supply_its_own_decider(system: ActorSystem) -> None:
    from phalanx import Directive

    def strict(exc: BaseException) -> Directive:
        return Directive.STOP if isinstance(exc, ConnectionError) else Directive.RESUME

    _fails_left.clear()
    _effects.clear()
    sup = system.supervise(
        "/pay",
        children=[ChildSpec("p", Payments, restart="transient", decider=strict, retry=Retry())],
    )
    events = system.events.subscribe(kinds={"actor_stopped"})
    try:
        system.tell("/pay/p", ("fatal", 1))  # STOP: dead-lettered, child stopped for good
        assert events.wait_for(lambda e: e.path == "/pay/p", timeout=5) is not None
    finally:
        events.close()
    assert [c["status"] for c in sup.which_children()] == ["undefined"]
    system.storage.flush()
    [record] = system.dead_letters.list(reason="handler_failed")
    assert record.message == ["fatal", 1]
