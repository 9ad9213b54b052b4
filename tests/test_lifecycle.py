"""Addresses, restarts, stops and dead targets."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from phalanx import (
    Actor,
    ActorDead,
    ActorSystem,
    AlreadyStarted,
    ConfigError,
    Mailbox,
    Retry,
    UnknownMessage,
)


class Counter(Actor):
    """The DESIGN section 9 example actor."""

    def on_start(self) -> None:
        self.n = 0

    def on_receive(self, message: Any) -> Any:
        if message == "inc":
            self.n += 1
            return None
        if message == "get":
            return self.n
        if message == "boom":
            raise ConnectionError("transient")
        return super().on_receive(message)


def test_ref_reaches_new_incarnation_after_kill(system: ActorSystem) -> None:
    ref = system.spawn(Counter, "/workers/counter")
    ref.tell("inc")
    assert ref.ask("get", timeout=5) == 1
    assert system.kill("/workers/counter")
    assert ref.ask("get", timeout=5) == 0
    stats = system.stats("/workers/counter")
    assert stats["restarts"] == 1
    assert stats["incarnation"] == 2
    assert stats["status"] == "running"


def test_kill_keeps_queued_messages_for_next_incarnation(system: ActorSystem) -> None:
    gate = threading.Event()
    entered = threading.Event()

    class Holder(Actor):
        def on_start(self) -> None:
            self.got: list[Any] = []

        def on_receive(self, message: Any) -> Any:
            if message == "hold":
                entered.set()
                gate.wait(10)
                return None
            if message == "got":
                return self.got
            self.got.append(message)
            return None

    ref = system.spawn(Holder, "/holder")
    ref.tell("hold")
    assert entered.wait(10)
    for i in range(3):
        ref.tell(i)
    system.kill("/holder")
    gate.set()
    assert ref.ask("got", timeout=5) == [0, 1, 2]
    assert ref.stats()["incarnation"] == 2


def test_stats_fields_and_unknown_path(system: ActorSystem) -> None:
    system.spawn(Counter, "/c", mailbox=Mailbox(capacity=7))
    stats = system.stats("/c")
    for key in (
        "status",
        "mailbox_depth",
        "mailbox_capacity",
        "processed",
        "restarts",
        "incarnation",
        "breaker",
    ):
        assert key in stats
    assert stats["mailbox_capacity"] == 7
    assert stats["incarnation"] == 1
    with pytest.raises(LookupError):
        system.stats("/nope")


def test_stop_dead_letters_every_queued_message_as_actor_stopped(system: ActorSystem) -> None:
    gate = threading.Event()
    entered = threading.Event()

    class Holder(Actor):
        def on_receive(self, message: Any) -> Any:
            if message == "hold":
                entered.set()
                gate.wait(10)
            return None

    system.spawn(Holder, "/h")
    system.tell("/h", "hold")
    assert entered.wait(10)
    queued_ask = system.ask_future("/h", "queued-ask")
    for i in range(50):
        system.tell("/h", i)
    stopper = threading.Thread(target=system.stop, args=("/h",), name="test-stopper")
    stopper.start()
    gate.set()
    stopper.join(10)
    with pytest.raises(ActorDead):
        queued_ask.get(timeout=5)
    system.storage.flush()
    stopped = system.dead_letters.list(reason="actor_stopped", target="/h", limit=1000)
    assert [r.message for r in stopped] == ["queued-ask", *range(50)]
    assert not system.is_alive("/h")


def test_tell_to_unknown_path_is_dead_lettered_as_dead_target(system: ActorSystem) -> None:
    system.tell("/nobody/home", {"x": 1})
    with pytest.raises(ActorDead):
        system.ask("/nobody/home", "q", timeout=5)
    system.storage.flush()
    records = system.dead_letters.list(reason="dead_target")
    assert [r.message for r in records] == [{"x": 1}, "q"]
    assert all(r.target == "/nobody/home" for r in records)


def test_pykka_actor_ref_tells_queued_at_stop_are_dead_lettered_and_later_ones_raise(
    system: ActorSystem,
) -> None:
    import pykka

    gate = threading.Event()
    entered = threading.Event()

    class Exposes(Actor):
        def on_receive(self, message: Any) -> Any:
            if message == "hold":
                entered.set()
                gate.wait(10)
            return self.actor_ref

    system.spawn(Exposes, "/exposes")
    pykka_ref = system.ask("/exposes", "ref", timeout=5)
    system.tell("/exposes", "hold")
    assert entered.wait(10)
    pykka_ref.tell("queued-via-pykka")  # pykka itself would drop this at stop
    stopper = threading.Thread(target=system.stop, args=("/exposes",), name="test-stopper")
    stopper.start()
    gate.set()
    stopper.join(10)
    with pytest.raises(pykka.ActorDeadError):  # pykka's own contract: loud, not silent
        pykka_ref.tell("after-stop")
    system.storage.flush()
    records = system.dead_letters.list(target="/exposes")
    assert [(r.reason, r.message) for r in records] == [("actor_stopped", "queued-via-pykka")]


def test_self_stop_is_a_normal_exit(system: ActorSystem) -> None:
    done = threading.Event()

    class Quitter(Actor):
        def on_receive(self, message: Any) -> Any:
            self.stop()
            return "bye"

        def on_stop(self) -> None:
            done.set()

    system.spawn(Quitter, "/quitter")
    assert system.ask("/quitter", "quit", timeout=5) == "bye"
    assert done.wait(5)
    events = system.events.recent(kind="actor_stopped")
    assert events
    assert events[-1].fields["reason"] == "normal"


def test_spawn_raises_when_first_on_start_fails_and_leaves_nothing(system: ActorSystem) -> None:
    class Broken(Actor):
        def on_start(self) -> None:
            raise RuntimeError("cannot start")

    with pytest.raises(RuntimeError, match="cannot start"):
        system.spawn(Broken, "/broken")
    assert not system.is_alive("/broken")
    with pytest.raises(LookupError):
        system.stats("/broken")


def test_spawn_on_a_live_path_is_refused(system: ActorSystem) -> None:
    system.spawn(Counter, "/dup")
    with pytest.raises(AlreadyStarted):
        system.spawn(Counter, "/dup")


@pytest.mark.parametrize("bad", ["", "no-slash", "/trailing/", "/sp ace", "//x"])
def test_invalid_paths_are_refused(system: ActorSystem, bad: str) -> None:
    with pytest.raises(ValueError, match="invalid actor path"):
        system.spawn(Counter, bad)


def test_unknown_message_fails_the_ask_and_dead_letters_the_tell(system: ActorSystem) -> None:
    ref = system.spawn(Counter, "/c")
    with pytest.raises(UnknownMessage, match="does not handle"):
        ref.ask(3.5, timeout=5)
    ref.tell(object())
    ref.tell("inc")
    assert ref.ask("get", timeout=5) == 1
    assert ref.stats()["restarts"] == 0
    system.storage.flush()
    [record] = system.dead_letters.list(reason="validation_failed")
    assert record.redrivable is False
    assert record.error_type is not None
    assert record.error_type.endswith("UnknownMessage")


def test_instantiating_an_actor_outside_a_system_is_refused() -> None:
    with pytest.raises(RuntimeError, match="spawn"):
        Counter()


def test_unusable_var_dir_is_a_config_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a dir")
    with pytest.raises(ConfigError, match="not usable"):
        ActorSystem(var_dir=blocker / "var").start()


def test_second_system_on_same_var_dir_is_refused(tmp_path: Path) -> None:
    with ActorSystem(var_dir=tmp_path, sync=False), pytest.raises(ConfigError, match="in use"):
        ActorSystem(var_dir=tmp_path, sync=False).start()


def test_failed_start_is_a_config_error_and_releases_storage_lock_and_threads(
    tmp_path: Path,
) -> None:
    before = set(threading.enumerate())
    bad = ActorSystem(var_dir=tmp_path, log_retention_days={"bogus": 3})
    with pytest.raises(ConfigError, match="bogus"):
        bad.start()
    assert set(threading.enumerate()) <= before  # the storage writer is gone
    with ActorSystem(var_dir=tmp_path) as system:  # lock and LMDB env released
        ref = system.spawn(Counter, "/counter")
        ref.tell("inc")
        assert ref.ask("get", timeout=5) == 1


def test_shutdown_stops_actors_in_reverse_spawn_order(tmp_path: Path) -> None:
    order: list[str] = []

    class Recorder(Actor):
        def on_stop(self) -> None:
            order.append(self.path)

    with ActorSystem(var_dir=tmp_path, sync=False) as system:
        for name in ("a", "b", "c"):
            system.spawn(Recorder, f"/{name}")
    assert order == ["/c", "/b", "/a"]


def test_conservation_counters_balance_after_shutdown(tmp_path: Path) -> None:
    with ActorSystem(
        var_dir=tmp_path, sync=False, retry=Retry(max_attempts=2, base=0.0, jitter=0.0)
    ) as system:
        ref = system.spawn(Counter, "/c", mailbox=Mailbox(capacity=5))
        for _ in range(200):
            ref.tell("inc")
            ref.tell("boom")
        system.tell("/gone", "x")
    counters = system.counters()
    assert counters["sent"] == counters["handled"] + counters["dead_lettered"]
    assert counters["queued"] == 0


def test_sends_before_start_and_after_shutdown_raise_instead_of_vanishing(
    tmp_path: Path,
) -> None:
    system = ActorSystem(var_dir=tmp_path, sync=False)
    with pytest.raises(ActorDead, match="not started"):
        system.tell("/x", "early")
    with system:
        system.spawn(Counter, "/c")
    with pytest.raises(ActorDead, match="shut down"):
        system.tell("/c", "late")
    with pytest.raises(ActorDead, match="shut down"):
        system.ask("/c", "late", timeout=1)


def test_resolved_dead_letters_past_retention_are_purged_at_start(tmp_path: Path) -> None:
    with ActorSystem(var_dir=tmp_path, sync=False) as system:
        system.tell("/nobody", "a")
        system.tell("/nobody", "b")
        system.storage.flush()
        first, second = system.dead_letters.list()
        system.dead_letters.resolve(first.id, "checked by operator")
    with ActorSystem(var_dir=tmp_path, sync=False, resolved_retention_s=0.0) as system:
        system.storage.flush()
        remaining = system.dead_letters.list()
    assert [r.id for r in remaining] == [second.id]


def test_shutdown_cuts_off_a_hung_on_stop_and_leaves_no_thread(tmp_path: Path) -> None:
    release = threading.Event()
    entered = threading.Event()

    class Hung(Actor):
        def on_stop(self) -> None:
            entered.set()
            while not release.wait(0.01):  # stuck in Python code: interruptible
                pass

    system = ActorSystem(var_dir=tmp_path, sync=False, shutdown_timeout=0.3)
    with system:
        system.spawn(Hung, "/hung")
        system.spawn(Counter, "/after")
    # shutdown(timeout) bounds the whole stop; the autouse fixture checks threads.
    assert entered.is_set()
    assert not release.is_set()
    assert any(e.kind == "actor_stopped" and e.path == "/hung" for e in system.events.recent(50))


class Watcher(Actor):
    """Answers whether a stop is queued, once ``release`` is set."""

    def __init__(self, entered: threading.Event, release: threading.Event) -> None:
        super().__init__()
        self.entered, self.release = entered, release

    def on_receive(self, message: Any) -> Any:
        before = self.stop_pending
        self.entered.set()
        self.release.wait(5)
        return (before, self.stop_pending)


def test_stop_pending_turns_true_once_a_stop_is_queued_for_the_actor(system: ActorSystem) -> None:
    entered, release = threading.Event(), threading.Event()
    ref = system.spawn(Watcher, "/watcher", entered, release)
    future = system.ask_future("/watcher", "check")
    assert entered.wait(5)
    stopper = threading.Thread(target=system.stop, args=("/watcher",))
    stopper.start()
    inbox = system._cells["/watcher"].inbox
    try:
        for _ in range(500):  # until the stop is queued (bounded: 5 s)
            if inbox.control_pending:
                break
            stopper.join(0.01)
        assert inbox.control_pending
    finally:
        release.set()
        stopper.join(5)
    assert future.get(timeout=5) == (False, True)
    assert not system.is_alive(ref.path)
