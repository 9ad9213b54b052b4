"""IncarnationThread: a start that does not wait, with the stdlib Thread's semantics otherwise."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from phalanx import Actor, ActorSystem
from phalanx.runtime import _thread as thread_module
from phalanx.runtime._thread import FAST_START, IncarnationThread

_t: Any = threading


def _run(target: Callable[[], Any], name: str = "phalanx-test", daemon: bool = False) -> Any:
    thread = IncarnationThread(target, name, daemon=daemon)
    thread.start()
    thread.join(5.0)
    assert not thread.is_alive()
    return thread


def test_the_fast_start_is_on_for_cpython_3_11() -> None:
    import sys

    on_3_11 = sys.version_info[:2] == (3, 11)
    assert on_3_11 is FAST_START


@pytest.mark.parametrize("daemon", [False, True])
def test_it_runs_its_target_once_with_the_identity_a_stdlib_thread_has(daemon: bool) -> None:
    seen: list[tuple[threading.Thread, int, bool, str]] = []
    local = threading.local()

    def target() -> None:
        local.value = "mine"
        me = threading.current_thread()
        seen.append((me, threading.get_ident(), me.daemon, me.name))

    thread = _run(target, "phalanx-ident", daemon)
    stdlib = threading.Thread(target=lambda: None, name="phalanx-ident", daemon=daemon)
    stdlib.start()
    stdlib.join()
    assert seen == [(thread, thread.ident, daemon, "phalanx-ident")]
    assert thread.native_id is not None
    assert not hasattr(local, "value")  # the thread's own threading.local
    assert "stopped" in repr(thread)
    assert "stopped" in repr(stdlib)
    assert thread not in threading.enumerate()


def test_a_thread_starts_only_once() -> None:
    thread = _run(lambda: None)
    with pytest.raises(RuntimeError, match="only be started once"):
        thread.start()


def test_join_before_start_raises_as_the_stdlib_does() -> None:
    thread = IncarnationThread(lambda: None, "phalanx-unstarted", daemon=False)
    assert not thread.is_alive()
    with pytest.raises(RuntimeError):
        thread.join(0.01)


@pytest.mark.skipif(not FAST_START, reason="the window exists only with the fast start")
def test_is_alive_and_join_cover_the_window_before_the_bootstrap(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    launched: list[tuple[Callable[..., Any], tuple[Any, ...]]] = []
    real_start = _t._start_new_thread
    monkeypatch.setattr(_t, "_start_new_thread", lambda fn, args: launched.append((fn, args)))
    ran = threading.Event()
    thread = IncarnationThread(ran.set, "phalanx-window", daemon=False)
    thread.start()  # the OS thread is "created" but has not run its bootstrap
    assert thread.is_alive()
    assert thread.ident is None
    assert thread in threading.enumerate()  # in limbo, as the stdlib shows it
    thread.join(0.01)  # times out instead of raising "before it is started"
    assert thread.is_alive()
    fn, args = launched[0]
    real_start(fn, args)
    thread.join(5.0)
    assert ran.is_set()
    assert not thread.is_alive()


@pytest.mark.skipif(not FAST_START, reason="only the fast start changes the bookkeeping")
def test_shutdown_locks_keep_live_threads_and_stay_bounded_without_joins() -> None:
    release = threading.Event()
    live = IncarnationThread(lambda: release.wait(5.0), "phalanx-live", daemon=False)
    live.start()
    try:
        # Threads nobody joins leave a released lock behind; the sweep bounds them.
        for _ in range(300):
            done = threading.Event()
            stray = IncarnationThread(done.set, "phalanx-stray", daemon=False)
            stray.start()
            done.wait(5.0)
        while live._tstate_lock is None:  # its bootstrap has not run yet
            release.wait(0.001)  # sleep-ok: a bounded poll for the bootstrap
        with _t._shutdown_locks_lock:
            locks = set(_t._shutdown_locks)
            released = sum(1 for lock in locks if not lock.locked())
        assert live._tstate_lock in locks  # interpreter exit still waits for it
        assert released <= 2 * (len(locks) - released) + 64
    finally:
        release.set()
        live.join(5.0)
    with _t._shutdown_locks_lock:
        assert live._tstate_lock is None
    joined = _run(lambda: None)
    with _t._shutdown_locks_lock:
        assert all(lock.locked() or lock is not joined for lock in _t._shutdown_locks)


def test_a_daemon_thread_never_enters_the_shutdown_locks() -> None:
    before = set(_t._shutdown_locks)
    hold = threading.Event()
    inside: list[bool] = []

    def target() -> None:
        lock = threading.current_thread()._tstate_lock  # type: ignore[attr-defined]
        inside.append(lock in _t._shutdown_locks)
        hold.set()

    _run(target, daemon=True)
    assert hold.is_set()
    assert inside == [False]
    assert set(_t._shutdown_locks) - before == set()


def test_the_start_flag_survives_the_fork_reinit() -> None:
    thread = _run(lambda: None)
    assert thread._started.is_set()  # type: ignore[attr-defined]
    thread._reset_internal_locks(False)  # type: ignore[attr-defined]  # what _after_fork calls
    assert thread._started.is_set()  # type: ignore[attr-defined]
    assert thread._started.wait(0.01)  # type: ignore[attr-defined]
    assert not thread.is_alive()


def test_without_the_fast_start_it_is_a_plain_stdlib_thread(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(thread_module, "FAST_START", False)
    thread = IncarnationThread(lambda: None, "phalanx-plain", daemon=False)
    assert isinstance(thread._started, threading.Event)  # type: ignore[attr-defined]
    thread.start()
    thread.join(5.0)
    assert not thread.is_alive()


class _Stopper(Actor):
    def on_receive(self, message: Any) -> Any:
        if message == "stop":
            self.stop()
            return None
        return threading.current_thread()


def test_every_incarnation_gets_its_own_incarnation_thread(tmp_path: Path) -> None:
    with ActorSystem(var_dir=tmp_path, sync=False) as system:
        ref = system.spawn(_Stopper, "/stopper")
        first = ref.ask("thread")
        assert isinstance(first, IncarnationThread)
        assert first.name == "phalanx:/stopper#1"
        system.kill("/stopper")
        second = ref.ask("thread")  # taken by the next incarnation: a kill goes first
        assert isinstance(second, IncarnationThread)
        assert second is not first
        assert second.name.startswith("phalanx:/stopper#")
        first.join(5.0)
        assert not first.is_alive()


def _check_urn(urn: str) -> None:
    import uuid

    assert urn.startswith("urn:uuid:")
    parsed = uuid.UUID(urn[len("urn:uuid:") :])
    assert parsed.version == 4
    assert parsed.variant == uuid.RFC_4122
    assert parsed.urn == urn


def test_batched_urns_are_valid_and_unique_across_refills_and_threads() -> None:
    from phalanx.runtime import _actor

    made: list[str] = []

    def make() -> None:
        made.extend(_actor._new_urn() for _ in range(3 * _actor._URN_BATCH))

    threads = [threading.Thread(target=make, name=f"urns-{i}") for i in range(4)]
    for thread in threads:
        thread.start()
    make()
    for thread in threads:
        thread.join(10.0)
    assert len(made) == 5 * 3 * _actor._URN_BATCH
    assert len(set(made)) == len(made)
    for urn in made[:: _actor._URN_BATCH // 4]:
        _check_urn(urn)


def test_a_forked_child_draws_fresh_urn_bytes() -> None:
    import os

    from phalanx.runtime import _actor

    _actor._new_urn()  # the pool holds bytes now
    assert _actor._urn_hex
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report whether it kept the parent's bytes
        try:
            os.write(write, b"0" if _actor._urn_hex else b"1")  # cleared by the fork hook
        finally:
            os._exit(0)
    os.close(write)
    try:
        answer = os.read(read, 1)
    finally:
        os.close(read)
        os.waitpid(pid, 0)
    assert answer == b"1"
