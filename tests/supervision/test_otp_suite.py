"""Ports of Erlang/OTP ``supervisor_SUITE`` cases, named after them.

Each test asserts what its OTP case asserts: start/stop order, exit reasons,
counts and return values. Where Python forces another mechanism, the
docstring says so. Common differences:
- a child is a thread: "kill" ends it at the next message boundary, and code
  stuck past a shutdown timeout is interrupted with an async exception;
- a worker cannot exit with reason ``shutdown`` by itself; the ``shutdown``
  cases use a nested supervisor, which exits with ``shutdown`` when its
  intensity is exceeded, exactly as in OTP;
- OTP returns ``{error, Reason}``; phalanx raises one typed error per reason.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from phalanx import (
    ActorSystem,
    AlreadyPresent,
    AlreadyStarted,
    ChildNotFound,
    ChildRunning,
    ChildSpec,
    ConfigError,
    Retry,
    SupervisorRef,
    SupervisorStartFailed,
)
from phalanx.runtime import Actor, Event, Subscription

NO_BACKOFF = Retry(max_attempts=1, backoff="fixed", base=0.0, jitter=0.0)
# Start failures still to inject, by path: shared across incarnations.
FAIL_STARTS: dict[str, int] = {}
LOG: list[tuple[str, str]] = []


class Worker(Actor):
    """Logs start/stop; 'crash' raises, 'stop' exits normally, 'get' answers."""

    def on_start(self) -> None:
        left = FAIL_STARTS.get(self.path, 0)
        if left:
            FAIL_STARTS[self.path] = left - 1
            raise ConnectionError(f"start of {self.path} fails ({left} left)")
        LOG.append(("start", self.path))

    def on_stop(self) -> None:
        LOG.append(("stop", self.path))

    def on_receive(self, message: Any) -> Any:
        if message == "crash":
            raise ConnectionError(f"{self.path} crashed")
        if message == "stop":
            self.stop()
            return "stopping"
        return (self.path, self.incarnation)


@pytest.fixture(autouse=True)
def _fresh_state() -> None:
    FAIL_STARTS.clear()
    LOG.clear()


def spec(child_id: str, **kw: Any) -> ChildSpec:
    kw.setdefault("retry", NO_BACKOFF)
    return ChildSpec(child_id, Worker, **kw)


@contextmanager
def watch(system: ActorSystem, *kinds: str) -> Iterator[Subscription]:
    sub = system.events.subscribe(kinds=set(kinds))
    try:
        yield sub
    finally:
        sub.close()


def wait(sub: Subscription, kind: str, path: str, timeout: float = 5.0) -> Event:
    event = sub.wait_for(lambda e: e.kind == kind and e.path == path, timeout=timeout)
    assert event is not None, f"no {kind} for {path} within {timeout}s"
    return event


def incarnation(system: ActorSystem, path: str) -> int:
    answer = system.ask(path, "get", timeout=5)
    assert isinstance(answer, tuple)
    return int(answer[1])


def statuses(sup: SupervisorRef) -> dict[str, str]:
    return {c["id"]: c["status"] for c in sup.which_children()}


# --- strategies ----------------------------------------------------------------


def test_one_for_one(system: ActorSystem) -> None:
    """one_for_one: only the failed child is restarted."""
    system.supervise("/s", "one_for_one", 3, 5, [spec("a"), spec("b")])
    with watch(system, "actor_restarted") as sub:
        system.tell("/s/a", "crash")
        wait(sub, "actor_restarted", "/s/a")
    assert incarnation(system, "/s/a") == 2
    assert incarnation(system, "/s/b") == 1


def test_one_for_all(system: ActorSystem) -> None:
    """one_for_all: every child is terminated (reverse order) and restarted (start order)."""
    system.supervise("/s", "one_for_all", 3, 5, [spec("a"), spec("b"), spec("c")])
    LOG.clear()
    with watch(system, "actor_restarted") as sub:
        system.tell("/s/b", "crash")
        for path in ("/s/a", "/s/b", "/s/c"):
            wait(sub, "actor_restarted", path)
    assert [incarnation(system, p) for p in ("/s/a", "/s/b", "/s/c")] == [2, 2, 2]
    # b crashed (no on_stop); c then a are stopped in reverse; all start in order.
    assert LOG == [
        ("stop", "/s/c"),
        ("stop", "/s/a"),
        ("start", "/s/a"),
        ("start", "/s/b"),
        ("start", "/s/c"),
    ]


def test_rest_for_one(system: ActorSystem) -> None:
    """rest_for_one: the failed child and the ones started after it are restarted."""
    system.supervise("/s", "rest_for_one", 3, 5, [spec("a"), spec("b"), spec("c")])
    LOG.clear()
    with watch(system, "actor_restarted") as sub:
        system.tell("/s/b", "crash")
        wait(sub, "actor_restarted", "/s/c")
    assert [incarnation(system, p) for p in ("/s/a", "/s/b", "/s/c")] == [1, 2, 2]
    assert LOG == [("stop", "/s/c"), ("start", "/s/b"), ("start", "/s/c")]


def test_simple_one_for_one(system: ActorSystem) -> None:
    """simple_one_for_one: dynamic children from one template; each restarts alone."""
    sup = system.supervise("/s", "simple_one_for_one", 3, 5, [spec("w")])
    first = sup.start_child()
    second = sup.start_child(child_id="named")
    assert (first.path, second.path) == ("/s/w-1", "/s/named")
    with watch(system, "actor_restarted") as sub:
        first.tell("crash")
        wait(sub, "actor_restarted", "/s/w-1")
    assert incarnation(system, "/s/w-1") == 2
    assert incarnation(system, "/s/named") == 1


def _escalation(system: ActorSystem, strategy: str, dynamic: bool = False) -> None:
    children = [spec("w")] if dynamic else [spec("a"), spec("b")]
    sup = system.supervise("/s", strategy, 1, 5, children)  # type: ignore[arg-type]
    if dynamic:
        sup.start_child(child_id="a")
        sup.start_child(child_id="b")
    LOG.clear()
    with watch(system, "actor_restarted", "supervisor_escalated", "actor_stopped") as sub:
        system.tell("/s/a", "crash")
        wait(sub, "actor_restarted", "/s/a")
        system.tell("/s/a", "crash")  # the 2nd restart within 5 s: intensity 1 exceeded
        escalated = wait(sub, "supervisor_escalated", "/s")
        stopped = wait(sub, "actor_stopped", "/s")
    assert "intensity" in escalated.fields["reason"]
    assert stopped.fields["reason"] == "shutdown"  # the supervisor exits with shutdown
    assert not system.is_alive("/s/a")
    assert not system.is_alive("/s/b")
    assert ("stop", "/s/b") in LOG  # the surviving child was shut down, not killed


def test_one_for_one_escalation(system: ActorSystem) -> None:
    """Intensity exceeded: children stop in reverse order, the supervisor exits shutdown."""
    _escalation(system, "one_for_one")


def test_one_for_all_escalation(system: ActorSystem) -> None:
    """As one_for_one_escalation, under one_for_all."""
    _escalation(system, "one_for_all")


def test_rest_for_one_escalation(system: ActorSystem) -> None:
    """As one_for_one_escalation, under rest_for_one."""
    _escalation(system, "rest_for_one")


def test_simple_one_for_one_escalation(system: ActorSystem) -> None:
    """As one_for_one_escalation, with dynamic children."""
    _escalation(system, "simple_one_for_one", dynamic=True)


def _other_child_fails_restart(system: ActorSystem, strategy: str) -> None:
    sup = system.supervise("/s", strategy, 10, 5, [spec("a"), spec("b")])  # type: ignore[arg-type]
    FAIL_STARTS["/s/b"] = 2  # b's next two starts fail during the group restart
    with watch(system, "actor_restarted") as sub:
        system.tell("/s/a", "crash")
        wait(sub, "actor_restarted", "/s/a")
        wait(sub, "actor_restarted", "/s/b", timeout=10)
    assert FAIL_STARTS["/s/b"] == 0  # both failed starts happened, then it started
    assert statuses(sup) == {"a": "running", "b": "running"}
    window = system.inspect("/s")["state"]["restarts_in_window"]
    assert window >= 3  # the crash and both failed restart attempts count


def test_one_for_all_other_child_fails_restart(system: ActorSystem) -> None:
    """A sibling's restart fails: it stays restarting, is retried, and every try counts."""
    _other_child_fails_restart(system, "one_for_all")


