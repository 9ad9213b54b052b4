"""Restart intensity: the OTP window, exact at its boundary, pure and under a supervisor."""

from __future__ import annotations

from typing import Any

import pytest

from phalanx import Actor, ActorSystem, ChildSpec, Retry
from phalanx.supervision._intensity import RestartWindow, should_restart, terminated_by_itself


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize("intensity", [0, 1, 3, 10])
def test_intensity_n_allows_n_restarts_and_the_next_one_exceeds(intensity: int) -> None:
    clock = FakeClock()
    window = RestartWindow(intensity, period=5, clock=clock)
    for _ in range(intensity):
        assert window.add()
        clock.now += 0.1
    assert not window.add()


def test_window_boundary_is_inclusive_in_whole_seconds() -> None:
    clock = FakeClock(100.0)
    window = RestartWindow(1, period=1, clock=clock)
    assert window.add()  # second 100
    clock.now = 101.9  # second 101: 101 - 100 <= 1, still inside
    assert not window.add()


def test_restarts_spaced_just_beyond_the_period_never_trip_it() -> None:
    clock = FakeClock(100.0)
    window = RestartWindow(1, period=1, clock=clock)
    for _ in range(50):
        assert window.add()
        assert window.count() == 1  # the earlier restart has left the window
        clock.now += 2.0  # whole seconds apart: 2 > period


def test_restart_matrix_follows_otp() -> None:
    reasons = ["normal", "shutdown", "killed", "crashed", "start_failed"]
    assert [should_restart("permanent", r) for r in reasons] == [True] * 5
    assert [should_restart("transient", r) for r in reasons] == [False, False, True, True, True]
    assert [should_restart("temporary", r) for r in reasons] == [False] * 5
    assert terminated_by_itself("transient", "normal")
    assert not terminated_by_itself("transient", "crashed")
    assert terminated_by_itself("temporary", "crashed")


class Idle(Actor):
    def on_receive(self, message: Any) -> Any:
        return (self.path, self.incarnation)


def test_supervisor_escalates_on_the_n_plus_first_restart_inside_the_period(
    system: ActorSystem,
) -> None:
    clock = FakeClock()
    system.supervise(
        "/sup",
        intensity=3,
        period=5,
        children=[ChildSpec("w", Idle, retry=Retry(base=0.0, jitter=0.0))],
        clock=clock,
    )
    events = system.events.subscribe(kinds={"actor_restarted", "supervisor_escalated"})
    try:
        for expected_incarnation in (2, 3, 4):
            assert system.kill("/sup/w")
            ev = events.wait_for(lambda e: e.kind == "actor_restarted", timeout=5)
            assert ev is not None
            assert ev.fields["incarnation"] == expected_incarnation
        assert system.kill("/sup/w")  # the 4th restart inside 5 s: intensity 3 exceeded
        escalated = events.wait_for(lambda e: e.kind == "supervisor_escalated", timeout=5)
    finally:
        events.close()
    assert escalated is not None
    assert escalated.path == "/sup"
    stopped = system.events.subscribe(kinds={"actor_stopped"})
    try:
        if system.is_alive("/sup"):
            stopped.wait_for(lambda e: e.path == "/sup", timeout=5)
    finally:
        stopped.close()
    assert not system.is_alive("/sup")  # a top-level supervisor that escalates is stopped
    assert not system.is_alive("/sup/w")


def test_supervisor_with_restarts_spaced_beyond_the_period_never_escalates(
    system: ActorSystem,
) -> None:
    clock = FakeClock()
    system.supervise(
        "/sup",
        intensity=1,
        period=1,
        children=[ChildSpec("w", Idle, retry=Retry(base=0.0, jitter=0.0))],
        clock=clock,
    )
    events = system.events.subscribe(kinds={"actor_restarted", "supervisor_escalated"})
    try:
        for incarnation in range(2, 12):
            assert system.kill("/sup/w")
            ev = events.wait_for(lambda e: e.kind == "actor_restarted", timeout=5)
            assert ev is not None
            assert ev.fields["incarnation"] == incarnation
            clock.now += 2.0
        assert system.ask("/sup/w", "where", timeout=5) == ("/sup/w", 11)
    finally:
        events.close()
    assert not [e for e in system.events.recent(500) if e.kind == "supervisor_escalated"]
