"""The pure saga model: advance() over every sequence of step outcomes (hypothesis)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import msgpack
import pytest
from hypothesis import event as hypothesis_event
from hypothesis import given, settings
from hypothesis import strategies as st

from phalanx.actors.saga import (
    Alert,
    Compensate,
    CompensationFailed,
    CompensationPending,
    CompensationSucceeded,
    DeadLetter,
    Finalized,
    Finished,
    Plan,
    Retry,
    RunStep,
    SagaDefinition,
    SagaError,
    SagaState,
    ScheduleRetry,
    Started,
    Step,
    StepFailed,
    StepPending,
    StepSucceeded,
    advance,
    new_saga,
)
from phalanx.actors.saga._state import StepState, evolve

NO_WAIT = Retry(max_attempts=3, backoff="fixed", base=0.0, jitter=0.0)


def _noop(ctx: Any) -> dict[str, Any]:
    return {}


def _definition(comps: list[bool], attempts: list[int], comp_attempts: list[int]) -> SagaDefinition:
    steps = [
        Step(
            f"s{i}",
            _noop,
            compensation=_noop if has_comp else None,
            retry=Retry(max_attempts=attempts[i], backoff="exponential", base=0.01),
            compensation_retry=Retry(max_attempts=comp_attempts[i], backoff="fixed", base=0.01),
        )
        for i, has_comp in enumerate(comps)
    ]
    return SagaDefinition("model", steps)


def _roundtrip(state: SagaState) -> SagaState:
    raw = msgpack.unpackb(msgpack.packb(state.to_dict(), use_bin_type=True), raw=False)
    return SagaState.from_dict(raw)


ACTION_OUTCOMES = ["ok", "pending", "transient", "unknown", "permanent"]
COMP_OUTCOMES = ["ok", "pending", "transient", "permanent"]


@settings(max_examples=200, deadline=None)
@given(data=st.data(), n=st.integers(1, 6))
def test_any_outcome_sequence_ends_terminal_with_reverse_compensations(
    data: st.DataObject, n: int
) -> None:
    comps = data.draw(st.lists(st.booleans(), min_size=n, max_size=n), label="compensations")
    attempts = data.draw(st.lists(st.integers(1, 3), min_size=n, max_size=n), label="attempts")
    comp_attempts = data.draw(st.lists(st.integers(1, 3), min_size=n, max_size=n))
    defn = _definition(comps, attempts, comp_attempts)
    at = 1000.0
    state = new_saga(defn, "m-1", {"x": 1}, at)
    plan = advance(state, Started(at), defn)
    seqs = [plan.record["seq"]] if plan.record else []
    ran: list[tuple[str, int]] = []
    compensated: list[str] = []
    comp_calls: list[str] = []
    dead_letters: list[str] = []
    alerts: list[str] = []
    pending_left = 20  # bounds the run: Pending forever is the timeout's business
    while True:
        state = plan.state
        assert _roundtrip(state) == state  # a resumed saga sees exactly this state
        for cmd in plan.commands:
            if isinstance(cmd, DeadLetter):
                assert cmd.reason == "compensation_failed"
                dead_letters.append(cmd.step)
            elif isinstance(cmd, Alert):
                assert cmd.severity == "critical"
                alerts.append(cmd.step)
        work = [c for c in plan.commands if not isinstance(c, DeadLetter | Alert)]
        assert len(work) == 1, plan.commands
        cmd = work[0]
        if isinstance(cmd, Finished):
            assert state.terminal
            assert cmd.status == state.status
            break
        at += 1.0
        if isinstance(cmd, RunStep) or (isinstance(cmd, ScheduleRetry) and cmd.phase == "action"):
            name, attempt = cmd.step, cmd.attempt
            outcome = data.draw(
                st.sampled_from(ACTION_OUTCOMES if pending_left else ACTION_OUTCOMES[::2])
            )
            ran.append((name, attempt))
            if outcome == "ok":
                event: Any = StepSucceeded(name, attempt, {"step": name}, at)
            elif outcome == "pending":
                pending_left -= 1
                event = StepPending(name, attempt, 0.5, at)
            else:
                event = StepFailed(name, attempt, "E", "boom", outcome, at)
        else:
            assert isinstance(cmd, Compensate | ScheduleRetry)
            name, attempt = cmd.step, cmd.attempt
            if not comp_calls or comp_calls[-1] != name:
                comp_calls.append(name)
            outcome = data.draw(
                st.sampled_from(COMP_OUTCOMES if pending_left else COMP_OUTCOMES[::3])
            )
            if outcome == "ok":
                compensated.append(name)
                event = CompensationSucceeded(name, attempt, at)
            elif outcome == "pending":
                pending_left -= 1
                event = CompensationPending(name, attempt, 0.5, at)
            else:
                event = CompensationFailed(name, attempt, "E", "boom", outcome, at)
        plan = advance(_roundtrip(state), event, defn)
        if plan.record is None:  # a Pending poll: no record, the state is unchanged
            assert plan.state == state
            assert isinstance(plan.commands[0], ScheduleRetry)
            assert plan.commands[0].delay_s == 0.5
        else:
            seqs.append(plan.record["seq"])
    assert seqs == list(range(1, len(seqs) + 1))
    done = list(state.done)
    assert done == list(defn.order[: len(done)])  # forward run in order, no gaps
    expected_comps = [s for s in reversed(done) if defn.step(s).compensation is not None]
    for name, attempt in ran:  # never more attempts than the budget allows
        assert attempt <= defn.step(name).retry.max_attempts
    if state.status == "completed":
        assert done == list(defn.order)
        assert not comp_calls
    else:
        failed = [s for s, ss in state.steps.items() if ss.status == "failed"]
        assert len(failed) == 1
        assert failed[0] == defn.order[len(done)]
        assert comp_calls == expected_comps  # exactly the completed steps, in reverse
        assert dead_letters == alerts == list(state.failed_compensations)
        assert sorted(compensated + dead_letters) == sorted(expected_comps)
        if dead_letters:
            assert state.status == "compensation_failed"
        else:
            assert state.status == "compensated"
    hypothesis_event(state.status)
    final = advance(state, Finalized(at + 1), defn)
    assert final.state.finalized
    assert not final.state.active
    assert final.commands == ()


def _three() -> SagaDefinition:
    return SagaDefinition(
        "three",
        [Step(n, _noop, compensation=_noop, retry=NO_WAIT) for n in ("a", "b", "c")],
    )


def _start(defn: SagaDefinition) -> Plan:
    return advance(new_saga(defn, "id-1", {}, 0.0), Started(0.0), defn)


def test_steps_run_in_dependency_order_stable_on_list_order() -> None:
    defn = SagaDefinition(
        "deps",
        [
            Step("place", _noop, depends_on=("reserve",)),
            Step("validate", _noop),
            Step("reserve", _noop, depends_on=("validate",)),
            Step("log", _noop),
        ],
    )
    assert defn.order == ("validate", "reserve", "place", "log")


@pytest.mark.parametrize(
    ("steps", "message"),
    [
        ([Step("a", _noop, depends_on=("b",)), Step("b", _noop, depends_on=("a",))], "cycle"),
        ([Step("a", _noop, depends_on=("zzz",))], "unknown"),
        ([Step("a", _noop), Step("a", _noop)], "duplicate"),
        ([], "no steps"),
    ],
)
def test_bad_definitions_are_refused_naming_the_problem(steps: list[Step], message: str) -> None:
    with pytest.raises(SagaError, match=message):
        SagaDefinition("bad", steps)


def test_stale_or_foreign_events_are_refused() -> None:
    defn = _three()
    plan = _start(defn)
    assert plan.commands == (RunStep("a", 1),)
    with pytest.raises(SagaError, match="in flight"):
        advance(plan.state, StepSucceeded("b", 1, {}, 1.0), defn)
    with pytest.raises(SagaError, match="stale"):
        advance(plan.state, StepSucceeded("a", 2, {}, 1.0), defn)
    with pytest.raises(SagaError, match="cannot finalize"):
        advance(plan.state, Finalized(1.0), defn)
    with pytest.raises(SagaError, match="already started"):
        advance(plan.state, Started(1.0), defn)


def test_transient_failure_schedules_a_deterministic_backoff_retry() -> None:
    defn = SagaDefinition(
        "retry", [Step("a", _noop, retry=Retry(max_attempts=3, base=0.1, jitter=0.5))]
    )
    plan = _start(defn)
    event = StepFailed("a", 1, "ConnectionError", "reset", "transient", 5.0)
    one, two = advance(plan.state, event, defn), advance(plan.state, event, defn)
    assert one == two  # jitter is seeded from the saga, the step and the attempt
    (cmd,) = one.commands
    assert isinstance(cmd, ScheduleRetry)
    assert cmd.attempt == 2
    assert cmd.phase == "action"
    assert 0.05 <= cmd.delay_s <= 0.15
    assert cmd.due_at == 5.0 + cmd.delay_s
    assert one.state.steps["a"].status == "running"
    assert one.state.steps["a"].attempt == 2


def test_permanent_failure_of_the_first_step_compensates_nothing() -> None:
    defn = _three()
    plan = advance(_start(defn).state, StepFailed("a", 1, "E", "no", "permanent", 1.0), defn)
    assert plan.commands == (Finished("compensated"),)
    assert plan.state.status == "compensated"
    assert plan.state.error == "a: E: no"


def test_a_failed_step_that_may_have_taken_effect_is_compensated_first() -> None:
    steps = [Step(n, _noop, compensation=_noop, retry=NO_WAIT) for n in ("a", "b")]
    steps.append(Step("c", _noop, compensation=_noop, retry=NO_WAIT, compensate_on_failure=True))
    defn = SagaDefinition("maybe", steps)
    plan = _start(defn)
    for name in ("a", "b"):
        plan = advance(plan.state, StepSucceeded(name, 1, {}, 1.0), defn)
    for attempt in (1, 2, 3):  # NO_WAIT: 3 attempts for a transient error
        failed = StepFailed("c", attempt, "AskTimeout", "no reply", "transient", 2.0)
        plan = advance(plan.state, failed, defn)
    assert plan.commands == (Compensate("c", 1),)  # the failed step first
    order = []
    while plan.state.current is not None:
        step = plan.state.current
        order.append(step)
        plan = advance(plan.state, CompensationSucceeded(step, 1, 4.0), defn)
    assert order == ["c", "b", "a"]
    assert plan.state.status == "compensated"
    assert plan.state.error == "c: AskTimeout: no reply"


def test_compensate_on_failure_without_a_compensation_is_refused() -> None:
    with pytest.raises(SagaError, match="'x': compensate_on_failure needs a compensation"):
        Step("x", _noop, compensate_on_failure=True)


def test_step_deadline_is_set_from_the_event_time() -> None:
    defn = SagaDefinition("t", [Step("a", _noop), Step("b", _noop, timeout_s=2.5)])
    plan = _start(defn)
    assert plan.state.steps["a"].deadline is None
    plan = advance(plan.state, StepSucceeded("a", 1, {}, 10.0), defn)
    assert plan.state.steps["b"].deadline == 12.5


_STEP_FIELDS = {
    "status": st.sampled_from(["pending", "running", "done", "failed", "compensating"]),
    "attempt": st.integers(0, 9),
    "comp_attempt": st.integers(0, 9),
    "deadline": st.none() | st.floats(0, 1e10),
    "result": st.none() | st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
    "error": st.none() | st.text(max_size=5),
    "comp_deadline": st.none() | st.floats(0, 1e10),
}
_SAGA_FIELDS = {
    "status": st.sampled_from(["running", "compensating", "completed", "compensated"]),
    "done": st.tuples(st.sampled_from(["a", "b"])),
    "current": st.none() | st.sampled_from(["a", "b"]),
    "error": st.none() | st.text(max_size=5),
    "seq": st.integers(0, 99),
    "finalized": st.booleans(),
    "updated_at": st.floats(0, 1e10),
}


@given(
    st.fixed_dictionaries({}, optional=_STEP_FIELDS),
    st.fixed_dictionaries({}, optional=_SAGA_FIELDS),
)
@settings(max_examples=200, deadline=None)
def test_evolve_builds_what_dataclasses_replace_builds(
    step_changes: dict[str, Any], saga_changes: dict[str, Any]
) -> None:
    step = StepState(status="running", attempt=1, deadline=5.0)
    assert evolve(step, **step_changes) == replace(step, **step_changes)
    saga = SagaState("s-1", "k", {"x": 1}, "running", {"a": step}, done=("a",), seq=3)
    evolved = evolve(saga, **saga_changes)
    assert evolved == replace(saga, **saga_changes)
    assert evolved.to_dict() == replace(saga, **saga_changes).to_dict()
    assert saga.seq == 3  # the original is untouched


def test_evolve_refuses_an_unknown_field_as_replace_does() -> None:
    with pytest.raises(TypeError, match="StepState has no field bogus"):
        evolve(StepState(), bogus=1)