def test_rest_for_one_other_child_fails_restart(system: ActorSystem) -> None:
    """As one_for_all_other_child_fails_restart, under rest_for_one."""
    _other_child_fails_restart(system, "rest_for_one")


# --- restart type x exit reason --------------------------------------------------

RESTARTED = {
    ("permanent", "normal"): True,
    ("permanent", "shutdown"): True,
    ("permanent", "abnormal"): True,
    ("permanent", "kill"): True,
    ("transient", "normal"): False,
    ("transient", "shutdown"): False,
    ("transient", "abnormal"): True,
    ("transient", "kill"): True,
    ("temporary", "normal"): False,
    ("temporary", "shutdown"): False,
    ("temporary", "abnormal"): False,
    ("temporary", "kill"): False,
}


def _restart_type_case(system: ActorSystem, restart: str, reason: str) -> None:
    if reason == "shutdown":
        # A nested supervisor exits with reason shutdown when its intensity
        # (0 here) is exceeded; a worker cannot exit with shutdown by itself.
        child = ChildSpec.supervisor("x", intensity=0, children=[spec("leaf")], restart=restart)  # type: ignore[arg-type]
    else:
        child = spec("x", restart=restart)
    sup = system.supervise("/s", "one_for_one", 5, 5, [child])
    with watch(system, "actor_restarted", "actor_stopped") as sub:
        if reason == "normal":
            system.ask("/s/x", "stop", timeout=5)
        elif reason == "abnormal":
            system.tell("/s/x", "crash")
        elif reason == "kill":
            system.kill("/s/x")
        else:
            system.tell("/s/x/leaf", "crash")
        # The first restart or final stop of /s/x tells which way the supervisor went.
        outcome = sub.wait_for(lambda e: e.path == "/s/x", timeout=5)
    assert outcome is not None
    if RESTARTED[(restart, reason)]:
        assert outcome.kind == "actor_restarted"
        assert statuses(sup)["x"] == "running"
    else:
        assert outcome.kind == "actor_stopped"
        children = statuses(sup)
        if restart == "temporary":
            assert "x" not in children  # temporary specs are forgotten
        else:
            assert children["x"] == "undefined"  # the spec is kept, not running


