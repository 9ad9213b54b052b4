"""The circuit breaker, driven by a fake clock: no sleeps."""

from __future__ import annotations

import itertools
import json
import sys
import threading
from dataclasses import dataclass, field

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from phalanx import Breaker, CircuitOpen
from phalanx.errors import ConfigError
from phalanx.supervision._breaker import CircuitBreaker


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Rig:
    breaker: CircuitBreaker
    clock: FakeClock
    changes: list[tuple[str, str, float]] = field(default_factory=list)

    def moves(self) -> list[tuple[str, str]]:
        return [(old, new) for old, new, _ in self.changes]

    def fail(self, times: int = 1) -> None:
        for _ in range(times):
            self.breaker.record_failure()


def _rig(threshold: int = 3, **kw: float) -> Rig:
    clock = FakeClock()
    changes: list[tuple[str, str, float]] = []
    breaker = CircuitBreaker(
        Breaker(reset_timeout=1.0, multiplier=2.0, max_reset_timeout=4.0, **kw),
        clock=clock,
        on_change=lambda o, n, t: changes.append((o, n, t)),
        failure_threshold=threshold,
        name="venue",
    )
    return Rig(breaker, clock, changes)


def _boom() -> None:
    raise ConnectionError("down")


def test_closed_opens_after_threshold_consecutive_failures() -> None:
    rig = _rig()
    rig.fail(2)
    rig.breaker.record_success()  # breaks the streak
    rig.fail(2)
    assert rig.breaker.state == "closed"
    rig.fail()
    assert rig.breaker.state == "open"
    assert rig.breaker.opened_until() == pytest.approx(101.0)


def test_open_fails_fast_without_calling_fn_and_names_breaker_and_time_left() -> None:
    rig = _rig()
    rig.fail(3)
    rig.clock.now += 0.25
    calls: list[int] = []
    with pytest.raises(CircuitOpen, match=r"'venue' is open for 0\.750s more"):
        rig.breaker.call(lambda: calls.append(1))
    assert calls == []
    assert not rig.breaker.allow()


def test_half_open_after_reset_timeout_admits_exactly_one_trial() -> None:
    rig = _rig()
    rig.fail(3)
    rig.clock.now += 0.999
    assert rig.breaker.state == "open"
    rig.clock.now += 0.001
    assert rig.breaker.state == "half_open"
    assert rig.breaker.opened_until() is None
    assert rig.breaker.allow()
    assert not rig.breaker.allow()
    assert not rig.breaker.allow()


def test_a_second_call_during_the_trial_fails_fast() -> None:
    rig = _rig()
    rig.breaker.trip()
    rig.clock.now += 1.0

    def trial() -> str:
        with pytest.raises(CircuitOpen, match="trial call is in flight"):
            rig.breaker.call(lambda: "intruder")
        return "trial"

    assert rig.breaker.call(trial) == "trial"
    assert rig.breaker.state == "closed"


def test_trial_success_closes_and_resets_the_timeout() -> None:
    rig = _rig()
    rig.breaker.trip()
    for _ in range(2):  # grow it to 4.0 first
        rig.clock.now += rig.breaker.reset_timeout
        assert rig.breaker.allow()
        rig.breaker.record_failure()
    assert rig.breaker.reset_timeout == 4.0
    rig.clock.now += 4.0
    assert rig.breaker.call(lambda: 42) == 42
    assert rig.breaker.state == "closed"
    assert rig.breaker.reset_timeout == 1.0
    assert rig.changes[-1] == ("half_open", "closed", 1.0)


def test_trial_failure_reopens_with_timeout_times_multiplier_capped_at_max() -> None:
    rig = _rig()
    rig.breaker.trip()
    for expected in (2.0, 4.0, 4.0, 4.0):
        rig.clock.now += rig.breaker.reset_timeout
        with pytest.raises(ConnectionError):
            rig.breaker.call(_boom)
        assert rig.breaker.state == "open"
        assert rig.breaker.reset_timeout == expected
        assert rig.breaker.opened_until() == pytest.approx(rig.clock.now + expected)
    assert rig.breaker.trials == 4


