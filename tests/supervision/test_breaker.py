"""The circuit breaker, driven by a fake clock: no sleeps."""

from __future__ import annotations

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from phalanx import Breaker, CircuitOpen
from phalanx.supervision._breaker import CircuitBreaker


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _breaker(**kw: float) -> tuple[CircuitBreaker, FakeClock, list[tuple[str, str, float]]]:
    clock = FakeClock()
    changes: list[tuple[str, str, float]] = []
    settings_ = Breaker(reset_timeout=1.0, multiplier=2.0, max_reset_timeout=4.0, **kw)
    breaker = CircuitBreaker(
        settings_,
        clock=clock,
        on_change=lambda o, n, t: changes.append((o, n, t)),
        failure_threshold=3,
        name="venue",
    )
    return breaker, clock, changes


def test_open_fast_fail_half_open_trial_closed_then_open_again_longer() -> None:
    breaker, clock, changes = _breaker()
    calls: list[int] = []
    for _ in range(3):
        breaker.record_failure()
    assert breaker.state == "open"
    with pytest.raises(CircuitOpen, match="venue"):
        breaker.call(lambda: calls.append(1))
    assert calls == []  # fast-fail: fn never ran
    clock.now += 1.0
    assert breaker.state == "half_open"
    assert breaker.allow()  # the one trial
    assert not breaker.allow()  # nobody else while it is in flight
    breaker.record_success()
    assert breaker.state == "closed"
    breaker.trip("intensity exceeded")
    clock.now += 1.0
    assert breaker.allow()
    breaker.record_failure()  # the trial fails: open again, twice as long
    assert breaker.state == "open"
    assert breaker.reset_timeout == 2.0
    clock.now += 1.9
    assert breaker.state == "open"
    clock.now += 0.1
    assert breaker.state == "half_open"
    assert [(o, n) for o, n, _ in changes] == [
        ("closed", "open"),
        ("open", "half_open"),
        ("half_open", "closed"),
        ("closed", "open"),
        ("open", "half_open"),
        ("half_open", "open"),
        ("open", "half_open"),
    ]


def test_reset_timeout_grows_to_the_cap_and_resets_on_close() -> None:
    breaker, clock, _ = _breaker()
    breaker.trip()
    for expected in (2.0, 4.0, 4.0, 4.0):
        clock.now += breaker.reset_timeout
        assert breaker.allow()
        breaker.record_failure()
        assert breaker.reset_timeout == expected
    clock.now += breaker.reset_timeout
    assert breaker.allow()
    breaker.record_success()
    assert breaker.reset_timeout == 1.0


def test_open_for_keeps_the_later_deadline() -> None:
    breaker, clock, _ = _breaker()
    breaker.open_for(10.0)
    breaker.open_for(2.0)
    clock.now += 9.9
    assert breaker.state == "open"
    clock.now += 0.1
    assert breaker.state == "half_open"


def test_slow_call_counts_as_failure_but_returns_its_result() -> None:
    breaker, clock, _ = _breaker(call_timeout=0.5)

    def slow() -> str:
        clock.now += 0.6
        return "late"

    for _ in range(3):
        assert breaker.call(slow) == "late"
    assert breaker.state == "open"


def test_a_raising_listener_does_not_break_the_breaker() -> None:
    def boom(old: str, new: str, timeout: float) -> None:
        raise RuntimeError("listener bug")

    breaker = CircuitBreaker(Breaker(), on_change=boom, failure_threshold=1)
    breaker.record_failure()
    assert breaker.state == "open"


class BreakerMachine(RuleBasedStateMachine):
    """Random traffic against the breaker; its invariants hold after every step."""

    def __init__(self) -> None:
        super().__init__()
        self.clock = FakeClock()
        self.settings = Breaker(reset_timeout=1.0, multiplier=3.0, max_reset_timeout=9.0)
        self.breaker = CircuitBreaker(self.settings, clock=self.clock, failure_threshold=2)
        self.in_flight = 0

    @rule()
    def allow(self) -> None:
        state = self.breaker.state
        allowed = self.breaker.allow()
        if state == "closed":
            assert allowed
        if allowed:
            self.in_flight += 1

    @precondition(lambda self: self.in_flight > 0)
    @rule(ok=st.booleans())
    def finish(self, ok: bool) -> None:
        self.in_flight -= 1
        if ok:
            self.breaker.record_success()
        else:
            self.breaker.record_failure()

    @rule(dt=st.floats(min_value=0.0, max_value=10.0))
    def advance(self, dt: float) -> None:
        self.clock.now += dt

    @rule()
    def trip(self) -> None:
        self.breaker.trip()

    @invariant()
    def state_and_timeout_stay_in_bounds(self) -> None:
        assert self.breaker.state in ("closed", "open", "half_open")
        assert 1.0 <= self.breaker.reset_timeout <= 9.0

    @invariant()
    def open_refuses_everyone(self) -> None:
        until = self.breaker.opened_until()
        if until is not None and self.clock.now < until:
            assert not self.breaker.allow()


BreakerMachine.TestCase.settings = settings(max_examples=100, stateful_step_count=30, deadline=None)
test_breaker_state_machine_keeps_its_invariants = BreakerMachine.TestCase