@pytest.mark.parametrize("reason", ["normal", "shutdown", "abnormal", "kill"])
def test_permanent(system: ActorSystem, reason: str) -> None:
    """permanent_normal/_shutdown/_abnormal/_kill: a permanent child is always restarted."""
    _restart_type_case(system, "permanent", reason)


@pytest.mark.parametrize("reason", ["normal", "shutdown", "abnormal", "kill"])
def test_transient(system: ActorSystem, reason: str) -> None:
    """transient_*: restarted only after an abnormal exit (a crash or a kill)."""
    _restart_type_case(system, "transient", reason)


@pytest.mark.parametrize("reason", ["normal", "shutdown", "abnormal", "kill"])
def test_temporary(system: ActorSystem, reason: str) -> None:
    """temporary_*: never restarted, and its spec is deleted."""
    _restart_type_case(system, "temporary", reason)


# --- administration ---------------------------------------------------------------


def test_order_of_children(system: ActorSystem) -> None:
    """Children start in list order and stop in reverse; start_child appends to the end."""
    sup = system.supervise("/s", "one_for_one", 3, 5, [spec("a"), spec("b")])
    sup.start_child(spec("c"))
    system.stop("/s")
    assert LOG == [
        ("start", "/s/a"),
        ("start", "/s/b"),
        ("start", "/s/c"),
        ("stop", "/s/c"),
        ("stop", "/s/b"),
        ("stop", "/s/a"),
    ]


