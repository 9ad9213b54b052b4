"""Effect-free and replay-safe steps: their success records ride on the next commit.

``Step.effects=False`` and ``Step.replay_safe=True``: same records in the same
order as with plain steps, fewer transactions; every held record is committed
before any other step with effects or a compensation runs (a replay-safe step
runs with records still held), and its ``saga_step`` event follows that commit.
"""

from __future__ import annotations

import contextlib
import itertools
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from phalanx import ActorSystem, Retry
from phalanx.actors._trade_sagas import BUY, SELL, trade_saga
from phalanx.actors.saga import (
    SagaDefinition,
    SagaError,
    Step,
    StepContext,
    await_saga,
    register_saga,
    saga_path,
    start_saga,
    start_saga_supervisor,
)
from phalanx.errors import PhalanxError
from phalanx.runtime._events import Subscription
from phalanx.storage._journal import SagaJournal

FAST = Retry(max_attempts=2, backoff="fixed", base=0.001, jitter=0.0)
_IDS = itertools.count()
_TIMES = frozenset({"at", "due_at", "dead_letter_id"})
_ENDS = ("saga_completed", "saga_compensated", "saga_compensation_failed")


class Transient(PhalanxError):
    """A step failure the saga retries."""

    phalanx_error_class = "transient"


class Permanent(PhalanxError):
    """A step failure that stops the forward run."""

    phalanx_error_class = "permanent"


def _normal(value: Any) -> Any:
    """``value`` without its wall-clock fields and random ids (they differ between runs)."""
    if isinstance(value, dict):
        return {k: _normal(v) for k, v in value.items() if k not in _TIMES}
    if isinstance(value, list):
        return [_normal(v) for v in value]
    return value


@contextlib.contextmanager
def _counting_commits() -> Iterator[list[str]]:
    """The thread name of every ``SagaJournal.commit`` while the block runs."""
    threads: list[str] = []
    original = SagaJournal.commit

    def counting(self: SagaJournal, op: Callable[..., Any]) -> Any:
        threads.append(threading.current_thread().name)
        return original(self, op)

    SagaJournal.commit = counting  # type: ignore[method-assign]
    try:
        yield threads
    finally:
        SagaJournal.commit = original  # type: ignore[method-assign]


def _journaled(ctx: StepContext) -> list[tuple[str, str]]:
    """(step, tag) of every record the saga of ``ctx`` has committed so far."""
    records = SagaJournal(ctx.system.storage).records(ctx.saga_id)
    return [(r["event"].get("step"), r["event"]["tag"]) for r in records]


def _steps_of(sub: Subscription, saga_id: str) -> list[tuple[str, str]]:
    """(step, outcome) of every ``saga_step`` event of ``saga_id`` queued in ``sub`` so far."""
    out = []
    while (event := sub.get(timeout=0.0)) is not None:
        if event.kind == "saga_step" and event.fields.get("saga_id") == saga_id:
            out.append((event.fields["step"], event.fields["outcome"]))
    return out


def _events_until_end(sub: Subscription, saga_id: str) -> list[tuple[str, str]]:
    """(step, outcome) of the ``saga_step`` events of ``saga_id`` up to its end event."""
    out = []
    while (event := sub.get(timeout=10.0)) is not None:
        if event.fields.get("saga_id") != saga_id:
            continue
        if event.kind in _ENDS:
            return out
        out.append((event.fields["step"], event.fields["outcome"]))
    raise AssertionError(f"no end event for {saga_id}")


def _run(
    system: ActorSystem, kind: str, input: dict[str, Any]
) -> tuple[str, list[dict[str, Any]], int, list[tuple[str, str]]]:
    """Run one saga: its status, normalized records, saga-thread commits, step events."""
    saga_id = f"d-{next(_IDS)}"
    sub = system.events.subscribe(["saga_step", *_ENDS])
    try:
        with _counting_commits() as threads:
            start_saga(system, kind, saga_id, input)
            status = await_saga(system, saga_id, timeout=20).status
            events = _events_until_end(sub, saga_id)  # the end event follows the commit
    finally:
        sub.close()
    records = _normal(SagaJournal(system.storage).records(saga_id))
    commits = sum(1 for name in threads if "/sagas/" in name)
    return status, records, commits, events


