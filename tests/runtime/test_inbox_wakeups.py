"""The Inbox notifies only threads that wait: same results, and no wake-up is ever missed.

The model is the Inbox contract (a FIFO with a priority lane, a capacity and
an overflow policy); the thread tests park a consumer or a blocked sender
first, then check that each kind of change releases it.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from phalanx.runtime._envelope import Envelope
from phalanx.runtime._mailbox import CLOSED, OVERFLOW, STOPPED, Control, Inbox, Mailbox


def _env(n: int) -> Envelope:
    return Envelope.outgoing(n)


class InboxMatchesModel(RuleBasedStateMachine):
    """Single-threaded: every call returns what the contract says, in order."""

    inbox: Inbox

    @initialize(
        capacity=st.integers(1, 4),
        overflow=st.sampled_from(["dead_letter", "drop_oldest", "block"]),
        durable=st.booleans(),
    )
    def setup(self, capacity: int, overflow: Any, durable: bool) -> None:
        mailbox = Mailbox(capacity=capacity, overflow=overflow, block_timeout=0.0, durable=durable)
        self.inbox = Inbox(mailbox)
        self.capacity, self.overflow = capacity, overflow
        self.items: deque[Envelope] = deque()
        self.controls: deque[Control] = deque()
        self.closed = False
        self.offered = 0
        self.n = 0

    def _next(self) -> Envelope:
        self.n += 1
        return _env(self.n)

    @rule()
    def offer(self) -> None:
        env = self._next()
        got = self.inbox.offer(env)
        if self.closed:
            assert got == (env, CLOSED)
            return
        self.offered += 1
        if len(self.items) >= self.capacity:
            if self.overflow == "drop_oldest":
                assert got == (self.items.popleft(), OVERFLOW)
                self.items.append(env)
            else:
                assert got == (env, OVERFLOW)
            return
        assert got == (None, None)
        self.items.append(env)

    @rule()
    def put_head(self) -> None:
        env = self._next()
        self.inbox.put_head(env)
        self.items.appendleft(env)

    @rule()
    def append_unbounded(self) -> None:
        env = self._next()
        queued = self.inbox.append_unbounded(env)
        assert queued is not self.closed
        if queued:
            self.items.append(env)

    @rule(name=st.sampled_from(["killed", "shutdown"]))
    def put_control(self, name: str) -> None:
        signal = Control(name)
        self.inbox.put_control(signal)
        self.controls.append(signal)

    @precondition(lambda self: self.items or self.controls or self.closed)
    @rule()
    def get(self) -> None:
        got = self.inbox.get()
        if self.controls:
            assert got is self.controls.popleft()
        elif self.items:
            assert got is self.items.popleft()
        else:
            assert isinstance(got, Control)
            assert got.name == "shutdown"

    @rule()
    def clear_controls(self) -> None:
        self.inbox.clear_controls()
        self.controls.clear()

    @rule()
    def close(self) -> None:
        assert self.inbox.close() == list(self.items)
        self.items.clear()
        self.controls.clear()
        self.closed = True

    @invariant()
    def views_match(self) -> None:
        if not hasattr(self, "inbox"):
            return
        assert len(self.inbox) == len(self.items)
        assert self.inbox.snapshot(3) == list(self.items)[:3]
        assert self.inbox.control_pending == bool(self.controls)
        assert self.inbox.offered == self.offered
        assert self.inbox.closed == self.closed
        assert self.inbox.durable is self.inbox.mailbox.durable  # what deliver reads


TestInboxMatchesModel = InboxMatchesModel.TestCase
TestInboxMatchesModel.settings = settings(max_examples=60, stateful_step_count=30, deadline=None)


def _parked(inbox: Inbox, call: Callable[[], Any]) -> tuple[threading.Thread, list[Any]]:
    """Run ``call`` on a thread and return once it waits inside the inbox."""
    out: list[Any] = []
    thread = threading.Thread(target=lambda: out.append(call()), name="inbox-test", daemon=True)
    thread.start()
    parked = threading.Event()
    while not parked.wait(0.001):  # sleep-ok: bounded poll until the thread waits
        with inbox._lock:
            if inbox._waiting:
                parked.set()
        assert not out, "the call returned without waiting"
    return thread, out


_WAKERS: dict[str, Callable[[Inbox, Envelope], Any]] = {
    "offer": lambda inbox, env: inbox.offer(env),
    "put_head": lambda inbox, env: inbox.put_head(env),
    "append_unbounded": lambda inbox, env: inbox.append_unbounded(env),
    "put_control": lambda inbox, env: inbox.put_control(Control("killed")),
    "close": lambda inbox, env: inbox.close(),
}


@pytest.mark.parametrize("overflow", ["dead_letter", "drop_oldest", "block"])
@pytest.mark.parametrize("waker", sorted(_WAKERS))
def test_every_change_wakes_a_waiting_consumer(waker: str, overflow: Any) -> None:
    inbox = Inbox(Mailbox(capacity=2, overflow=overflow))
    thread, out = _parked(inbox, inbox.get)
    env = _env(1)
    _WAKERS[waker](inbox, env)
    thread.join(5.0)
    assert not thread.is_alive(), f"{waker} did not wake the consumer"
    (got,) = out
    if waker in ("put_control", "close"):
        assert isinstance(got, Control)
        assert got.name == ("killed" if waker == "put_control" else "shutdown")
    else:
        assert got is env
    assert inbox._waiting == 0


def test_a_get_frees_a_slot_for_a_blocked_sender() -> None:
    inbox = Inbox(Mailbox(capacity=1, overflow="block", block_timeout=5.0))
    first, second = _env(1), _env(2)
    assert inbox.offer(first) == (None, None)
    thread, out = _parked(inbox, lambda: inbox.offer(second))
    assert inbox.get() is first
    thread.join(5.0)
    assert out == [(None, None)]
    assert inbox.get() is second


def test_closing_releases_a_blocked_sender_with_stopped() -> None:
    inbox = Inbox(Mailbox(capacity=1, overflow="block", block_timeout=5.0))
    inbox.offer(_env(1))
    late = _env(2)
    thread, out = _parked(inbox, lambda: inbox.offer(late))
    inbox.close()
    thread.join(5.0)
    assert out == [(late, STOPPED)]


@settings(max_examples=25, deadline=None)
@given(ops=st.lists(st.sampled_from(["offer", "append", "control"]), min_size=1, max_size=40))
def test_a_concurrent_consumer_gets_every_item_in_order(ops: list[str]) -> None:
    inbox = Inbox(Mailbox(capacity=1000))
    got: list[Any] = []

    def consume() -> None:
        while True:
            item = inbox.get()
            got.append(item)
            if isinstance(item, Control) and item.name == "shutdown":
                return

    consumer = threading.Thread(target=consume, name="inbox-consumer", daemon=True)
    consumer.start()
    sent: list[Envelope] = []
    controls = 0
    for i, op in enumerate(ops):
        if op == "control":
            inbox.put_control(Control("killed"))
            controls += 1
            continue
        env = _env(i)
        sent.append(env)
        if op == "offer":
            assert inbox.offer(env) == (None, None)
        else:
            assert inbox.append_unbounded(env)
    inbox.put_control(Control("shutdown"))
    consumer.join(5.0)
    assert not consumer.is_alive(), "the consumer missed a wake-up"
    taken = [item for item in got if isinstance(item, Envelope)]
    left = inbox.close()
    assert taken + left == sent  # FIFO, nothing lost, nothing twice
    assert sum(1 for item in got if isinstance(item, Control) and item.name == "killed") <= controls