def test_child_adm(system: ActorSystem) -> None:
    """start/terminate/restart/delete_child and one typed error per OTP error return."""
    sup = system.supervise("/s", "one_for_one", 3, 5, [spec("a")])
    ref = sup.start_child(spec("b"))
    assert ref.path == "/s/b"
    assert incarnation(system, "/s/b") == 1
    with pytest.raises(AlreadyStarted):
        sup.start_child(spec("b"))
    with pytest.raises(ChildRunning):
        sup.restart_child("b")
    with pytest.raises(ChildRunning):
        sup.delete_child("b")
    sup.terminate_child("b")
    assert statuses(sup) == {"a": "running", "b": "undefined"}
    with pytest.raises(AlreadyPresent):
        sup.start_child(spec("b"))
    assert sup.restart_child("b").path == "/s/b"
    assert statuses(sup)["b"] == "running"
    sup.terminate_child("b")
    sup.delete_child("b")
    assert statuses(sup) == {"a": "running"}
    with pytest.raises(ChildNotFound):
        sup.delete_child("b")
    with pytest.raises(ChildNotFound):
        sup.terminate_child("nope")
    with pytest.raises(ChildNotFound):
        sup.restart_child("nope")


def test_child_adm_simple(system: ActorSystem) -> None:
    """simple_one_for_one: start with extra args, terminate by path; the child is gone.

    OTP answers restart_child/delete_child with {error, simple_one_for_one};
    phalanx keeps no spec for a dynamic child, so they raise ChildNotFound.
    """
    sup = system.supervise("/s", "simple_one_for_one", 3, 5, [spec("w")])
    child = sup.start_child()
    assert sup.count_children()["active"] == 1
    sup.terminate_child(child)
    assert sup.which_children() == []
    with pytest.raises(ChildNotFound):
        sup.restart_child(child.path)
    with pytest.raises(ChildNotFound):
        sup.delete_child(child.path)


def test_count_children(system: ActorSystem) -> None:
    """count_children counts specs, active children, supervisors and workers."""
    sup = system.supervise(
        "/s",
        "one_for_one",
        3,
        5,
        [spec("a"), spec("b"), ChildSpec.supervisor("inner", children=[spec("c")])],
    )
    assert sup.count_children() == {"specs": 3, "active": 3, "supervisors": 1, "workers": 2}
    sup.terminate_child("b")
    assert sup.count_children() == {"specs": 3, "active": 2, "supervisors": 1, "workers": 2}


def test_count_restarting_children(system: ActorSystem) -> None:
    """A child whose restart keeps failing is restarting, not active; the supervisor answers."""
    sup = system.supervise(
        "/s",
        "one_for_one",
        100,
        5,
        [spec("a"), spec("b", retry=Retry(max_attempts=1, backoff="fixed", base=0.05, jitter=0.0))],
    )
    FAIL_STARTS["/s/b"] = 10_000
    with watch(system, "child_restarting") as sub:
        system.tell("/s/b", "crash")
        wait(sub, "child_restarting", "/s/b")
    counts = sup.count_children()
    assert counts["specs"] == 2
    assert counts["active"] == 1
    assert statuses(sup) == {"a": "running", "b": "restarting"}
    sup.terminate_child("b")  # still served while the restart loop goes on
    assert statuses(sup) == {"a": "running", "b": "undefined"}


def test_which_children(system: ActorSystem) -> None:
    """which_children lists id, path, status, type, restart and significance in order."""
    sup = system.supervise(
        "/s",
        "one_for_one",
        3,
        5,
        [spec("a"), ChildSpec.supervisor("inner", children=[spec("c")])],
    )
    assert sup.which_children() == [
        {"id": "a", "path": "/s/a", "status": "running", "type": "worker",
         "restart": "permanent", "significant": False},
        {"id": "inner", "path": "/s/inner", "status": "running", "type": "supervisor",
         "restart": "permanent", "significant": False},
    ]  # fmt: skip


# --- restart loops --------------------------------------------------------------------