def _script_action(ctx: StepContext) -> dict[str, Any]:
    script = ctx.input["script"][ctx.step]
    outcome = script[min(ctx.attempt, len(script)) - 1]
    if outcome == "transient":
        raise Transient(f"{ctx.step} attempt {ctx.attempt}")
    if outcome == "permanent":
        raise Permanent(f"{ctx.step} refused")
    return {"step": ctx.step, "attempt": ctx.attempt}


def _script_compensation(ctx: StepContext) -> None:
    if ctx.input["comp"].get(ctx.step) == "fail":
        raise Permanent(f"{ctx.step} cannot be undone")


def _register(kind: str, shape: list[tuple[str, bool]], *, held: bool) -> None:
    """Steps s0.. of ``shape``: ("free" | "replay" | "effect", compensable); ``held`` False: plain.

    Only an "effect" step gets its compensation (in both variants, so that
    their records compare); "free" is ``effects=False``, "replay" ``replay_safe``.
    """
    register_saga(
        SagaDefinition(
            kind,
            [
                Step(
                    f"s{i}",
                    _script_action,
                    compensation=_script_compensation if comp and how == "effect" else None,
                    retry=FAST,
                    compensation_retry=FAST,
                    effects=not (how == "free" and held),
                    replay_safe=how == "replay" and held,
                )
                for i, (how, comp) in enumerate(shape)
            ],
        )
    )


def test_an_effect_free_step_cannot_have_a_compensation() -> None:
    with pytest.raises(SagaError, match="effect-free"):
        Step("x", _script_action, compensation=_script_compensation, effects=False)


def test_a_replay_safe_step_cannot_have_a_compensation() -> None:
    with pytest.raises(SagaError, match="replay-safe step comes after the point of no return"):
        Step("x", _script_action, compensation=_script_compensation, replay_safe=True)


def test_the_buy_and_sell_sagas_hold_admission_and_settlement_and_commit_the_order_steps() -> None:
    for kind in (BUY, SELL):
        definition = trade_saga(kind)
        free = [name for name in definition.order if not definition.step(name).effects]
        assert free == ["validate", "risk_check"]  # finalize releases the reservation
        replay = [name for name in definition.order if definition.step(name).replay_safe]
        assert replay == ["update_position", "post_ledger", "finalize"]
        committed = [name for name in definition.order if not definition.step(name).holds_record]
        assert committed == ["reserve_funds", "place_order", "await_fill"]


def test_effect_free_steps_write_the_same_records_in_fewer_commits(
    system: ActorSystem,
) -> None:
    start_saga_supervisor(system)
    shape = [("free", False), ("free", False), ("effect", True), ("free", False),
             ("effect", False)]  # fmt: skip
    _register("df-held", shape, held=True)
    _register("df-plain", shape, held=False)
    script = {f"s{i}": ["ok"] for i in range(len(shape))}
    input = {"script": script, "comp": {}}
    held = _run(system, "df-held", input)
    plain = _run(system, "df-plain", input)
    assert held[0] == plain[0] == "completed"
    assert held[1] == plain[1]  # the same records, in the same order
    assert [r["event"]["tag"] for r in held[1]][-1] == "finalized"
    # plain: one per step (the last with "finalized"); held: s0+s1 ride on the commit
    # before s2 runs, s3 on the one before s4.
    assert plain[2] == 5
    assert held[2] == 4
    assert held[3] == plain[3] == [(f"s{i}", "step_succeeded") for i in range(5)]


