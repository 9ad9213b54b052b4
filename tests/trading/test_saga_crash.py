"""A real crash: the node is SIGKILLed inside a step, after its effect, before its commit.

The child process (this file run as a script) starts a saga whose step ``s2``
applies its effect and then SIGKILLs its own process, so the journal still
says ``s2`` is in flight. The test then opens a new node on the same var dir,
resumes, and checks that ``s2`` ran again (it was in flight) while every
idempotent effect happened exactly once and ``s1`` was not re-run.
"""

from __future__ import annotations

import os
import signal
import sys
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
from tests.trading._rig import run_until_killed

KIND = "crash-test"


def _log(ctx: StepContext) -> Path:
    return Path(str(ctx.input["log"]))


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def _step(ctx: StepContext) -> dict[str, Any]:
    log = _log(ctx)
    with log.open("a") as f:
        f.write(f"run:{ctx.step}\n")
    if f"effect:{ctx.step}" not in _lines(log):  # idempotent by saga id + step
        with log.open("a") as f:
            f.write(f"effect:{ctx.step}\n")
    if ctx.step == "s2" and _lines(log).count("run:s2") == 1:
        os.kill(os.getpid(), signal.SIGKILL)  # after the effect, before the journal commit
    return {"step": ctx.step}


register_saga(
    SagaDefinition(
        KIND, [Step(name, _step, retry=Retry(max_attempts=1)) for name in ("s1", "s2", "s3")]
    )
)


def _node(var: Path) -> ActorSystem:
    return ActorSystem(name="crash", var_dir=var, sync=False).start()


def _child(var: Path) -> None:
    system = _node(var)
    start_saga_supervisor(system)
    start_saga(system, KIND, "cr-1", {"log": str(var / "effects.log")})
    await_saga(system, "cr-1", timeout=30)  # never returns: s2 kills the process
    system.shutdown()


def test_sigkill_inside_a_step_reruns_only_that_step_after_restart(tmp_path: Path) -> None:
    var = tmp_path / "var"
    run_until_killed(__file__, var)
    log = var / "effects.log"
    assert _lines(log) == ["run:s1", "effect:s1", "run:s2", "effect:s2"]
    system = _node(var)
    try:
        start_saga_supervisor(system)
        assert resume_sagas(system) == ["cr-1"]
        assert await_saga(system, "cr-1", timeout=10).status == "completed"
    finally:
        system.shutdown()
    lines = _lines(log)
    assert lines.count("run:s1") == 1  # committed before the crash: not re-run
    assert lines.count("run:s2") == 2  # in flight at the crash: re-run once
    assert lines.count("run:s3") == 1
    assert [line for line in lines if line.startswith("effect:")] == [
        "effect:s1",
        "effect:s2",
        "effect:s3",
    ]


if __name__ == "__main__":
    _child(Path(sys.argv[1]))