def test_multiple_restarts(system: ActorSystem) -> None:
    """Restarts within the intensity are all carried out; the supervisor stays up."""
    system.supervise("/s", "one_for_one", 5, 5, [spec("a")])
    with watch(system, "actor_restarted") as sub:
        for n in range(2, 7):
            system.tell("/s/a", "crash")
            event = wait(sub, "actor_restarted", "/s/a")
            assert event.fields["incarnation"] == n
    assert system.is_alive("/s")


def _hanging_restart_loop(system: ActorSystem, dynamic: bool) -> None:
    retry = Retry(max_attempts=1, backoff="fixed", base=0.02, jitter=0.0)
    strategy = "simple_one_for_one" if dynamic else "one_for_one"
    sup = system.supervise("/s", strategy, 4, 60, [spec("a", retry=retry)])  # type: ignore[arg-type]
    if dynamic:
        sup.start_child(child_id="a")
    FAIL_STARTS["/s/a"] = 10_000
    with watch(system, "child_restarting", "supervisor_escalated", "actor_stopped") as sub:
        system.tell("/s/a", "crash")
        wait(sub, "child_restarting", "/s/a")
        assert statuses(sup) == {"a": "restarting"}  # responsive meanwhile
        wait(sub, "supervisor_escalated", "/s")  # failed attempts count: intensity 4
        wait(sub, "actor_stopped", "/s")
    assert not system.is_alive("/s/a")


def test_hanging_restart_loop(system: ActorSystem) -> None:
    """A child that never starts again: restarting, supervisor responsive, then escalation.

    OTP retries via try_again_restart messages; phalanx schedules retries
    after the child's backoff, and each failed start counts toward intensity.
    """
    _hanging_restart_loop(system, dynamic=False)


def test_hanging_restart_loop_simple(system: ActorSystem) -> None:
    """As hanging_restart_loop, for a simple_one_for_one child."""
    _hanging_restart_loop(system, dynamic=True)


# --- shutdown specs ----------------------------------------------------------------------


def test_sup_stop_brutal_kill(system: ActorSystem) -> None:
    """A brutal_kill child is ended without its on_stop running."""
    system.supervise("/s", "one_for_one", 3, 5, [spec("a", shutdown="brutal_kill"), spec("b")])
    LOG.clear()
    system.stop("/s")
    assert LOG == [("stop", "/s/b")]  # a was killed: no on_stop
    assert not system.is_alive("/s/a")


class HangingStop(Actor):
    entered = threading.Event()
    release = threading.Event()

    def on_stop(self) -> None:
        HangingStop.entered.set()
        while not HangingStop.release.wait(0.01):  # Python code: interruptible
            pass


def test_sup_stop_timeout(system: ActorSystem) -> None:
    """A child whose on_stop overruns its shutdown timeout is killed; the stop completes.

    OTP sends exit(Child, kill) after the timeout. phalanx raises ActorKilled
    inside the child's thread, which lands between bytecodes.
    """
    HangingStop.entered.clear()
    system.supervise("/s", "one_for_one", 3, 5, [ChildSpec("h", HangingStop, shutdown=0.2)])
    assert system.stop("/s", timeout=10)
    assert HangingStop.entered.is_set()
    assert not HangingStop.release.is_set()
    assert not system.is_alive("/s/h")


def test_sup_stop_infinity(system: ActorSystem) -> None:
    """A supervisor child (shutdown infinity) stops all of its own children first."""
    system.supervise(
        "/s",
        "one_for_one",
        3,
        5,
        [spec("a"), ChildSpec.supervisor("inner", children=[spec("c"), spec("d")])],
    )
    LOG.clear()
    system.stop("/s")
    assert LOG == [("stop", "/s/inner/d"), ("stop", "/s/inner/c"), ("stop", "/s/a")]


# --- trees -----------------------------------------------------------------------------------