def test_open_for_keeps_the_later_deadline() -> None:
    rig = _rig()
    rig.breaker.open_for(10.0)
    rig.breaker.open_for(2.0)
    assert rig.breaker.opened_until() == pytest.approx(110.0)
    rig.breaker.open_for(20.0)
    assert rig.breaker.opened_until() == pytest.approx(120.0)
    rig.clock.now += 19.9
    assert rig.breaker.state == "open"
    rig.clock.now += 0.1
    assert rig.breaker.state == "half_open"
    assert rig.breaker.reset_timeout == 1.0  # a ban does not grow the timeout
    assert rig.moves() == [("closed", "open"), ("open", "half_open")]


def test_open_for_during_a_trial_discards_that_trial() -> None:
    rig = _rig()
    rig.breaker.trip()
    rig.clock.now += 1.0

    def banned_meanwhile() -> str:
        rig.breaker.open_for(30.0)  # e.g. another thread saw a 418 ban
        return "ok"

    assert rig.breaker.call(banned_meanwhile) == "ok"
    assert rig.breaker.state == "open"  # the stale success did not close it
    assert rig.breaker.opened_until() == pytest.approx(131.0)


def test_a_late_outcome_from_before_the_circuit_opened_does_not_settle_the_trial() -> None:
    rig = _rig(threshold=1)
    outcome: list[str] = []

    def slow_then_ok() -> str:
        _boom_via_breaker(rig)  # another call fails: the circuit opens
        rig.clock.now += 1.0  # ...and is half-open by the time this one returns
        outcome.append(rig.breaker.state)
        return "late"

    assert rig.breaker.call(slow_then_ok) == "late"
    assert outcome == ["half_open"]
    assert rig.breaker.state == "half_open"  # not closed by the stale success
    assert rig.breaker.allow()  # the trial slot is still free


def _boom_via_breaker(rig: Rig) -> None:
    with pytest.raises(ConnectionError):
        rig.breaker.call(_boom)


def test_trip_opens_now_and_is_a_no_op_when_already_open() -> None:
    rig = _rig()
    rig.breaker.trip("intensity exceeded")
    assert rig.breaker.state == "open"
    rig.clock.now += 0.5
    rig.breaker.trip("again")
    assert rig.breaker.opened_until() == pytest.approx(101.0)  # unchanged
    assert rig.moves() == [("closed", "open")]


def test_trip_reopens_a_circuit_whose_timeout_already_passed() -> None:
    rig = _rig()
    rig.breaker.trip()
    rig.clock.now += 5.0  # logically half-open, not yet observed
    rig.breaker.trip()
    assert rig.breaker.opened_until() == pytest.approx(106.0)
    assert rig.moves() == [("closed", "open"), ("open", "half_open"), ("half_open", "open")]


def test_slow_call_counts_as_failure_but_returns_its_result() -> None:
    rig = _rig(call_timeout=0.5)

    def slow() -> str:
        rig.clock.now += 0.6
        return "late"

    def just_in_time() -> str:
        rig.clock.now += 0.5
        return "ok"

    assert rig.breaker.call(slow) == "late"
    assert rig.breaker.call(slow) == "late"
    assert rig.breaker.call(just_in_time) == "ok"  # resets the streak
    for _ in range(3):
        assert rig.breaker.call(slow) == "late"
    assert rig.breaker.state == "open"


def test_exceptions_count_as_failures_and_propagate() -> None:
    rig = _rig()
    for _ in range(3):
        with pytest.raises(ConnectionError, match="down"):
            rig.breaker.call(_boom)
    assert rig.breaker.state == "open"


