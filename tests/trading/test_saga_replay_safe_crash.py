"""A real crash while replay-safe steps' records are held: they re-run, each effect lands once.

The child process (this file run as a script) runs a saga ``s0`` (plain)
then ``r1``, ``r2`` (both ``replay_safe``, each with an effect keyed by the
saga id and step, as the buy saga's settlement steps are keyed by trade id).
``s0`` commits alone; ``r1`` and ``r2`` run and take effect with their records
held, and the child SIGKILLs itself at the commit that would carry them. The
test resumes the saga on a new node over the same var dir: ``r1`` and ``r2``
run again and find their effects done, and the journal holds each record once.
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

KIND = "replay-safe-crash-test"


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def _step(ctx: StepContext) -> dict[str, Any]:
    log = Path(str(ctx.input["log"]))
    with log.open("a") as f:
        f.write(f"run:{ctx.step}\n")
    if f"effect:{ctx.step}" not in _lines(log):  # keyed by saga id + step
        with log.open("a") as f:
            f.write(f"effect:{ctx.step}\n")
    return {"step": ctx.step}


ONCE = Retry(max_attempts=1)
register_saga(
    SagaDefinition(
        KIND,
        [
            Step("s0", _step, retry=ONCE),
            Step("r1", _step, retry=ONCE, replay_safe=True),
            Step("r2", _step, retry=ONCE, replay_safe=True),
        ],
    )
)


def _node(var: Path) -> ActorSystem:
    return ActorSystem(name="replay-safe-crash", var_dir=var, sync=False).start()


def _child(var: Path) -> None:
    original = SagaJournal.commit
    log = var / "effects.log"

    def crash_on_the_held_commit(self: SagaJournal, op: Callable[..., Any]) -> Any:
        if "/sagas/" in threading.current_thread().name and "run:r2" in _lines(log):
            os.kill(os.getpid(), signal.SIGKILL)  # before r1's and r2's held records commit
        return original(self, op)

    SagaJournal.commit = crash_on_the_held_commit  # type: ignore[method-assign]
    system = _node(var)
    start_saga_supervisor(system)
    start_saga(system, KIND, "rc-1", {"log": str(log)})
    await_saga(system, "rc-1", timeout=30)  # never returns: the held commit kills
    system.shutdown()


def test_a_crash_before_replay_safe_records_commit_reruns_them_and_repeats_no_effect(
    tmp_path: Path,
) -> None:
    var = tmp_path / "var"
    run_until_killed(__file__, var)
    log = var / "effects.log"
    first = ["run:s0", "effect:s0", "run:r1", "effect:r1", "run:r2", "effect:r2"]
    assert _lines(log) == first  # both replay-safe steps ran and took effect
    system = _node(var)
    try:
        journal = SagaJournal(system.storage)
        steps = [(r["event"].get("step"), r["event"]["tag"]) for r in journal.records("rc-1")]
        assert steps == [(None, "started"), ("s0", "step_succeeded")]  # r1, r2 were held
        start_saga_supervisor(system)
        assert resume_sagas(system) == ["rc-1"]
        assert await_saga(system, "rc-1", timeout=10).status == "completed"
        records = journal.records("rc-1")
    finally:
        system.shutdown()
    assert _lines(log) == [*first, "run:r1", "run:r2"]  # re-run, no effect repeated
    assert [r["seq"] for r in records] == [1, 2, 3, 4, 5]
    assert [(r["event"].get("step"), r["event"]["tag"]) for r in records] == [
        (None, "started"),
        ("s0", "step_succeeded"),
        ("r1", "step_succeeded"),
        ("r2", "step_succeeded"),
        (None, "finalized"),
    ]


if __name__ == "__main__":
    _child(Path(sys.argv[1]))
