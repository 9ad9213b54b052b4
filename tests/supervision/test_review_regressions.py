"""Regression tests for the supervision bugs found in review (one test per bug, no sleeps).

Each test pins the moment that used to go wrong with events or hooks, so it
fails deterministically without the fix.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from phalanx import (
    Actor,
    ActorSystem,
    Breaker,
    ChildSpec,
    Event,
    Mailbox,
    Retry,
    SupervisorRef,
    SupervisorStartFailed,
)
from phalanx.runtime import Subscription
from phalanx.runtime import _cell as cell_module
from phalanx.runtime._cell import ActorCell
from phalanx.supervision._supervisor import Supervisor, _Call

NO_BACKOFF = Retry(max_attempts=1, backoff="fixed", base=0.0, jitter=0.0)
# A restart that waits far longer than any test: the child stays in backoff.
LONG_BACKOFF = Retry(max_attempts=1, backoff="fixed", base=30.0, max=30.0, jitter=0.0)


class Worker(Actor):
    """'crash' raises ConnectionError, 'stop' exits normally, anything else -> incarnation."""

    def on_receive(self, message: Any) -> Any:
        if message == "crash":
            raise ConnectionError(f"{self.path} crashed")
        if message == "stop":
            self.stop()
            return "stopping"
        return self.incarnation


class Gate(Actor):
    """on_start signals ``entered`` and blocks until ``release`` is set."""

    def __init__(self, entered: threading.Event, release: threading.Event) -> None:
        super().__init__()
        self.entered = entered
        self.release = release

    def on_start(self) -> None:
        self.entered.set()
        self.release.wait(10)

    def on_receive(self, message: Any) -> Any:
        return message


class Stuck(Actor):
    """'block' signals ``entered`` and waits in one C call (uninterruptible) for ``release``."""

    def __init__(self, entered: threading.Event, release: threading.Event) -> None:
        super().__init__()
        self.entered = entered
        self.release = release

    def on_receive(self, message: Any) -> Any:
        if message == "block":
            self.entered.set()
            self.release.wait()  # one C-level lock acquire: ActorKilled waits for it
            return "unblocked"
        return self.incarnation


@contextmanager
def watch(system: ActorSystem, kinds: set[str] | None = None) -> Iterator[Subscription]:
    sub = system.events.subscribe(kinds=kinds)
    try:
        yield sub
    finally:
        sub.close()


def wait(sub: Subscription, kind: str, path: str, timeout: float = 5.0) -> Event:
    event = sub.wait_for(lambda e: e.kind == kind and e.path == path, timeout=timeout)
    assert event is not None, f"no {kind} for {path} within {timeout}s"
    return event


def statuses(sup: SupervisorRef) -> dict[str, str]:
    return {row["id"]: row["status"] for row in sup.which_children()}


def _exit_hook(
    monkeypatch: pytest.MonkeyPatch, before: Callable[[ActorCell], None] | None = None
) -> dict[str, threading.Event]:
    """Wrap Supervisor.child_exited: run ``before`` on the exiting thread, then signal the path."""
    delivered: dict[str, threading.Event] = {}
    original = Supervisor.child_exited

    def hooked(self: Supervisor, cell: ActorCell, *args: Any, **kwargs: Any) -> None:
        if before is not None:
            before(cell)
        original(self, cell, *args, **kwargs)
        delivered.setdefault(cell.path, threading.Event()).set()

    monkeypatch.setattr(Supervisor, "child_exited", hooked)
    return delivered


# --- 1. stale exit notes --------------------------------------------------------------------------


def test_killed_supervisors_successor_ignores_the_exit_note_queued_for_its_predecessor(
    system: ActorSystem, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A note queued for a supervisor that is then killed must not reach its successor.

    The successor has a fresh child at the same path with the same incarnation
    number; applying the old note restarted it for nothing and left it
    ``restarting`` for ever.
    """
    delivered = _exit_hook(monkeypatch)
    delivered["/s/c"] = threading.Event()
    sup = system.supervise("/s", "one_for_one", 5, 60, [ChildSpec("c", Worker, retry=NO_BACKOFF)])
    entered, release = threading.Event(), threading.Event()
    busy = sup.ask_future(
        _Call("start_child", (ChildSpec("gate", Gate, args=(entered, release)), {}))
    )
    assert entered.wait(5)  # the supervisor's thread is busy starting the gate
    system.tell("/s/c", "crash")
    assert delivered["/s/c"].wait(5)  # the exit note is queued behind the busy call
    with watch(system, {"actor_restarted"}) as sub:
        assert system.kill("/s")  # lands before the queued note is handled
        release.set()
        wait(sub, "actor_restarted", "/s")
    assert busy.get(timeout=5) == "/s/gate"
    assert statuses(sup) == {"c": "running"}  # asked after the stale note
    assert system.stats("/s/c")["status"] == "running"
    assert system.stats("/s/c")["restarts"] == 0
    assert system.ask("/s/c", "get", timeout=5) == 1


