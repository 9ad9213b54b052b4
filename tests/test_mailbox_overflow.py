"""Bounded mailboxes: nothing is lost under overflow, for every policy."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from phalanx import Actor, ActorSystem, Mailbox, MailboxFull

N = 10_000


class SlowCounter(Actor):
    """Counts 'work' messages, spending a little time on each."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0
        self._pause = threading.Event()

    def on_receive(self, message: Any) -> Any:
        if message == "count":
            return self.count
        self.count += 1
        self._pause.wait(0.00002)  # simulated work: slower than the sender
        return None


def _final_count(system: ActorSystem, path: str) -> int:
    # The mailbox may still be full right after the flood: retry refused asks.
    for _ in range(10_000):
        try:
            return int(system.ask(path, "count", timeout=30))
        except MailboxFull:
            continue
    raise AssertionError("the mailbox never accepted the final ask")


@pytest.mark.parametrize("policy", ["dead_letter", "drop_oldest", "block"])
def test_overflow_conserves_every_message_for_policy(system: ActorSystem, policy: str) -> None:
    mailbox = Mailbox(capacity=10, overflow=policy, block_timeout=0.0005)  # type: ignore[arg-type]
    system.spawn(SlowCounter, "/slow", mailbox=mailbox)
    for i in range(N):
        system.tell("/slow", ("work", i))
    handled = _final_count(system, "/slow")
    system.storage.flush()
    overflowed = system.dead_letters.list(reason="mailbox_overflow", target="/slow", limit=3 * N)
    # Refused final-count asks are dead-lettered too; count only the work messages.
    dead = [d for d in overflowed if d.message != "count"]
    assert handled + len(dead) == N
    assert handled > 0
    if policy != "block":
        assert dead, "capacity 10 against a slow handler must overflow"
    ids = {d.message_id for d in dead}
    assert len(ids) == len(dead), "a message was dead-lettered twice"


def test_drop_oldest_dead_letters_the_oldest_queued_message(system: ActorSystem) -> None:
    gate = threading.Event()
    entered = threading.Event()

    class Gated(Actor):
        def __init__(self) -> None:
            super().__init__()
            self.seen: list[int] = []

        def on_receive(self, message: Any) -> Any:
            if message == "seen":
                return self.seen
            if message == "hold":
                entered.set()
                gate.wait(10)
                return None
            self.seen.append(message)
            return None

    system.spawn(Gated, "/gated", mailbox=Mailbox(capacity=3, overflow="drop_oldest"))
    started = system.ask_future("/gated", "hold")  # occupies the handler
    assert entered.wait(10)
    for i in range(5):
        system.tell("/gated", i)
    gate.set()
    started.get(timeout=10)
    assert system.ask("/gated", "seen", timeout=10) == [2, 3, 4]
    system.storage.flush()
    evicted = [d.message for d in system.dead_letters.list(reason="mailbox_overflow")]
    assert evicted == [0, 1]


def test_ask_that_overflows_raises_mailbox_full_at_once(system: ActorSystem) -> None:
    gate = threading.Event()
    entered = threading.Event()

    class Blocker(Actor):
        def on_receive(self, message: Any) -> Any:
            entered.set()
            gate.wait(10)
            return message

    system.spawn(Blocker, "/blocker", mailbox=Mailbox(capacity=1))
    first = system.ask_future("/blocker", "first")
    assert entered.wait(10)
    system.tell("/blocker", "fills-the-one-slot")
    with pytest.raises(MailboxFull):
        system.ask("/blocker", "overflowing-ask", timeout=60)
    gate.set()
    assert first.get(timeout=10) == "first"
    system.storage.flush()
    records = system.dead_letters.list(reason="mailbox_overflow")
    assert [r.message for r in records] == ["overflowing-ask"]
