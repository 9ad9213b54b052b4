"""The Saga actor runs a chain of immediate steps in one handler, checking for controls."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any

from phalanx import ActorSystem, Retry
from phalanx.actors.saga import (
    SagaDefinition,
    SagaWake,
    Step,
    StepContext,
    await_saga,
    register_saga,
    saga_path,
    start_saga,
    start_saga_supervisor,
)
from phalanx.actors.saga import _actor as saga_actor

ONCE = Retry(max_attempts=1)


def _steps(n: int, action: Any) -> list[Step]:
    return [Step(f"s{i}", action, retry=ONCE) for i in range(n)]


@contextlib.contextmanager
def _counting_wakes() -> Iterator[list[SagaWake]]:
    """Every SagaWake a Saga actor handles while the block runs."""
    wakes: list[SagaWake] = []
    original = saga_actor.SagaActor.on_receive

    def counting(self: saga_actor.SagaActor, message: Any) -> Any:
        if isinstance(message, SagaWake):
            wakes.append(message)
        return original(self, message)

    saga_actor.SagaActor.on_receive = counting  # type: ignore[method-assign]
    try:
        yield wakes
    finally:
        saga_actor.SagaActor.on_receive = original  # type: ignore[method-assign]


def test_immediate_steps_run_back_to_back_without_a_wake_per_step(system: ActorSystem) -> None:
    start_saga_supervisor(system)
    ran: list[str] = []
    register_saga(SagaDefinition("chain", _steps(5, lambda ctx: ran.append(ctx.step) or {})))
    with _counting_wakes() as wakes:
        start_saga(system, "chain", "c-1", {})
        assert await_saga(system, "c-1", timeout=10).status == "completed"
    assert ran == ["s0", "s1", "s2", "s3", "s4"]
    assert len(wakes) == 1  # the first one, from on_start; the chain and the end ran in it


def test_a_chain_longer_than_the_budget_yields_its_mailbox_once_per_budget(
    system: ActorSystem,
) -> None:
    start_saga_supervisor(system)
    steps = saga_actor._RUN_BUDGET + 3
    register_saga(SagaDefinition("long-chain", _steps(steps, lambda ctx: {})))
    with _counting_wakes() as wakes:
        start_saga(system, "long-chain", "lc-1", {})
        snap = await_saga(system, "lc-1", timeout=10)
    assert snap.status == "completed"
    assert len(wakes) == 2  # on_start's, then one after _RUN_BUDGET commands


def test_a_kill_queued_during_a_step_lands_before_the_next_step_runs(
    system: ActorSystem,
) -> None:
    start_saga_supervisor(system)
    runs: list[tuple[str, int]] = []
    killed = threading.Event()

    def step(ctx: StepContext) -> dict[str, Any]:
        # The actor thread is named "phalanx:<path>#<incarnation>".
        runs.append((ctx.step, int(threading.current_thread().name.rsplit("#", 1)[1])))
        if ctx.step == "s1" and not killed.is_set():
            killed.set()
            assert ctx.system.kill(saga_path(ctx.saga_id))  # queued: taken before any message
        return {}

    register_saga(SagaDefinition("kill-chain", _steps(3, step)))
    start_saga(system, "kill-chain", "kc-1", {})
    assert await_saga(system, "kc-1", timeout=10).status == "completed"
    # s1 finished and was committed by incarnation 1, which then stopped before
    # s2: the restarted incarnation ran s2 and s2 only once (nothing twice).
    assert runs == [("s0", 1), ("s1", 1), ("s2", 2)]
