"""A real crash while held records are uncommitted: the steps re-run, each effect lands once.

The child process (this file run as a script) runs one of two sagas and
SIGKILLs itself at the first commit from the saga thread after its last
held step ran, so nothing of the held progress is durable:

- ``e1, e2`` (both ``effects=False``) then ``s3`` (with an effect): the
  commit that must carry the held ``e1`` and ``e2`` before ``s3`` runs;
- ``s0`` (plain) then ``r1, r2`` (both ``replay_safe``, each with an effect
  keyed by the saga id and step, as the buy saga's settlement steps are keyed
  by trade id): the commit that would carry the held ``r1`` and ``r2`` with
  the end, after both took effect.

The test resumes the saga on a new node over the same var dir: the held
steps run again, no effect is repeated, and the journal holds each record once.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from phalanx import ActorSystem, Retry
from phalanx.actors.saga import (
    SagaDefinition,
    Step,
    StepContext,
    await_saga,
    register_saga,
    resume_sagas,
    saga_definition,
    start_saga,
    start_saga_supervisor,
)
from phalanx.storage._journal import SagaJournal
from tests.trading._rig import run_until_killed

FREE, REPLAY = "deferred-crash-test", "replay-safe-crash-test"
_EFFECTS = {FREE: ("s3",), REPLAY: ("s0", "r1", "r2")}  # the steps with an effect
_LAST_HELD = {FREE: "e2", REPLAY: "r2"}  # the child dies at the saga's next commit


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def _step(ctx: StepContext) -> dict[str, Any]:
    log = Path(str(ctx.input["log"]))
    with log.open("a") as f:
        f.write(f"run:{ctx.step}\n")
    if ctx.step in _EFFECTS[ctx.kind] and f"effect:{ctx.step}" not in _lines(log):
        with log.open("a") as f:  # keyed by saga id + step: a re-run repeats nothing
            f.write(f"effect:{ctx.step}\n")
    return {"step": ctx.step}


ONCE = Retry(max_attempts=1)
register_saga(
    SagaDefinition(
        FREE,
        [
            Step("e1", _step, retry=ONCE, effects=False),
            Step("e2", _step, retry=ONCE, effects=False),
            Step("s3", _step, retry=ONCE),
        ],
    )
)
register_saga(
    SagaDefinition(
        REPLAY,
        [
            Step("s0", _step, retry=ONCE),
            Step("r1", _step, retry=ONCE, replay_safe=True),
            Step("r2", _step, retry=ONCE, replay_safe=True),
        ],
    )
)


def _node(var: Path) -> ActorSystem:
    return ActorSystem(name="deferred-crash", var_dir=var, sync=False).start()


def _child(var: Path, kind: str) -> None:
    original = SagaJournal.commit
    log = var / "effects.log"

    def crash_on_the_held_commit(self: SagaJournal, op: Callable[..., Any]) -> Any:
        saga_thread = "/sagas/" in threading.current_thread().name
        if saga_thread and f"run:{_LAST_HELD[kind]}" in _lines(log):
            os.kill(os.getpid(), signal.SIGKILL)  # before the held records commit
        return original(self, op)

    SagaJournal.commit = crash_on_the_held_commit  # type: ignore[method-assign]
    system = _node(var)
    start_saga_supervisor(system)
    start_saga(system, kind, "dc-1", {"log": str(log)})
    await_saga(system, "dc-1", timeout=30)  # never returns: the held commit kills
    system.shutdown()


def _steps(records: list[dict[str, Any]]) -> list[tuple[str | None, str]]:
    return [(r["event"].get("step"), r["event"]["tag"]) for r in records]


@pytest.mark.parametrize(
    ("kind", "first", "durable", "rerun"),
    [
        (
            FREE,
            ["run:e1", "run:e2"],
            [(None, "started")],
            ["run:e1", "run:e2", "run:s3", "effect:s3"],
        ),
        (
            REPLAY,
            ["run:s0", "effect:s0", "run:r1", "effect:r1", "run:r2", "effect:r2"],
            [(None, "started"), ("s0", "step_succeeded")],
            ["run:r1", "run:r2"],
        ),
    ],
    ids=["effect_free", "replay_safe"],
)
def test_a_crash_before_the_held_records_commit_reruns_them_and_repeats_no_effect(
    tmp_path: Path,
    kind: str,
    first: list[str],
    durable: list[tuple[str | None, str]],
    rerun: list[str],
) -> None:
    var = tmp_path / "var"
    run_until_killed(__file__, var, kind)
    log = var / "effects.log"
    assert _lines(log) == first  # what ran (and took effect) before the kill
    system = _node(var)
    try:
        journal = SagaJournal(system.storage)
        assert _steps(journal.records("dc-1")) == durable  # the held records were lost
        start_saga_supervisor(system)
        assert resume_sagas(system) == ["dc-1"]
        assert await_saga(system, "dc-1", timeout=10).status == "completed"
        records = journal.records("dc-1")
    finally:
        system.shutdown()
    assert _lines(log) == [*first, *rerun]  # the held steps again; no effect repeated
    assert [r["seq"] for r in records] == [1, 2, 3, 4, 5]
    assert _steps(records) == [
        (None, "started"),
        *[(name, "step_succeeded") for name in saga_definition(kind).order],
        (None, "finalized"),
    ]


if __name__ == "__main__":
    _child(Path(sys.argv[1]), sys.argv[2])
