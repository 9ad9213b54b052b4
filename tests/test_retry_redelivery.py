"""Crash, restart with backoff, and redelivery of the failing message at the head."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from phalanx import Actor, ActorSystem, Retry

# Failures per message survive restarts because they live outside the actor.
_failures: dict[str, int] = {}
_lock = threading.Lock()


class Flaky(Actor):
    """Fails each message ``fail_times`` times (by message name), then handles it."""

    def __init__(self, fail_times: int, log: list[tuple[str, int]]) -> None:
        super().__init__()
        self.fail_times = fail_times
        self.log = log

    def on_receive(self, message: Any) -> Any:
        if message == "log":
            return list(self.log)
        assert self.envelope is not None
        with _lock:
            seen = _failures.get(message, 0)
            if seen < self.fail_times and message.startswith("fail"):
                _failures[message] = seen + 1
                raise ConnectionError(f"transient failure {seen + 1} on {message}")
        self.log.append((message, self.envelope.attempt))
        return message


def test_failing_message_is_redelivered_first_with_attempt_incremented(
    system: ActorSystem,
) -> None:
    _failures.clear()
    log: list[tuple[str, int]] = []
    retry = Retry(max_attempts=5, backoff="fixed", base=0.02, jitter=0.0)
    system.spawn(Flaky, "/flaky", 2, log, retry=retry)
    system.tell("/flaky", "fail-1")
    for i in range(5):
        system.tell("/flaky", f"ok-{i}")  # these arrive during the backoff
    assert system.ask("/flaky", "log", timeout=10) == [
        ("fail-1", 3),
        *[(f"ok-{i}", 1) for i in range(5)],
    ]
    assert system.stats("/flaky")["restarts"] == 2


def test_retries_exhausted_dead_letters_the_message_and_child_carries_on(
    system: ActorSystem,
) -> None:
    _failures.clear()
    log: list[tuple[str, int]] = []
    retry = Retry(max_attempts=3, backoff="fixed", base=0.0, jitter=0.0)
    events = system.events.subscribe(kinds={"retry_attempt"})
    try:
        system.spawn(Flaky, "/flaky", 99, log, retry=retry)
        system.tell("/flaky", "fail-forever")
        system.tell("/flaky", "ok-after")
        assert system.ask("/flaky", "log", timeout=10) == [("ok-after", 1)]
        attempts = [events.get(timeout=5) for _ in range(2)]
    finally:
        events.close()
    assert [e.fields["attempt"] for e in attempts if e is not None] == [2, 3]
    system.storage.flush()
    [record] = system.dead_letters.list(reason="retries_exhausted")
    assert record.message == "fail-forever"
    assert record.attempts == 3
    assert record.error_type is not None
    assert record.error_type.endswith("ConnectionError")
    assert "transient failure 3" in (record.traceback or "")


def test_ask_waits_through_retries_and_gets_the_reply(system: ActorSystem) -> None:
    _failures.clear()
    log: list[tuple[str, int]] = []
    system.spawn(Flaky, "/flaky", 1, log, retry=Retry(max_attempts=3, base=0.0, jitter=0.0))
    assert system.ask("/flaky", "fail-then-reply", timeout=10) == "fail-then-reply"


def test_ask_gets_the_handler_error_when_retries_are_exhausted(system: ActorSystem) -> None:
    _failures.clear()
    log: list[tuple[str, int]] = []
    system.spawn(Flaky, "/flaky", 99, log, retry=Retry(max_attempts=2, base=0.0, jitter=0.0))
    with pytest.raises(ConnectionError, match="transient failure 2"):
        system.ask("/flaky", "fail-ask", timeout=10)