def test_on_change_hears_every_transition_in_order_with_the_reset_timeout() -> None:
    rig = _rig()
    rig.fail(3)
    rig.clock.now += 1.0
    assert rig.breaker.allow()
    rig.breaker.record_failure()
    rig.clock.now += 2.0
    assert rig.breaker.allow()
    rig.breaker.record_success()
    assert rig.changes == [
        ("closed", "open", 1.0),
        ("open", "half_open", 1.0),
        ("half_open", "open", 2.0),
        ("open", "half_open", 2.0),
        ("half_open", "closed", 1.0),
    ]


def test_a_raising_listener_does_not_break_the_breaker() -> None:
    heard: list[str] = []

    def boom(old: str, new: str, timeout: float) -> None:
        heard.append(new)
        raise RuntimeError("listener bug")

    clock = FakeClock()
    breaker = CircuitBreaker(Breaker(), clock=clock, on_change=boom, failure_threshold=1)
    breaker.record_failure()
    assert breaker.state == "open"
    clock.now += 1.0
    assert breaker.allow()
    breaker.record_success()
    assert heard == ["open", "half_open", "closed"]


def test_a_listener_may_call_back_into_the_breaker() -> None:
    clock = FakeClock()
    seen: list[tuple[str, str]] = []
    holder: list[CircuitBreaker] = []

    def listener(old: str, new: str, timeout: float) -> None:
        seen.append((new, holder[0].state))  # re-entrant read: no deadlock

    breaker = CircuitBreaker(Breaker(), clock=clock, on_change=listener, failure_threshold=1)
    holder.append(breaker)
    breaker.record_failure()
    assert seen == [("open", "open")]


def test_notifications_from_many_threads_form_one_consistent_chain() -> None:
    clock = FakeClock()
    tick = threading.Lock()
    changes: list[tuple[str, str]] = []
    breaker = CircuitBreaker(
        Breaker(reset_timeout=1.0, max_reset_timeout=1.0),
        clock=clock,
        on_change=lambda o, n, _: changes.append((o, n)),
        failure_threshold=1,
    )

    def hammer(seed: int) -> None:
        for i in range(2000):
            step = (i * 7 + seed) % 4
            if step == 0:
                breaker.record_failure()
            elif step == 1:
                with tick:
                    clock.now += 0.5
            elif step == 2 and breaker.allow():
                breaker.record_success()
            else:
                _ = breaker.state

    threads = [threading.Thread(target=hammer, args=(n,)) for n in range(4)]
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads often, to expose ordering races
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        sys.setswitchinterval(interval)
    assert changes, "expected some transitions"
    for (_, new), (old, _) in itertools.pairwise(changes):
        assert old == new  # each transition starts where the previous one ended
    assert changes[-1][1] == breaker.last_state


def test_snapshot_is_json_safe_and_complete() -> None:
    rig = _rig()
    rig.fail(2)
    snap = rig.breaker.snapshot()
    assert snap == {
        "name": "venue",
        "state": "closed",
        "reset_timeout": 1.0,
        "opened_until_in_s": None,
        "failures": 2,
        "trials": 0,
    }
    rig.fail()
    rig.clock.now += 0.25
    snap = json.loads(json.dumps(rig.breaker.snapshot()))
    assert snap["state"] == "open"
    assert snap["opened_until_in_s"] == pytest.approx(0.75)


def test_failure_threshold_must_be_positive() -> None:
    with pytest.raises(ConfigError):
        CircuitBreaker(Breaker(), failure_threshold=0)