def test_exit_note_names_the_incarnation_that_ended_not_the_one_running_when_sent(
    system: ActorSystem, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The incarnation in an exit note is captured under the cell lock when it ends.

    Here a's crash note is held on a's thread while b's crash restarts the
    whole one_for_all group; read late, the note named a's *new* incarnation
    and restarted the group a second time.
    """
    hold_a, a_holding = threading.Event(), threading.Event()

    def before(cell: ActorCell) -> None:
        if cell.path == "/s/a" and not a_holding.is_set():
            a_holding.set()
            assert hold_a.wait(5)

    delivered = _exit_hook(monkeypatch, before)
    delivered["/s/a"] = threading.Event()
    specs = [ChildSpec(i, Worker, retry=NO_BACKOFF) for i in ("a", "b")]
    sup = system.supervise("/s", "one_for_all", 10, 60, specs)
    with watch(system, {"actor_restarted"}) as sub:
        system.tell("/s/a", "crash")
        assert a_holding.wait(5)  # a ended; its note is not sent yet
        system.tell("/s/b", "crash")
        wait(sub, "actor_restarted", "/s/b")  # the group restart b caused is done
    assert system.stats("/s/a")["incarnation"] == 2
    hold_a.set()
    assert delivered["/s/a"].wait(5)
    assert statuses(sup) == {"a": "running", "b": "running"}  # asked after a's note
    assert [system.ask(p, "get", timeout=5) for p in ("/s/a", "/s/b")] == [2, 2]


# --- 2. a group-restart sibling stuck in a C call -------------------------------------------------


@pytest.mark.parametrize("strategy", ["one_for_all", "rest_for_one"])
def test_group_restart_sibling_stuck_in_a_c_call_is_restarted_once_it_ends(
    system: ActorSystem, monkeypatch: pytest.MonkeyPatch, strategy: str
) -> None:
    """one_for_all / rest_for_one: a sibling that cannot be stopped in time is not lost.

    Its end (after its C call returns) reaches the supervisor, which then
    restarts it, and the siblings after it, in start order.
    """
    monkeypatch.setattr(cell_module, "_INTERRUPT_GRACE", 0.05, raising=False)
    entered, release = threading.Event(), threading.Event()
    specs = [
        ChildSpec("a", Worker, retry=NO_BACKOFF),
        ChildSpec("b", Stuck, args=(entered, release), shutdown=0.05, retry=NO_BACKOFF),
        ChildSpec("c", Worker, retry=NO_BACKOFF),
    ]
    sup = system.supervise("/s", strategy, 10, 60, specs)  # type: ignore[arg-type]
    system.tell("/s/b", "block")
    assert entered.wait(5)
    try:
        with watch(system, {"actor_restarted"}) as sub:
            system.tell("/s/a", "crash")
            wait(sub, "actor_restarted", "/s/a")
            rows = statuses(sup)  # the supervisor moved on while b is still stuck
            assert rows == {"a": "running", "b": "restarting", "c": "restarting"}
            release.set()
            wait(sub, "actor_restarted", "/s/b")
            wait(sub, "actor_restarted", "/s/c")
    finally:
        release.set()
    assert statuses(sup) == {"a": "running", "b": "running", "c": "running"}
    assert [system.ask(f"/s/{i}", "get", timeout=5) for i in ("a", "b", "c")] == [2, 2, 2]
    assert system.inspect("/s")["state"]["restarts_in_window"] == 1  # b's end is not a crash


# --- 3. durable messages on terminate / start failure ---------------------------------------------


class Sink(Actor):
    """Records every message it handles; 'crash' raises. ``fail_start`` fails on_start."""

    handled: list[Any] = []
    fail_start = False

    def on_start(self) -> None:
        if Sink.fail_start:
            raise ConnectionError("venue unreachable at start")

    def on_receive(self, message: Any) -> Any:
        if message == "crash":
            raise ConnectionError("crash")
        Sink.handled.append(message)
        return message


@pytest.fixture
def sink() -> Iterator[type[Sink]]:
    Sink.handled = []
    Sink.fail_start = False
    yield Sink
    Sink.fail_start = False


def _durable_sink(**kwargs: Any) -> ChildSpec:
    return ChildSpec("d", Sink, mailbox=Mailbox(durable=True), **kwargs)


def _queue_behind_backoff(system: ActorSystem, messages: list[str]) -> None:
    """Crash /s/d into a long backoff, then queue (and journal) ``messages`` for it."""
    with watch(system, {"child_restarting"}) as sub:
        system.tell("/s/d", "crash")
        wait(sub, "child_restarting", "/s/d")
    for message in messages:
        system.tell("/s/d", message)


def test_terminate_child_dead_letters_its_queued_durable_messages(
    system: ActorSystem, sink: type[Sink]
) -> None:
    """terminate_child stops for good: queued durable messages are dead-lettered, not kept."""
    sup = system.supervise("/s", "one_for_one", 5, 60, [_durable_sink(retry=LONG_BACKOFF)])
    _queue_behind_backoff(system, ["m1", "m2", "m3"])
    sup.terminate_child("d")
    system.storage.flush()
    stopped = system.dead_letters.list(reason="actor_stopped", target="/s/d")
    assert [d.message for d in stopped] == ["m1", "m2", "m3"]
    assert system.post.journal.depth("/s/d") == 0
    counts = system.counters()
    assert counts["journaled"] == 0
    assert counts["sent"] == counts["handled"] + counts["dead_lettered"] + counts["queued"]


def test_node_shutdown_keeps_a_supervised_childs_durable_messages_for_the_next_boot(
    tmp_path: Path, sink: type[Sink]
) -> None:
    var = tmp_path / "var"
    with ActorSystem(var_dir=var, sync=False) as system:
        system.supervise("/s", "one_for_one", 5, 60, [_durable_sink(retry=LONG_BACKOFF)])
        _queue_behind_backoff(system, ["m1", "m2"])
    assert system.counters()["journaled"] == 2
    with ActorSystem(var_dir=var, sync=False) as system:
        system.supervise("/s", "one_for_one", 5, 60, [_durable_sink(retry=NO_BACKOFF)])
        assert system.ask("/s/d", "last", timeout=5) == "last"
        assert system.dead_letters.list(reason="actor_stopped") == []
    assert sink.handled == ["m1", "m2", "last"]


def test_start_failure_under_a_supervisor_keeps_replayed_durable_messages_journaled(
    tmp_path: Path, sink: type[Sink]
) -> None:
    """A child that fails to start at boot keeps its replayed intents for the next try.

    They belong to the address: a failed start (at boot, or by start_child)
    leaves them in the journal, and the next cell at that path replays them.
    """
    var = tmp_path / "var"
    with ActorSystem(var_dir=var, sync=False) as system:
        system.supervise("/s", "one_for_one", 5, 60, [_durable_sink(retry=LONG_BACKOFF)])
        _queue_behind_backoff(system, ["m1", "m2"])
    sink.fail_start = True
    with ActorSystem(var_dir=var, sync=False) as system:
        with pytest.raises(SupervisorStartFailed):
            system.supervise("/s", "one_for_one", 5, 60, [_durable_sink(retry=NO_BACKOFF)])
        sup = system.supervise("/s", "one_for_one", 5, 60)
        with pytest.raises(ConnectionError):
            sup.start_child(_durable_sink(retry=NO_BACKOFF))
        system.storage.flush()
        assert system.dead_letters.list(reason="actor_stopped") == []
        assert system.post.journal.depth("/s/d") == 2
    sink.fail_start = False
    with ActorSystem(var_dir=var, sync=False) as system:
        system.supervise("/s", "one_for_one", 5, 60, [_durable_sink(retry=NO_BACKOFF)])
        assert system.ask("/s/d", "last", timeout=5) == "last"
    assert sink.handled == ["m1", "m2", "last"]


# --- 4c. errors escaping the actor loop -----------------------------------------------------------


class ExitsInOnStop(Actor):
    def on_receive(self, message: Any) -> Any:
        self.stop()
        return self.incarnation

    def on_stop(self) -> None:
        if self.incarnation == 1:
            raise SystemExit("on_stop called sys.exit")


def test_error_escaping_the_actor_loop_is_reported_as_a_crash_with_that_error(
    system: ActorSystem,
) -> None:
    system.supervise("/s", "one_for_one", 5, 60, [ChildSpec("x", ExitsInOnStop, retry=NO_BACKOFF)])
    with watch(system, {"child_restarting", "actor_restarted"}) as sub:
        assert system.ask("/s/x", "stop", timeout=5) == 1
        restarting = wait(sub, "child_restarting", "/s/x")
        wait(sub, "actor_restarted", "/s/x")
    assert restarting.fields["reason"] == "crashed"
    assert "on_stop called sys.exit" in restarting.fields["error"]
    failures = system.inspect("/s/x")["recent_failures"]
    assert [f["error_type"] for f in failures] == ["SystemExit"]


class ExitsInPreRestart(Actor):
    seen: list[tuple[str, int]] = []

    def on_receive(self, message: Any) -> Any:
        ExitsInPreRestart.seen.append((message, self.envelope.attempt if self.envelope else 0))
        if self.incarnation == 1:
            raise ConnectionError("first incarnation fails")
        return self.incarnation

    def pre_restart(self, exc: BaseException) -> None:
        raise SystemExit("pre_restart called sys.exit")


def test_system_exit_in_pre_restart_still_redelivers_the_failing_message(
    system: ActorSystem,
) -> None:
    ExitsInPreRestart.seen = []
    retry = Retry(max_attempts=2, backoff="fixed", base=0.0, jitter=0.0)
    system.supervise("/s", "one_for_one", 5, 60, [ChildSpec("x", ExitsInPreRestart, retry=retry)])
    with watch(system, {"child_restarting", "actor_restarted"}) as sub:
        system.tell("/s/x", "work")
        restarting = wait(sub, "child_restarting", "/s/x")
        wait(sub, "actor_restarted", "/s/x")
    assert system.ask("/s/x", "get", timeout=5) == 2
    assert ExitsInPreRestart.seen[:2] == [("work", 1), ("work", 2)]  # redelivered, not lost
    assert restarting.fields["reason"] == "crashed"
    assert "pre_restart called sys.exit" in restarting.fields["error"]


# --- 5. a half-open trial whose on_start times out ------------------------------------------------


class SlowStart(Actor):
    """on_start blocks in one C call while ``SlowStart.gate`` is set (a hung connect)."""

    gate: threading.Event | None = None

    def on_start(self) -> None:
        gate = SlowStart.gate
        if gate is not None:
            gate.wait()  # uninterruptible: ActorKilled lands once it returns

    def on_receive(self, message: Any) -> Any:
        if message == "fail":
            raise ConnectionError("venue down")
        return message


def _opened(event: Event) -> bool:
    return event.kind == "breaker_state" and event.fields["new"] == "open"


def test_half_open_trial_whose_on_start_times_out_reopens_with_a_grown_timeout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A trial that cannot start is a failed trial, even when the stuck start ends late.

    The first trial's on_start hangs past the start timeout and cannot be
    interrupted; the second trial finds it still there. When the hung start
    then returns, the second trial used to report success with no
    incarnation running: half-open for ever.
    """
    monkeypatch.setattr(cell_module, "_INTERRUPT_GRACE", 0.05, raising=False)
    monkeypatch.setattr(cell_module, "_KILL_WAIT", 0.05, raising=False)
    gate = threading.Event()
    starts = {"n": 0}
    original = ActorCell.start_incarnation

    def counting(self: ActorCell) -> Any:
        result = original(self)
        if self.path == "/s/v":
            starts["n"] += 1
            if starts["n"] == 3:  # the second trial, while the first is still hung
                SlowStart.gate = None
                gate.set()
        return result

    monkeypatch.setattr(ActorCell, "start_incarnation", counting)
    spec = ChildSpec(
        "v",
        SlowStart,
        retry=NO_BACKOFF,
        breaker=Breaker(reset_timeout=0.05, multiplier=2.0, max_reset_timeout=5.0),
    )
    try:
        with ActorSystem(var_dir=tmp_path / "var", sync=False, start_timeout=0.2) as system:
            SlowStart.gate = None
            system.supervise("/s", "one_for_one", 0, 60, [spec])
            SlowStart.gate = gate
            with watch(system, {"breaker_state"}) as sub:
                system.tell("/s/v", "fail")
                timeouts = []
                for _ in range(3):  # tripped, trial 1 timed out, trial 2 found it hung
                    event = sub.wait_for(_opened, timeout=10)
                    assert event is not None
                    timeouts.append(event.fields["reset_timeout_s"])
                assert timeouts == [0.05, 0.1, 0.2]
                half_open = sub.wait_for(lambda e: e.fields["new"] == "half_open", timeout=5)
                assert half_open is not None  # trial 3: the start no longer hangs
                assert system.ask("/s/v", "trial", timeout=5) == "trial"
                closed = sub.wait_for(lambda e: e.fields["new"] == "closed", timeout=5)
                assert closed is not None
            assert system.stats("/s/v")["status"] == "running"
    finally:
        SlowStart.gate = None
        gate.set()


# --- 6. one_for_all: terminate_child on the crashed child during the group's backoff --------------


def test_terminate_child_during_group_backoff_leaves_siblings_terminated_and_restartable(
    system: ActorSystem,
) -> None:
    """OTP: the siblings a pending group restart had stopped show as terminated (undefined).

    terminate_child on the crashed child cancels the group's retry; nothing
    may stay ``restarting`` with no retry pending, and restart_child starts
    each of them again properly.
    """
    specs = [
        ChildSpec("a", Worker, retry=LONG_BACKOFF),
        ChildSpec("b", Worker, retry=NO_BACKOFF),
        ChildSpec("c", Worker, retry=NO_BACKOFF),
    ]
    sup = system.supervise("/s", "one_for_all", 10, 60, specs)
    with watch(system, {"child_restarting"}) as sub:
        system.tell("/s/a", "crash")
        wait(sub, "child_restarting", "/s/a")
    assert statuses(sup) == {"a": "restarting", "b": "restarting", "c": "restarting"}
    sup.terminate_child("a")
    assert statuses(sup) == {"a": "undefined", "b": "undefined", "c": "undefined"}
    assert sup.count_children()["active"] == 0
    for child_id in ("b", "c", "a"):
        assert sup.restart_child(child_id).path == f"/s/{child_id}"
    assert statuses(sup) == {"a": "running", "b": "running", "c": "running"}
    assert [system.ask(f"/s/{i}", "get", timeout=5) for i in ("a", "b", "c")] == [1, 1, 1]