def test_tree(system: ActorSystem) -> None:
    """Nested supervisors: paths extend, the inner one's escalation is handled by the outer."""
    system.supervise(
        "/top",
        "one_for_one",
        3,
        5,
        [ChildSpec.supervisor("mid", intensity=0, children=[spec("leaf")])],
    )
    tree = system.tree()
    [top] = tree["children"]
    assert (top["path"], top["kind"], top["strategy"]) == ("/top", "supervisor", "one_for_one")
    [mid] = top["children"]
    assert (mid["path"], mid["kind"]) == ("/top/mid", "supervisor")
    assert [leaf["path"] for leaf in mid["children"]] == ["/top/mid/leaf"]
    with watch(system, "supervisor_escalated", "actor_restarted") as sub:
        system.tell("/top/mid/leaf", "crash")  # intensity 0: mid escalates at once
        wait(sub, "supervisor_escalated", "/top/mid")
        wait(sub, "actor_restarted", "/top/mid")  # permanent: the outer restarts it
    assert incarnation(system, "/top/mid/leaf") == 1  # a fresh leaf under the new mid


# --- significant children ------------------------------------------------------------------


def _significant(system: ActorSystem, restart: str, mode: str) -> None:
    children = [
        spec("sig1", restart=restart, significant=True),
        spec("sig2", restart=restart, significant=True),
        spec("plain"),
    ]
    system.supervise("/s", "one_for_one", 3, 5, children, auto_shutdown=mode)  # type: ignore[arg-type]
    with watch(system, "supervisor_auto_shutdown", "actor_stopped") as sub:
        system.ask("/s/sig1", "stop", timeout=5)  # terminates by itself (normal)
        if mode == "all_significant":
            wait(sub, "actor_stopped", "/s/sig1")
            assert system.is_alive("/s")  # one significant child is still running
            system.ask("/s/sig2", "stop", timeout=5)
        event = wait(sub, "supervisor_auto_shutdown", "/s")
        wait(sub, "actor_stopped", "/s")
    assert "significant" in event.fields["reason"]
    assert not system.is_alive("/s/plain")


def test_significant_temporary_any(system: ActorSystem) -> None:
    """auto_shutdown=any_significant: a temporary significant child exiting stops all."""
    _significant(system, "temporary", "any_significant")


def test_significant_transient_any(system: ActorSystem) -> None:
    """auto_shutdown=any_significant with a transient child exiting normally."""
    _significant(system, "transient", "any_significant")


def test_significant_temporary_all(system: ActorSystem) -> None:
    """auto_shutdown=all_significant: only when every significant child has exited."""
    _significant(system, "temporary", "all_significant")


def test_significant_transient_all(system: ActorSystem) -> None:
    """all_significant with transient children."""
    _significant(system, "transient", "all_significant")


def test_significant_child_config_errors(system: ActorSystem) -> None:
    """OTP refuses significant children with auto_shutdown=never, or permanent ones."""
    with pytest.raises(ConfigError, match="auto_shutdown is 'never'"):
        system.supervise("/s", children=[spec("a", restart="transient", significant=True)])
    with pytest.raises(ConfigError, match="cannot be permanent"):
        system.supervise(
            "/t", children=[spec("a", significant=True)], auto_shutdown="any_significant"
        )


def test_temporary_bystander(system: ActorSystem) -> None:
    """one_for_all: a temporary sibling of a crashing child is stopped and not restarted."""
    sup = system.supervise(
        "/s", "one_for_all", 3, 5, [spec("a"), spec("bystander", restart="temporary")]
    )
    with watch(system, "actor_restarted", "actor_stopped") as sub:
        system.tell("/s/a", "crash")
        wait(sub, "actor_stopped", "/s/bystander")
        wait(sub, "actor_restarted", "/s/a")
    assert statuses(sup) == {"a": "running"}
    assert not system.is_alive("/s/bystander")


def test_static_child_failing_to_start_fails_the_supervisor(system: ActorSystem) -> None:
    """A child that fails to start fails the supervisor's start; started ones stop again."""
    FAIL_STARTS["/s/b"] = 1
    with pytest.raises(SupervisorStartFailed, match="'b' failed to start"):
        system.supervise("/s", "one_for_one", 3, 5, [spec("a"), spec("b"), spec("c")])
    assert LOG == [("start", "/s/a"), ("stop", "/s/a")]
    assert not system.is_alive("/s")
    assert not system.is_alive("/s/a")
