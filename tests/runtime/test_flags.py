"""Flag: threading.Event semantics on a Condition that several flags share."""

from __future__ import annotations

import threading

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from phalanx.runtime._flags import Flag, Signals


def test_a_flag_is_an_event_that_starts_clear_or_set_as_asked() -> None:
    assert isinstance(Flag(), threading.Event)
    assert not Flag().is_set()
    assert Flag(Signals(), True).is_set()
    assert Flag(Signals(), True).wait(0)


def test_wait_times_out_on_a_clear_flag_with_any_timeout() -> None:
    flag = Flag()
    assert flag.wait(0) is False
    assert flag.wait(-1.0) is False  # as Event.wait: no error, just not set
    assert flag.wait(0.01) is False


def test_set_wakes_a_thread_waiting_on_it() -> None:
    flag = Flag()
    waiting = threading.Event()
    woke: list[bool] = []

    def waiter() -> None:
        waiting.set()
        woke.append(flag.wait(10.0))

    thread = threading.Thread(target=waiter)
    thread.start()
    assert waiting.wait(5.0)
    flag.set()
    thread.join(5.0)
    assert woke == [True]


def test_a_set_then_cleared_flag_still_releases_who_waited_during_the_set() -> None:
    # Event.wait returns True when set during the wait, even if cleared since.
    signals = Signals()
    flag = Flag(signals)
    result: list[bool] = []

    def waiter() -> None:
        result.append(flag.wait(10.0))

    with signals.lock:  # hold the lock so set and clear both land before the waiter re-checks
        thread = threading.Thread(target=waiter)
        thread.start()
        while flag._waiting == 0:
            signals.cond.wait(0.01)  # releases the lock: the waiter gets in and waits
        flag.set()
        flag.clear()
    thread.join(5.0)
    assert result == [True]
    assert not flag.is_set()


def test_setting_one_flag_does_not_release_a_waiter_on_another_sharing_the_condition() -> None:
    signals = Signals()
    first, second = Flag(signals), Flag(signals)
    result: list[bool] = []
    waiting = threading.Event()

    def waiter() -> None:
        waiting.set()
        result.append(second.wait(10.0))

    thread = threading.Thread(target=waiter)
    thread.start()
    assert waiting.wait(5.0)
    with signals.lock:
        while second._waiting == 0:
            signals.cond.wait(0.01)
    first.set()  # wakes the shared condition: the waiter must check again and keep waiting
    thread.join(0.1)  # sleep-ok: a bounded wait for a return that must not happen
    assert thread.is_alive()
    assert result == []
    with signals.lock:
        assert second._waiting == 1
    second.set()
    thread.join(5.0)
    assert result == [True]
    assert second._waiting == 0


class FlagMatchesEvent(RuleBasedStateMachine):
    """Any sequence of set/clear/is_set/wait(0) gives the same answers as an Event."""

    def __init__(self) -> None:
        super().__init__()
        self.signals = Signals()
        self.flags = [Flag(self.signals), Flag(self.signals, True)]
        self.events = [threading.Event(), threading.Event()]
        self.events[1].set()

    @rule(i=st.integers(0, 1))
    def set(self, i: int) -> None:
        self.flags[i].set()
        self.events[i].set()

    @rule(i=st.integers(0, 1))
    def clear(self, i: int) -> None:
        self.flags[i].clear()
        self.events[i].clear()

    @rule(i=st.integers(0, 1))
    def wait_now(self, i: int) -> None:
        assert self.flags[i].wait(0) == self.events[i].wait(0)

    @invariant()
    def same_state(self) -> None:
        for flag, event in zip(self.flags, self.events, strict=True):
            assert flag.is_set() == event.is_set()


TestFlagMatchesEvent = FlagMatchesEvent.TestCase
TestFlagMatchesEvent.settings = settings(max_examples=50, stateful_step_count=20, deadline=None)


def test_flags_that_are_never_waited_on_while_clear_build_no_condition() -> None:
    signals = Signals()
    flags = [Flag(signals), Flag(signals, True)]
    for flag in flags:
        flag.set()
        flag.clear()
        flag.set()
        assert flag.wait(1.0)
    assert signals._cond is None  # the common spawn path: sets, and waits on set flags
    assert not Flag(signals).wait(0)
    assert signals._cond is not None