class BreakerMachine(RuleBasedStateMachine):
    """Random traffic against the breaker and a tiny model of it."""

    BASE, MULT, CAP, THRESHOLD = 1.0, 3.0, 9.0, 2

    def __init__(self) -> None:
        super().__init__()
        self.clock = FakeClock()
        self.changes: list[tuple[str, str, float]] = []
        self.breaker = CircuitBreaker(
            Breaker(
                reset_timeout=self.BASE,
                multiplier=self.MULT,
                max_reset_timeout=self.CAP,
                call_timeout=1.0,
            ),
            clock=self.clock,
            failure_threshold=self.THRESHOLD,
            on_change=lambda o, n, t: self.changes.append((o, n, t)),
        )
        # The model.
        self.state = "closed"
        self.timeout = self.BASE
        self.until = 0.0
        self.failures = 0
        self.trials_admitted = 0  # admitted since entering half_open

    def _model_advance(self) -> None:
        if self.state == "open" and self.clock.now >= self.until:
            self.state, self.trials_admitted = "half_open", 0

    def _model_open(self, seconds: float) -> None:
        deadline = self.clock.now + seconds
        if self.state == "open":
            self.until = max(self.until, deadline)
        else:
            self.state, self.until, self.failures = "open", deadline, 0

    def _model_settle(self, ok: bool) -> None:
        self._model_advance()
        if self.state == "half_open":
            if ok:
                self.state, self.timeout = "closed", self.BASE
            else:
                self.timeout = min(self.timeout * self.MULT, self.CAP)
                self._model_open(self.timeout)
        elif self.state == "closed":
            self.failures = 0 if ok else self.failures + 1
            if self.failures >= self.THRESHOLD:
                self._model_open(self.timeout)

    @rule()
    def allow(self) -> None:
        self._model_advance()
        expected = self.state == "closed" or (
            self.state == "half_open" and self.trials_admitted == 0
        )
        if self.state == "half_open" and expected:
            self.trials_admitted += 1
        assert self.breaker.allow() is expected

    @rule(ok=st.booleans())
    def record(self, ok: bool) -> None:
        self._model_settle(ok)
        if ok:
            self.breaker.record_success()
        else:
            self.breaker.record_failure()

    @rule(ok=st.booleans(), took=st.sampled_from([0.0, 0.5, 2.0]))
    def call(self, ok: bool, took: float) -> None:
        self._model_advance()
        admitted = self.state == "closed" or (
            self.state == "half_open" and self.trials_admitted == 0
        )

        def fn() -> str:
            self.clock.now += took
            if not ok:
                raise ConnectionError("x")
            return "r"

        if not admitted:
            with pytest.raises(CircuitOpen):
                self.breaker.call(fn)
            return
        if self.state == "half_open":
            self.trials_admitted += 1
        self.clock.now += took  # the model sees the same elapsed time
        self._model_settle(ok and took <= 1.0)
        self.clock.now -= took
        if ok:
            assert self.breaker.call(fn) == "r"
        else:
            with pytest.raises(ConnectionError):
                self.breaker.call(fn)

    @rule(dt=st.sampled_from([0.0, 0.5, 1.0, 3.0, 10.0]))
    def advance(self, dt: float) -> None:
        self.clock.now += dt

    @rule()
    def trip(self) -> None:
        self._model_advance()
        if self.state != "open":
            self._model_open(self.timeout)
        self.breaker.trip()

    @rule(seconds=st.sampled_from([0.0, 2.0, 30.0]))
    def open_for(self, seconds: float) -> None:
        self._model_advance()
        self._model_open(seconds)
        self.breaker.open_for(seconds)

    @invariant()
    def breaker_matches_the_model(self) -> None:
        self._model_advance()
        assert self.breaker.state == self.state
        assert self.breaker.reset_timeout == self.timeout
        assert self.breaker.opened_until() == (self.until if self.state == "open" else None)

    @invariant()
    def state_and_timeout_stay_in_bounds(self) -> None:
        assert self.breaker.last_state in ("closed", "open", "half_open")
        assert self.BASE <= self.breaker.reset_timeout <= self.CAP

    @invariant()
    def half_open_admits_at_most_one_trial(self) -> None:
        assert self.trials_admitted <= 1

    @invariant()
    def transitions_chain(self) -> None:
        for (_, new, _), (old, _, _) in itertools.pairwise(self.changes):
            assert old == new
        if self.changes:
            assert self.changes[-1][1] == self.breaker.last_state


BreakerMachine.TestCase.settings = settings(max_examples=200, stateful_step_count=40, deadline=None)
test_breaker_matches_its_model_under_random_traffic = BreakerMachine.TestCase
