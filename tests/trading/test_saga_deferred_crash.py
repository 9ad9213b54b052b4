"""A real crash while effect-free steps' records are held: they re-run, the effect runs once.

The child process (this file run as a script) runs a saga ``e1, e2`` (both
``effects=False``) then ``s3`` (with an effect). Its first commit from the saga
thread is the one that must carry the held ``e1`` and ``e2`` records before
``s3`` runs: the child SIGKILLs itself right there, so nothing of the saga's
progress is durable. The test resumes the saga on a new node over the same
var dir: ``e1`` and ``e2`` run again, ``s3`` and its effect exactly once, and
the journal holds each record once.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from phalanx import ActorSystem, Retry
from phalanx.actors.saga import (
    SagaDefinition,
    Step,
    StepContext,
    await_saga,
    register_saga,
    resume_sagas,
    start_saga,
    start_saga_supervisor,
)
from phalanx.storage._journal import SagaJournal
from tests.trading._rig import run_until_killed

KIND = "deferred-crash-test"


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def _step(ctx: StepContext) -> dict[str, Any]:
    log = Path(str(ctx.input["log"]))
    with log.open("a") as f:
        f.write(f"run:{ctx.step}\n")
    if ctx.step == "s3" and "effect:s3" not in _lines(log):  # idempotent by saga id + step
        with log.open("a") as f:
            f.write("effect:s3\n")
    return {"step": ctx.step}


ONCE = Retry(max_attempts=1)
register_saga(
    SagaDefinition(
        KIND,
        [
            Step("e1", _step, retry=ONCE, effects=False),
            Step("e2", _step, retry=ONCE, effects=False),
            Step("s3", _step, retry=ONCE),
        ],
    )
)


def _node(var: Path) -> ActorSystem:
    return ActorSystem(name="deferred-crash", var_dir=var, sync=False).start()


def _child(var: Path) -> None:
    original = SagaJournal.commit

    def crash_on_saga_commit(self: SagaJournal, op: Callable[..., Any]) -> Any:
        if "/sagas/" in threading.current_thread().name:
            os.kill(os.getpid(), signal.SIGKILL)  # before the held records commit
        return original(self, op)

    SagaJournal.commit = crash_on_saga_commit  # type: ignore[method-assign]
    system = _node(var)
    start_saga_supervisor(system)
    start_saga(system, KIND, "dc-1", {"log": str(var / "effects.log")})
    await_saga(system, "dc-1", timeout=30)  # never returns: the first saga commit kills
    system.shutdown()


def test_a_crash_before_the_held_records_commit_reruns_them_and_runs_the_effect_once(
    tmp_path: Path,
) -> None:
    var = tmp_path / "var"
    run_until_killed(__file__, var)
    log = var / "effects.log"
    assert _lines(log) == ["run:e1", "run:e2"]  # both ran, s3 never started
    system = _node(var)
    try:
        journal = SagaJournal(system.storage)
        assert [r["event"]["tag"] for r in journal.records("dc-1")] == ["started"]
        start_saga_supervisor(system)
        assert resume_sagas(system) == ["dc-1"]
        assert await_saga(system, "dc-1", timeout=10).status == "completed"
        records = journal.records("dc-1")
    finally:
        system.shutdown()
    assert _lines(log) == ["run:e1", "run:e2", "run:e1", "run:e2", "run:s3", "effect:s3"]
    assert [r["seq"] for r in records] == [1, 2, 3, 4, 5]
    assert [(r["event"].get("step"), r["event"]["tag"]) for r in records] == [
        (None, "started"),
        ("e1", "step_succeeded"),
        ("e2", "step_succeeded"),
        ("s3", "step_succeeded"),
        (None, "finalized"),
    ]


if __name__ == "__main__":
    _child(Path(sys.argv[1]))