def test_replay_safe_steps_run_with_records_held_and_commit_them_with_the_end(
    system: ActorSystem,
) -> None:
    start_saga_supervisor(system)
    shape = [("effect", True), ("replay", False), ("replay", False), ("replay", False)]
    _register("dr-held", shape, held=True)
    _register("dr-plain", shape, held=False)
    input = {"script": {f"s{i}": ["ok"] for i in range(len(shape))}, "comp": {}}
    held = _run(system, "dr-held", input)
    plain = _run(system, "dr-plain", input)
    assert held[0] == plain[0] == "completed"
    assert held[1] == plain[1]  # the same records, in the same order
    # plain: one per step; held: s0, then s1..s3 with "finalized" in one commit.
    assert (plain[2], held[2]) == (4, 2)
    assert held[3] == plain[3] == [(f"s{i}", "step_succeeded") for i in range(4)]


def test_records_held_by_a_replay_safe_step_commit_before_an_effectful_step_runs(
    system: ActorSystem,
) -> None:
    start_saga_supervisor(system)
    seen: list[list[tuple[str, str]]] = []

    def step(ctx: StepContext) -> dict[str, Any]:
        if ctx.step == "s2":
            seen.append(_journaled(ctx))
        return {}

    register_saga(
        SagaDefinition(
            "dr-order",
            [
                Step("s0", step, retry=FAST),
                Step("r1", step, retry=FAST, replay_safe=True),
                Step("s2", step, retry=FAST),
            ],
        )
    )
    start_saga(system, "dr-order", "dro-1", {})
    assert await_saga(system, "dro-1", timeout=10).status == "completed"
    assert seen == [[(None, "started"), ("s0", "step_succeeded"), ("r1", "step_succeeded")]]


def test_records_held_by_an_effect_free_step_commit_before_a_replay_safe_step_runs(
    system: ActorSystem,
) -> None:
    # Else a crash after the replay-safe effect would re-run the effect-free step
    # (a check that may now answer otherwise) after an effect nothing undoes.
    start_saga_supervisor(system)
    seen: dict[str, list[tuple[str, str]]] = {}

    def step(ctx: StepContext) -> dict[str, Any]:
        seen[ctx.step] = _journaled(ctx)
        return {}

    register_saga(
        SagaDefinition(
            "dr-free-then-replay",
            [
                Step("s0", step, compensation=_script_compensation, retry=FAST),
                Step("e1", step, retry=FAST, effects=False),
                Step("r2", step, retry=FAST, replay_safe=True),
                Step("r3", step, retry=FAST, replay_safe=True),
            ],
        )
    )
    start_saga(system, "dr-free-then-replay", "dfr-1", {"comp": {}})
    assert await_saga(system, "dfr-1", timeout=10).status == "completed"
    committed = [(None, "started"), ("s0", "step_succeeded"), ("e1", "step_succeeded")]
    assert seen["r2"] == committed  # e1 committed before r2 ran
    assert seen["r3"] == committed  # r2's record held while r3 ran


def test_held_records_are_committed_before_an_effectful_step_and_a_compensation(
    system: ActorSystem,
) -> None:
    start_saga_supervisor(system)
    seen: dict[str, Any] = {}
    sub = system.events.subscribe(["saga_step"])

    def free(ctx: StepContext) -> dict[str, Any]:
        if ctx.step == "e3":
            seen["events_during_e3"] = _steps_of(sub, ctx.saga_id)
        if ctx.step == "e4":
            seen["journal_during_e4"] = _journaled(ctx)
            seen["events_during_e4"] = _steps_of(sub, ctx.saga_id)
            raise Permanent("e4 refuses")
        return {}

    def effect(ctx: StepContext) -> dict[str, Any]:
        seen["journal_during_s2"] = _journaled(ctx)
        seen["events_during_s2"] = _steps_of(sub, ctx.saga_id)
        return {}

    def undo(ctx: StepContext) -> None:
        seen["journal_during_undo"] = _journaled(ctx)

    register_saga(
        SagaDefinition(
            "df-order",
            [
                Step("e1", free, retry=FAST, effects=False),
                Step("s2", effect, compensation=undo, retry=FAST),
                Step("e3", free, retry=FAST, effects=False),
                Step("e4", free, retry=FAST, effects=False),
            ],
        )
    )
    try:
        start_saga(system, "df-order", "do-1", {})
        assert await_saga(system, "do-1", timeout=10).status == "compensated"
    finally:
        sub.close()
    # e1's record committed, and its event published, before s2 ran.
    assert seen["journal_during_s2"][-1] == ("e1", "step_succeeded")
    assert seen["events_during_s2"] == [("e1", "step_succeeded")]
    # s2 committed alone; e3 held while e4 ran: neither its record nor its event yet.
    assert seen["journal_during_e4"][-1] == ("s2", "step_succeeded")
    assert seen["events_during_e3"] == [("s2", "step_succeeded")]
    assert seen["events_during_e4"] == []
    # e4's failure committed together with the held e3, before the compensation ran.
    assert seen["journal_during_undo"][-2:] == [("e3", "step_succeeded"), ("e4", "step_failed")]


