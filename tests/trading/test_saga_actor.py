"""The Saga actor: journaled runs, compensation, dead letters, kills and node restarts."""

from __future__ import annotations

import random
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from phalanx import ActorSystem, Retry
from phalanx._ids import new_id
from phalanx.actors.saga import (
    SAGAS,
    Alert,
    DeadLetter,
    Finished,
    Pending,
    SagaDefinition,
    SagaError,
    SagaState,
    ScheduleRetry,
    Step,
    StepContext,
    await_saga,
    new_saga,
    register_saga,
    resume_sagas,
    saga_outcomes,
    saga_path,
    saga_snapshot,
    start_saga,
    start_saga_supervisor,
    start_sagas,
)
from phalanx.protocols.trading import GetSaga, OrderSnapshot, OrderUpdate
from phalanx.storage._journal import SagaJournal
from phalanx.supervision._supervisor import SupervisorRef

NO_WAIT = Retry(max_attempts=3, backoff="fixed", base=0.0, jitter=0.0)
END = ("saga_completed", "saga_compensated", "saga_compensation_failed")


class Refused(Exception):
    """A permanent domain error (the decider resumes on it)."""

    phalanx_error_class = "permanent"


class Probe:
    """Records every call; ``effects`` holds the idempotent side effects (keyed by saga id)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.calls: list[tuple[str, str, int]] = []  # (phase, step, attempt)
        self.effects: Counter[tuple[str, str]] = Counter()
        self.applied: set[tuple[str, str]] = set()

    def record(self, phase: str, ctx: StepContext) -> None:
        with self.lock:
            self.calls.append((phase, ctx.step, ctx.attempt))

    def effect(self, ctx: StepContext, what: str) -> None:
        key = (ctx.saga_id, f"{what}:{ctx.step}")
        with self.lock:
            if key not in self.applied:  # idempotent, as real steps must be
                self.applied.add(key)
                self.effects[key] += 1

    def phases(self, phase: str) -> list[str]:
        with self.lock:
            return [step for p, step, _ in self.calls if p == phase]

    def action(
        self, fail: BaseException | Callable[[int], BaseException | None] | None = None
    ) -> Callable[[StepContext], Any]:
        def run(ctx: StepContext) -> Any:
            self.record("run", ctx)
            error = fail(ctx.attempt) if callable(fail) else fail
            if error is not None:
                raise error
            self.effect(ctx, "do")
            return {"step": ctx.step, "price": Decimal("1.5"), "seen": sorted(ctx.results)}

        return run

    def compensation(self, fail: BaseException | None = None) -> Callable[[StepContext], Any]:
        def undo(ctx: StepContext) -> None:
            self.record("undo", ctx)
            if fail is not None:
                raise fail
            self.effect(ctx, "undo")

        return undo


def _define(kind: str, probe: Probe, **overrides: Step) -> SagaDefinition:
    steps = []
    for name in ("s1", "s2", "s3"):
        steps.append(
            overrides.get(
                name,
                Step(name, probe.action(), compensation=probe.compensation(), retry=NO_WAIT),
            )
        )
    return register_saga(SagaDefinition(kind, steps))


@pytest.fixture
def sagas(system: ActorSystem) -> ActorSystem:
    start_saga_supervisor(system)
    return system


def test_happy_path_runs_every_step_once_in_order_and_stops_itself(sagas: ActorSystem) -> None:
    probe = Probe()
    _define("happy", probe)
    events = sagas.events.subscribe(["saga_started", "saga_step", *END, "actor_stopped"])
    ref = start_saga(sagas, "happy", "h-1", {"amount": Decimal("0.25")})
    assert ref.path == saga_path("h-1") == "/sagas/s-h-1"
    snap = await_saga(sagas, "h-1", timeout=10)
    assert snap.status == "completed"
    assert snap.steps == {"s1": "done", "s2": "done", "s3": "done"}
    assert snap.results["s3"] == {"step": "s3", "price": "1.5", "seen": ["s1", "s2"]}
    assert probe.phases("run") == ["s1", "s2", "s3"]
    assert probe.phases("undo") == []
    stopped = events.wait_for(lambda e: e.kind == "actor_stopped" and e.path == ref.path, 10)
    assert stopped is not None
    assert stopped.fields["reason"] == "normal"
    kinds = [e.kind for e in sagas.events.recent(200) if e.fields.get("saga_id") == "h-1"]
    assert kinds == ["saga_started", "saga_step", "saga_step", "saga_step", "saga_completed"]
    journal = SagaJournal(sagas.storage)
    records = journal.records("h-1")
    assert [r["seq"] for r in records] == [1, 2, 3, 4, 5]
    assert [r["event"]["tag"] for r in records] == [
        "started", "step_succeeded", "step_succeeded", "step_succeeded", "finalized",
    ]  # fmt: skip
    assert journal.load("h-1")["input"] == {"amount": "0.25"}
    assert journal.active_ids() == []
    assert saga_outcomes(sagas.storage)["completed"] == 1


def test_await_saga_returns_the_outcome_when_the_end_event_is_lost(
    sagas: ActorSystem, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A crash between the final commit and the end event loses the event: the
    # journal still has the outcome, and await_saga must find it there.
    from phalanx.actors.saga._actor import SagaActor

    note = SagaActor._note

    def drop_end_events(self: SagaActor, kind: str, **fields: Any) -> None:
        if kind not in END:
            note(self, kind, **fields)

    monkeypatch.setattr(SagaActor, "_note", drop_end_events)
    probe = Probe()
    _define("quiet", probe)
    ends = sagas.events.subscribe(END)
    start_saga(sagas, "quiet", "q-1", {})
    assert await_saga(sagas, "q-1", timeout=10).status == "completed"
    assert ends.get(timeout=0) is None  # no end event was published
    assert await_saga(sagas, "q-1", timeout=1).status == "completed"  # already ended


def test_await_saga_times_out_naming_the_status_of_a_saga_still_running(
    sagas: ActorSystem,
) -> None:
    gate = threading.Event()
    probe = Probe()

    def blocked(ctx: StepContext) -> Any:
        gate.wait(10)
        return None

    _define("slow", probe, s1=Step("s1", blocked, retry=NO_WAIT))
    start_saga(sagas, "slow", "w-1", {})
    try:
        with pytest.raises(TimeoutError, match=r"saga w-1 still running after 0\.2s"):
            await_saga(sagas, "w-1", timeout=0.2)
    finally:
        gate.set()
    assert await_saga(sagas, "w-1", timeout=10).status == "completed"


def test_permanent_failure_of_step_3_compensates_steps_2_then_1(sagas: ActorSystem) -> None:
    probe = Probe()
    _define(
        "perm",
        probe,
        s3=Step("s3", probe.action(Refused("no")), compensation=probe.compensation()),
    )
    start_saga(sagas, "perm", "p-1", {})
    snap = await_saga(sagas, "p-1", timeout=10)
    assert snap.status == "compensated"
    assert snap.steps == {"s1": "compensated", "s2": "compensated", "s3": "failed"}
    assert "Refused: no" in (snap.error or "")
    assert probe.phases("run") == ["s1", "s2", "s3"]  # permanent: not retried
    assert probe.phases("undo") == ["s2", "s1"]
    assert sagas.dead_letters.list() == []
    assert saga_outcomes(sagas.storage) == {
        "completed": 0, "compensated": 1, "running": 0, "compensation_failed": 0,
    }  # fmt: skip


def test_transient_failures_are_retried_by_the_step_retry_policy(sagas: ActorSystem) -> None:
    probe = Probe()
    flaky = probe.action(lambda attempt: ConnectionError("reset") if attempt < 3 else None)
    _define("flaky", probe, s2=Step("s2", flaky, retry=NO_WAIT))
    start_saga(sagas, "flaky", "f-1", {})
    assert await_saga(sagas, "f-1", timeout=10).status == "completed"
    assert [c for c in probe.calls if c[1] == "s2"] == [
        ("run", "s2", 1), ("run", "s2", 2), ("run", "s2", 3),
    ]  # fmt: skip


def test_transient_failures_past_the_budget_fail_the_step_and_compensate(
    sagas: ActorSystem,
) -> None:
    probe = Probe()
    _define("exhaust", probe, s2=Step("s2", probe.action(ConnectionError("down")), retry=NO_WAIT))
    start_saga(sagas, "exhaust", "x-1", {})
    assert await_saga(sagas, "x-1", timeout=10).status == "compensated"
    assert probe.phases("run").count("s2") == 3
    assert probe.phases("undo") == ["s1"]


def test_compensation_that_keeps_failing_ends_compensation_failed_with_dead_letter_and_alert(
    sagas: ActorSystem,
) -> None:
    probe = Probe()
    bad_undo = probe.compensation(ConnectionError("venue down"))
    _define(
        "compfail",
        probe,
        s2=Step("s2", probe.action(), compensation=bad_undo, compensation_retry=NO_WAIT),
        s3=Step("s3", probe.action(Refused("rejected"))),
    )
    alerts = sagas.events.subscribe(["alert_fired"])
    stopped = sagas.events.subscribe(["actor_stopped"])
    ref = start_saga(sagas, "compfail", "c-1", {"note": "x"})
    snap = await_saga(sagas, "c-1", timeout=10)
    assert stopped.wait_for(lambda e: e.path == ref.path, 10) is not None
    counts = sagas.counters()  # the dead letter is counted as sent, so conservation holds
    assert counts["sent"] == counts["handled"] + counts["dead_lettered"] + counts["queued"]
    assert snap.status == "compensation_failed"
    assert snap.steps == {"s1": "compensated", "s2": "compensation_failed", "s3": "failed"}
    assert probe.phases("undo") == ["s2", "s2", "s2", "s1"]  # retried, then s1 still undone
    (letter,) = sagas.dead_letters.list(reason="compensation_failed")
    assert letter.target == "/sagas/s-c-1"
    assert letter.message["step"] == "s2"
    assert letter.message["input"] == {"note": "x"}
    assert "venue down" in (letter.error_message or "")
    assert letter.attempts == 3
    alert = alerts.wait_for(lambda e: e.fields.get("saga_id") == "c-1", 5)
    assert alert is not None
    assert alert.fields["severity"] == "critical"
    assert alert.fields["alert"] == "saga_compensation_failed"
    assert saga_outcomes(sagas.storage)["compensation_failed"] == 1
    assert saga_outcomes(sagas.storage)["compensated"] == 0
    assert sagas.totals()["dead_letters"] == {"compensation_failed": 1}  # run summary sees it


def _gated_step(probe: Probe, gate: threading.Event, polled: threading.Event) -> Step:
    """Pending until ``gate`` is set: what an await-fill step looks like."""

    def wait(ctx: StepContext) -> Any:
        probe.record("run", ctx)
        polled.set()
        if not gate.is_set():
            return Pending(0.01)
        probe.effect(ctx, "do")
        return {"filled": True}

    return Step("s2", wait, compensation=probe.compensation(), retry=NO_WAIT)


def test_killed_mid_saga_resumes_and_completes_with_each_effect_once(
    sagas: ActorSystem,
) -> None:
    probe = Probe()
    gate, polled = threading.Event(), threading.Event()
    _define("killed", probe, s2=_gated_step(probe, gate, polled))
    resumed = sagas.events.subscribe(["saga_resumed"])
    ref = start_saga(sagas, "killed", "k-1", {})
    assert polled.wait(10)
    assert sagas.kill(ref.path)
    assert resumed.wait_for(lambda e: e.path == ref.path, 10) is not None
    polled.clear()
    assert polled.wait(10)  # the new incarnation polls the in-flight step again
    gate.set()
    assert await_saga(sagas, "k-1", timeout=10).status == "completed"
    assert probe.phases("run").count("s1") == 1
    assert probe.phases("run").count("s3") == 1
    assert probe.effects == {("k-1", f"do:{s}"): 1 for s in ("s1", "s2", "s3")}


def test_start_saga_is_idempotent_and_never_reruns_an_ended_saga(sagas: ActorSystem) -> None:
    probe = Probe()
    gate, polled = threading.Event(), threading.Event()
    _define("idem", probe, s2=_gated_step(probe, gate, polled))
    first = start_saga(sagas, "idem", "i-1", {})
    assert polled.wait(10)
    second = start_saga(sagas, "idem", "i-1", {})
    assert first == second
    running = sagas.ask(first.path, GetSaga(), timeout=5)
    assert running.status == "running"
    assert running.steps["s2"] == "running"
    gate.set()
    assert await_saga(sagas, "i-1", timeout=10).status == "completed"
    runs = len(probe.calls)
    start_saga(sagas, "idem", "i-1", {})  # ended: not run again
    assert saga_snapshot(sagas.storage, "i-1").status == "completed"  # type: ignore[union-attr]
    assert len(probe.calls) == runs
    assert probe.phases("run").count("s1") == 1
    with pytest.raises(SagaError, match="already a 'idem' saga"):
        start_saga(sagas, "happy", "i-1", {})
    with pytest.raises(SagaError, match="no saga kind"):
        start_saga(sagas, "nope", "i-2", {})
    with pytest.raises(SagaError, match="saga id"):
        start_saga(sagas, "idem", "bad/id", {})


def test_pending_step_past_its_timeout_fails_and_compensates(sagas: ActorSystem) -> None:
    probe = Probe()
    never = Step("s2", lambda ctx: Pending(0.01), timeout_s=0.05, retry=NO_WAIT)
    _define("timeout", probe, s2=never)
    start_saga(sagas, "timeout", "t-1", {})
    snap = await_saga(sagas, "t-1", timeout=10)
    assert snap.status == "compensated"
    assert "StepTimeout" in (snap.error or "")
    assert probe.phases("undo") == ["s1"]


def test_a_long_pending_poll_still_times_out_on_time(sagas: ActorSystem) -> None:
    probe = Probe()
    _define("longpoll", probe, s2=Step("s2", lambda ctx: Pending(3600.0), timeout_s=0.05))
    start_saga(sagas, "longpoll", "lp-1", {})
    snap = await_saga(sagas, "lp-1", timeout=10)  # not after the hour the step asked for
    assert snap.status == "compensated"
    assert "StepTimeout" in (snap.error or "")


def test_on_timeout_may_finish_the_step_with_a_result(sagas: ActorSystem) -> None:
    probe = Probe()
    seen: list[str] = []

    def timed_out(ctx: StepContext) -> Any:
        seen.append(ctx.phase)
        return {"canceled": True}

    step = Step("s2", lambda ctx: Pending(0.01), timeout_s=0.05, on_timeout=timed_out)
    _define("ontimeout", probe, s2=step)
    start_saga(sagas, "ontimeout", "o-1", {})
    snap = await_saga(sagas, "o-1", timeout=10)
    assert snap.status == "completed"
    assert snap.results["s2"] == {"canceled": True}
    assert seen == ["timeout"]


def test_order_update_wakes_a_pending_step_before_its_poll_interval(sagas: ActorSystem) -> None:
    probe = Probe()
    polls = threading.Semaphore(0)
    state = {"polls": 0}

    def slow_poll(ctx: StepContext) -> Any:
        state["polls"] += 1
        polls.release()
        return {"ok": True} if state["polls"] > 1 else Pending(3600.0)

    _define("nudge", probe, s2=Step("s2", slow_poll))
    ref = start_saga(sagas, "nudge", "n-1", {})
    assert polls.acquire(timeout=10)
    order = OrderSnapshot(
        order_req_id="n-1", client_order_id="px-1-0", exchange_order_id="9", status="filled",
        symbol="BTC/USDT", side="buy", amount=Decimal(1), filled=Decimal(1), average=None,
        fee=Decimal(0), terminal=True,
    )  # fmt: skip
    ref.tell(OrderUpdate(snapshot=order))
    assert await_saga(sagas, "n-1", timeout=10).status == "completed"


def test_a_result_that_is_not_plain_data_fails_the_step_permanently(sagas: ActorSystem) -> None:
    probe = Probe()
    _define("notplain", probe, s2=Step("s2", lambda ctx: {"obj": object()}))
    start_saga(sagas, "notplain", "np-1", {})
    snap = await_saga(sagas, "np-1", timeout=10)
    assert snap.status == "compensated"
    assert "not plain data" in (snap.error or "")


def _node(var: Path) -> ActorSystem:
    return ActorSystem(name="node", var_dir=var, sync=False, retry=NO_WAIT).start()


def test_node_restart_resumes_an_in_flight_saga_from_its_journal(tmp_path: Path) -> None:
    probe = Probe()
    gate, polled = threading.Event(), threading.Event()
    _define("restart", probe, s2=_gated_step(probe, gate, polled))
    var = tmp_path / "var"
    first = _node(var)
    try:
        start_saga_supervisor(first)
        start_saga(first, "restart", "r-1", {"n": 1})
        assert polled.wait(10)
    finally:
        first.shutdown()  # the saga is still in flight at s2
    assert probe.phases("run").count("s3") == 0
    second = _node(var)
    try:
        assert saga_outcomes(second.storage)["running"] == 1
        assert second.dead_letters.list() == []  # a Pending saga's timer died with the node
        start_saga_supervisor(second)
        gate.set()
        assert resume_sagas(second) == ["r-1"]
        snap = await_saga(second, "r-1", timeout=10)
        assert snap.status == "completed"
        assert resume_sagas(second) == []  # finished: nothing left to resume
    finally:
        second.shutdown()
    assert probe.phases("run").count("s1") == 1
    assert probe.phases("run").count("s3") == 1
    assert probe.effects == {("r-1", f"do:{s}"): 1 for s in ("s1", "s2", "s3")}


def test_node_restart_during_a_retry_backoff_resumes_the_scheduled_retry(tmp_path: Path) -> None:
    probe = Probe()
    once = probe.action(lambda attempt: ConnectionError("reset") if attempt == 1 else None)
    backoff = Retry(max_attempts=2, backoff="fixed", base=1.5, jitter=0.0)
    _define("backoff", probe, s2=Step("s2", once, retry=backoff))
    var = tmp_path / "var"
    first = _node(var)
    try:
        start_saga_supervisor(first)
        failed = first.events.subscribe(["saga_step"])
        start_saga(first, "backoff", "bo-1", {})
        assert failed.wait_for(lambda e: e.fields["outcome"] == "step_failed", 10) is not None
    finally:
        first.shutdown()  # within the 1.5 s backoff: the retry is only journaled
    second = _node(var)
    try:
        state = SagaState.from_dict(SagaJournal(second.storage).load("bo-1"))  # type: ignore[arg-type]
        (retry,) = state.outbox
        assert isinstance(retry, ScheduleRetry)
        assert (retry.step, retry.attempt, retry.phase) == ("s2", 2, "action")
        assert second.dead_letters.list() == []  # the waiting saga left nothing behind
        start_saga_supervisor(second)
        assert resume_sagas(second) == ["bo-1"]
        assert await_saga(second, "bo-1", timeout=10).status == "completed"
    finally:
        second.shutdown()
    assert [c for c in probe.calls if c[1] == "s2"] == [("run", "s2", 1), ("run", "s2", 2)]
    assert probe.phases("run").count("s1") == 1


@pytest.mark.parametrize("dead_letter_was_put", [True, False])
def test_resume_after_a_crash_before_finalize_puts_the_dead_letter_exactly_once(
    sagas: ActorSystem, dead_letter_was_put: bool
) -> None:
    probe = Probe()
    undo = probe.compensation(ConnectionError("still down"))
    s2 = Step("s2", probe.action(), compensation=undo, compensation_retry=Retry(max_attempts=1))
    _define("dlonce", probe, s2=s2, s3=Step("s3", probe.action(Refused("no"))))
    stopped = sagas.events.subscribe(["actor_stopped"])
    ref = start_saga(sagas, "dlonce", "d-1", {})
    assert await_saga(sagas, "d-1", timeout=10).status == "compensation_failed"
    assert stopped.wait_for(lambda e: e.path == ref.path, 10) is not None
    (letter,) = sagas.dead_letters.list(reason="compensation_failed")
    # Rewind to the commit of the terminal plan, as if the node died right after
    # it: the outbox still holds the dead letter (put or not yet), alert, end.
    journal = SagaJournal(sagas.storage)
    state = SagaState.from_dict(journal.load("d-1"))  # type: ignore[arg-type]
    ident = letter.id if dead_letter_was_put else new_id()
    outbox = (
        DeadLetter("compensation_failed", "s2", "ConnectionError: still down", ident),
        Alert("saga_compensation_failed", "critical", "s2", "ConnectionError: still down"),
        Finished("compensation_failed"),
    )
    state = replace(state, finalized=False, outbox=outbox)
    journal.commit(journal.snapshot_op("d-1", state.to_dict(), active=True))
    alerts = sagas.events.subscribe(["alert_fired"])
    assert resume_sagas(sagas) == ["d-1"]
    assert await_saga(sagas, "d-1", timeout=10).status == "compensation_failed"
    assert alerts.wait_for(lambda e: e.fields.get("saga_id") == "d-1", 5) is not None
    letters = sagas.dead_letters.list(reason="compensation_failed")
    assert len(letters) == (1 if dead_letter_was_put else 2)
    assert ident in {d.id for d in letters}
    assert journal.active_ids() == []
    assert probe.phases("undo") == ["s2", "s1"]  # compensations did not run again


def test_resume_skips_a_saga_whose_kind_is_not_registered_with_an_alert(
    sagas: ActorSystem,
) -> None:
    journal = SagaJournal(sagas.storage)
    ghost = new_saga(SagaDefinition("ghost-kind", [Step("a", lambda ctx: {})]), "g-1", {}, 0.0)
    journal.commit(journal.snapshot_op("g-1", ghost.to_dict(), active=True))
    alerts = sagas.events.subscribe(["alert_fired"])
    assert resume_sagas(sagas) == []
    alert = alerts.wait_for(lambda e: e.fields.get("saga_id") == "g-1", 5)
    assert alert is not None
    assert alert.fields["alert"] == "saga_resume_failed"
    assert "ghost-kind" in alert.fields["error"]
    assert journal.active_ids() == ["g-1"]  # kept for an operator, not dropped


def test_resume_refuses_a_saga_whose_registered_steps_changed(sagas: ActorSystem) -> None:
    probe = Probe()
    old = SagaDefinition("changed", [Step("a", probe.action()), Step("b", probe.action())])
    journal = SagaJournal(sagas.storage)
    state = new_saga(old, "ch-1", {}, 0.0)
    journal.commit(journal.snapshot_op("ch-1", state.to_dict(), active=True))
    register_saga(SagaDefinition("changed", [Step("a", probe.action())]))
    assert resume_sagas(sagas) == []
    assert probe.calls == []


def test_compensation_pending_past_its_timeout_ends_compensation_failed(
    sagas: ActorSystem,
) -> None:
    probe = Probe()
    stuck = Step(
        "s2", probe.action(), compensation=lambda ctx: Pending(0.01), compensation_timeout_s=0.05
    )
    _define("comptimeout", probe, s2=stuck, s3=Step("s3", probe.action(Refused("no"))))
    start_saga(sagas, "comptimeout", "ct-1", {})
    snap = await_saga(sagas, "ct-1", timeout=10)
    assert snap.status == "compensation_failed"
    assert snap.steps["s2"] == "compensation_failed"
    assert snap.steps["s1"] == "compensated"
    (letter,) = sagas.dead_letters.list(reason="compensation_failed")
    assert "StepTimeout" in letter.message["error"]


def test_random_kills_never_lose_or_repeat_an_effect(sagas: ActorSystem) -> None:
    probe = Probe()
    polls: Counter[str] = Counter()
    lock = threading.Lock()
    go = threading.Event()  # the slow step waits until every saga was killed once

    def slow(ctx: StepContext) -> Any:
        with lock:
            polls[ctx.saga_id] += 1
            ready = polls[ctx.saga_id] > 3 and go.is_set()
        if not ready:
            ctx.system.events.publish("test_poll", ctx.path, saga_id=ctx.saga_id)
            return Pending(0.05)  # long enough for the test to kill it while it waits
        probe.effect(ctx, "do")
        return {"ok": True}

    def undo_free(ctx: StepContext) -> None:
        probe.effect(ctx, "undo")

    steps = [Step(f"s{i}", probe.action(), compensation=undo_free, retry=NO_WAIT) for i in (1, 2)]
    steps.insert(1, Step("slow", slow, retry=NO_WAIT))
    register_saga(SagaDefinition("chaos", steps))
    rng = random.Random(5)
    ids = [f"ch-{n}" for n in range(20)]
    events = sagas.events.subscribe(["saga_step", "test_poll", *END])
    for saga_id in ids:
        start_saga(sagas, "chaos", saga_id, {})
    ended: set[str] = set()
    first_poll_killed: set[str] = set()
    kills = 0
    while len(ended) < len(ids):
        event = events.get(timeout=20)
        assert event is not None, f"stalled; ended {sorted(ended)}"
        saga_id, path = event.fields["saga_id"], event.path or ""
        if event.kind in END:
            ended.add(saga_id)
            continue
        # Every saga is killed at its first poll (it is alive: it just published
        # from its handler), and at random at later steps and polls.
        first = event.kind == "test_poll" and saga_id not in first_poll_killed
        if (first or rng.random() < 0.3) and sagas.is_alive(path) and sagas.kill(path):
            kills += 1
            if first:
                first_poll_killed.add(saga_id)
                if first_poll_killed == set(ids):
                    go.set()
    assert first_poll_killed == set(ids)
    assert kills >= len(ids)
    for saga_id in ids:
        assert saga_snapshot(sagas.storage, saga_id).status == "completed"  # type: ignore[union-attr]
        for step in ("s1", "slow", "s2"):
            assert probe.effects[(saga_id, f"do:{step}")] == 1
    assert saga_outcomes(sagas.storage)["completed"] == len(ids)
    assert sagas.dead_letters.list() == []


def test_an_ended_saga_started_again_stops_at_once_without_running(sagas: ActorSystem) -> None:
    probe = Probe()
    _define("again", probe)
    stopped = sagas.events.subscribe(["actor_stopped"])
    ref = start_saga(sagas, "again", "a-1", {})
    assert await_saga(sagas, "a-1", timeout=10).status == "completed"
    assert stopped.wait_for(lambda e: e.path == ref.path, 10) is not None
    runs = len(probe.calls)
    # What a start_saga racing with the end of the saga can do: start its actor again.
    SupervisorRef(sagas, SAGAS).start_child("a-1", child_id="s-a-1")
    again = stopped.wait_for(lambda e: e.path == ref.path, 10)
    assert again is not None
    assert again.fields["reason"] == "normal"
    assert len(probe.calls) == runs
    assert sagas.dead_letters.list() == []


def test_start_sagas_journals_a_batch_and_runs_each_saga_once(sagas: ActorSystem) -> None:
    probe = Probe()
    _define("batch", probe)
    start_saga(sagas, "batch", "bt-done", {})
    assert await_saga(sagas, "bt-done", timeout=10).status == "completed"
    ids = [f"bt-{n}" for n in range(5)]
    batch = [("batch", saga_id, {"n": n}) for n, saga_id in enumerate(ids)]
    refs = start_sagas(sagas, [*batch, ("batch", "bt-0", {"n": 0}), ("batch", "bt-done", {})])
    assert [r.path for r in refs] == [saga_path(i) for i in [*ids, "bt-0", "bt-done"]]
    for saga_id in ids:
        assert await_saga(sagas, saga_id, timeout=10).status == "completed"
    assert probe.phases("run").count("s1") == len(ids) + 1  # the duplicate and the ended one: no
    with pytest.raises(SagaError, match="saga id"):
        start_sagas(sagas, [("batch", "ok-1", {}), ("batch", "bad id", {})])
    assert saga_snapshot(sagas.storage, "ok-1") is None  # checked before anything is written
