"""Regression tests for the runtime and storage bugs found in review (no sleeps).

Interrupts (``ActorKilled``) must land only in user code (a handler, on_start,
on_stop), and storage must never turn one into an ordinary error.
"""

from __future__ import annotations

import ctypes
import threading
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import pytest

from phalanx import Actor, ActorSystem
from phalanx.runtime import _cell as cell_module
from phalanx.runtime._actor import ActorKilled
from phalanx.storage import Storage


class SlowTeardown(Actor):
    """Its runtime teardown hook loops (interruptible Python code) until ``release``."""

    def __init__(self, release: threading.Event, record: list[str]) -> None:
        super().__init__()
        self.release = release
        self.record = record

    def on_receive(self, message: Any) -> Any:
        return message

    def _after_incarnation(self, reason: str) -> None:
        try:
            while not self.release.wait(0.01):
                pass
        except BaseException as exc:
            self.record.append(type(exc).__name__)
            raise
        self.record.append("finished")


def test_interrupt_of_an_overrun_stop_never_lands_in_runtime_teardown(
    system: ActorSystem, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stop that overruns while the runtime tears down (not user code) is not interrupted.

    The teardown is where supervisors stop their children; an ActorKilled there
    left children running and the incarnation half-reported.
    """
    monkeypatch.setattr(cell_module, "_INTERRUPT_GRACE", 0.05, raising=False)
    release, record = threading.Event(), []
    real = ctypes.pythonapi.PyThreadState_SetAsyncExc

    def set_async_exc(ident: Any, exc: Any) -> Any:
        result = real(ident, exc)
        if exc is not None:
            release.set()  # the interrupt is pending now: let the teardown run into it
        return result

    monkeypatch.setattr(ctypes.pythonapi, "PyThreadState_SetAsyncExc", set_async_exc)
    system.spawn(SlowTeardown, "/t", release, record)
    cell = system._cell("/t")
    try:
        cell.shutdown(0.05)  # graceful stop overruns: killed, and interrupted if allowed
    finally:
        release.set()
    assert cell.join(5)
    assert record == ["finished"]


class Spins(Actor):
    """'spin' loops in Python code (interruptible) until ``release``; records how it ended."""

    def __init__(self, entered: threading.Event, release: threading.Event, record: list[str]):
        super().__init__()
        self.entered, self.release, self.record = entered, release, record

    def on_receive(self, message: Any) -> Any:
        self.entered.set()
        try:
            while not self.release.wait(0.01):
                pass
        except BaseException as exc:
            self.record.append(type(exc).__name__)
            raise
        return message


def test_a_handler_stuck_in_python_past_its_stop_timeout_is_interrupted_and_dead_lettered(
    system: ActorSystem,
) -> None:
    entered, release, record = threading.Event(), threading.Event(), []
    system.spawn(Spins, "/spin", entered, release, record)
    system.tell("/spin", "spin")
    assert entered.wait(5)
    try:
        assert system._cell("/spin").shutdown(0.05)
    finally:
        release.set()
    assert record == ["ActorKilled"]
    system.storage.flush()
    failed = system.dead_letters.list(reason="handler_failed", target="/spin")
    assert [d.message for d in failed] == ["spin"]
    assert failed[0].error_type.endswith("ActorKilled")


class Interrupt(BaseException):
    """Stands in for an async exception landing in a storage op."""


def test_interrupt_raised_inside_a_combined_write_propagates_and_spares_other_writers(
    tmp_path: Path,
) -> None:
    """An interrupt in the combining thread is re-raised there, never swallowed.

    Another thread's op in the same batch is still committed (by the writer),
    and does not receive the interrupt.
    """
    with Storage(tmp_path / "db", sync=False) as storage:
        db = storage.db("t")
        other: Future[Any] = Future()
        storage._direct.append((lambda txn: txn.put(b"other", b"1", db=db), other))
        raised = []

        def interrupted(txn: Any) -> None:
            if not raised:
                raised.append(True)
                raise Interrupt
            txn.put(b"mine", b"1", db=db)

        with pytest.raises(Interrupt):
            storage.write_now(interrupted)
        assert other.result(timeout=5) is True
        assert storage.read(lambda txn: txn.get(b"other", db=db)) == b"1"
        assert storage.read(lambda txn: txn.get(b"mine", db=db)) is None


def test_interrupt_after_a_commit_resolves_the_committed_ops_and_propagates(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Landing between the commit and the futures, an interrupt must not fail committed ops."""
    with Storage(tmp_path / "db", sync=False) as storage:
        db = storage.db("t")
        stats = storage._stats

        class Boom(dict[str, int]):
            fired = False

            def __setitem__(self, key: str, value: int) -> None:
                if key == "commits" and not Boom.fired:
                    Boom.fired = True
                    raise ActorKilled
                super().__setitem__(key, value)

        storage._stats = Boom(stats)
        other: Future[Any] = Future()
        storage._direct.append((lambda txn: txn.put(b"other", b"1", db=db), other))
        with pytest.raises(ActorKilled):
            storage.write_now(lambda txn: txn.put(b"mine", b"1", db=db))
        assert other.result(timeout=0) is True  # committed, and told so
        assert storage.read(lambda txn: txn.get(b"mine", db=db)) == b"1"