def test_a_kill_queued_during_an_effect_free_step_commits_it_before_the_actor_stops(
    system: ActorSystem,
) -> None:
    start_saga_supervisor(system)
    runs: list[tuple[str, int]] = []
    killed = threading.Event()

    def step(ctx: StepContext) -> dict[str, Any]:
        runs.append((ctx.step, int(threading.current_thread().name.rsplit("#", 1)[1])))
        if ctx.step == "e1" and not killed.is_set():
            killed.set()
            assert ctx.system.kill(saga_path(ctx.saga_id))  # queued: lands after the handler
        return {}

    register_saga(
        SagaDefinition(
            "df-kill",
            [
                Step("e0", step, retry=FAST, effects=False),
                Step("e1", step, retry=FAST, effects=False),
                Step("s2", step, retry=FAST),
            ],
        )
    )
    start_saga(system, "df-kill", "dk-1", {})
    assert await_saga(system, "dk-1", timeout=10).status == "completed"
    # The held e0 and e1 were committed before the handler returned to the kill:
    # the next incarnation starts at s2 and nothing ran twice.
    assert runs == [("e0", 1), ("e1", 1), ("s2", 2)]
    tags = [r["event"]["tag"] for r in SagaJournal(system.storage).records("dk-1")]
    assert tags == ["started", *["step_succeeded"] * 3, "finalized"]


# Mostly successes, so that runs reach the later steps and their compensations.
_OUTCOMES = st.lists(st.sampled_from(["ok", "ok", "ok", "transient", "permanent"]), min_size=1,
                     max_size=3)  # fmt: skip


@settings(
    max_examples=50,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    shape=st.lists(
        st.tuples(st.sampled_from(["free", "replay", "effect"]), st.booleans()),
        min_size=2,
        max_size=6,
    ),
    data=st.data(),
)
def test_held_and_unheld_runs_journal_the_same_records_for_any_outcomes(
    system: ActorSystem, shape: list[tuple[str, bool]], data: st.DataObject
) -> None:
    if not system.is_alive("/sagas"):
        start_saga_supervisor(system)
    script = {f"s{i}": data.draw(_OUTCOMES, label=f"s{i}") for i in range(len(shape))}
    comp = {
        f"s{i}": data.draw(st.sampled_from(["ok", "fail"]), label=f"comp s{i}")
        for i in range(len(shape))
    }
    n = next(_IDS)
    _register(f"dp-held-{n}", shape, held=True)
    _register(f"dp-plain-{n}", shape, held=False)
    input = {"script": script, "comp": comp}
    held = _run(system, f"dp-held-{n}", input)
    plain = _run(system, f"dp-plain-{n}", input)
    assert held[0] == plain[0]
    event(f"ended {held[0]}, {plain[2] - held[2]} commit(s) saved")
    assert held[1] == plain[1]
    assert held[3] == plain[3]  # the same saga_step events, in the same order
    assert held[2] <= plain[2]  # exact counts: the fixed-shape test above
