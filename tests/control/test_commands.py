"""Control commands against an in-process node: what each does, and its typed errors."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from phalanx import Actor, ActorSystem, Breaker, ChildSpec, Message
from phalanx.cli import main
from phalanx.cli._client import ControlClient
from phalanx.protocols.control import ControlError
from phalanx.runtime._control import ControlServer

from .conftest import poll_until

_release = threading.Event()


class CtlPing(Message):
    """A registered message type for tell/ask validation."""

    type_name = "test.control.ping"
    n: int


class IntKeys(Actor):
    """An introspect() view with int keys (not JSON-safe, but it must still arrive)."""

    def introspect(self) -> dict[str, Any]:
        return {"by_level": {1: "a", 2: "b"}}


class Blocker(Actor):
    """Blocks on ``_release`` when told "block" (to make an ask time out)."""

    def on_receive(self, message: Any) -> Any:
        if message == "block":
            _release.wait(30)
            return "released"
        if isinstance(message, CtlPing):
            return message.n * 2
        return super().on_receive(message)


@pytest.fixture
def client(server: ControlServer) -> Iterator[ControlClient]:
    with ControlClient(server.path, timeout=15) as c:
        yield c


def _code(fn: Any, *args: Any, **kwargs: Any) -> str:
    with pytest.raises(ControlError) as err:
        fn(*args, **kwargs)
    return err.value.code


def _row(client: ControlClient, path: str) -> dict[str, Any]:
    return next(r for r in client.call("ps") if r["path"] == path)


def test_ps_sorts_filters_and_limits(client: ControlClient, ctl_system: ActorSystem) -> None:
    for _ in range(3):
        ctl_system.ask("/svc/b", "x")
    ctl_system.ask("/echo", "x")
    rows = client.call("ps", sort="processed")
    assert [r["path"] for r in rows[:2]] == ["/svc/b", "/echo"]
    assert [r["path"] for r in client.call("ps", prefix="/svc/")] == ["/svc/a", "/svc/b"]
    assert len(client.call("ps", limit=2)) == 2
    assert [r["path"] for r in client.call("ps")] == ctl_system.paths()  # spawn order


def test_tell_and_ask_plain_data(client: ControlClient, ctl_system: ActorSystem) -> None:
    told = client.call("tell", path="/echo", type="plain", body={"hello": [1, 2]})
    assert told == {"path": "/echo", "type": "plain", "queued": True, "dead_lettered": False}
    reply = client.call("ask", path="/echo", type="plain", body="hi")
    assert reply["reply"] == {"echo": "hi"}
    assert ctl_system.inspect("/echo")["state"]["seen"] == 2


def test_tell_and_ask_validate_against_the_registry(
    client: ControlClient, ctl_system: ActorSystem
) -> None:
    ctl_system.spawn(Blocker, "/blocker")
    assert (
        client.call("ask", path="/blocker", type="test.control.ping", body={"n": 21})["reply"] == 42
    )
    with pytest.raises(ControlError) as err:
        client.call("tell", path="/blocker", type="test.control.ping", body={"n": "many"})
    assert err.value.code == "bad_args"
    assert "n:" in err.value.message
    with pytest.raises(ControlError) as err:
        client.call("tell", path="/blocker", type="no.such.type", body={})
    assert err.value.code == "bad_args"
    assert "test.control.ping" in err.value.message  # the known types are listed


def test_ask_errors_are_typed(client: ControlClient, ctl_system: ActorSystem) -> None:
    ctl_system.spawn(Blocker, "/blocker")
    assert _code(client.call, "ask", path="/ghost", type="plain", body=1) == "actor_dead"
    assert _code(client.call, "ask", path="/echo", type="plain", body="bad") == "handler_error"
    _release.clear()
    try:
        code = _code(client.call, "ask", path="/blocker", type="plain", body="block", timeout=0.2)
        assert code == "timeout"
    finally:
        _release.set()
    assert client.call("ask", path="/echo", type="plain", body="ok")["reply"] == {"echo": "ok"}


def test_tell_to_a_dead_path_is_a_visible_dead_letter(client: ControlClient) -> None:
    told = client.call("tell", path="/ghost", type="plain", body={"n": 1})
    assert told["dead_lettered"] is True
    records = client.call("dlq.ls", target="/ghost")
    assert [r["reason"] for r in records] == ["dead_target"]
    assert records[0]["sender"] == "/_control"


def test_kill_raises_the_restart_count(client: ControlClient, ctl_system: ActorSystem) -> None:
    before = _row(client, "/svc/a")["restarts"]
    restarted = ctl_system.events.subscribe(["actor_restarted"])
    assert client.call("kill", path="/svc/a")["killed"] is True
    assert restarted.wait_for(lambda e: e.path == "/svc/a", timeout=10) is not None
    restarted.close()
    assert _row(client, "/svc/a")["restarts"] == before + 1
    assert _code(client.call, "kill", path="/nope") == "not_found"


def test_stop_and_restart_of_a_supervised_child(
    client: ControlClient, ctl_system: ActorSystem
) -> None:
    assert client.call("stop", path="/svc/b") == {"path": "/svc/b", "stopped": True, "via": "/svc"}
    assert "/svc/b" not in ctl_system.paths()
    children = client.call("tree")["children"][0]["children"]
    assert {"path": "/svc/b", "status": "undefined"}.items() <= children[1].items()
    assert client.call("restart", path="/svc/b")["restarted"] is True
    assert _row(client, "/svc/b")["status"] == "running"
    assert _code(client.call, "restart", path="/svc/zzz") == "not_found"


def test_restart_refuses_to_lose_a_temporary_child(
    client: ControlClient, ctl_system: ActorSystem
) -> None:
    ctl_system.supervise("/tmp", children=[ChildSpec("t", Actor, restart="temporary")])
    assert _code(client.call, "restart", path="/tmp/t") == "conflict"
    assert _row(client, "/tmp/t")["status"] == "running"


def test_restart_of_a_top_level_actor_makes_a_new_incarnation(
    client: ControlClient, ctl_system: ActorSystem
) -> None:
    ctl_system.ask("/echo", "x")
    assert client.call("restart", path="/echo")["via"] == "/"
    assert ctl_system.stats("/echo")["status"] == "running"
    assert ctl_system.inspect("/echo")["state"]["seen"] == 0  # fresh state


def test_inspect_shows_failures_with_tracebacks_and_events(
    client: ControlClient, ctl_system: ActorSystem
) -> None:
    ctl_system.tell("/svc/a", "boom")

    def failed_and_retried() -> Any:
        view = client.call("inspect", path="/svc/a")
        kinds = {e["kind"] for e in view["recent_events"]}
        settled = len(view["recent_failures"]) == 3 and view["status"] == "running"  # 3 attempts
        return view if settled and "retry_attempt" in kinds else None

    view = poll_until(failed_and_retried)
    failure = view["recent_failures"][0]
    assert failure["error_type"] == "ConnectionError"
    assert "raise ConnectionError" in failure["traceback"]
    assert view["parent"] == "/svc"
    assert view["state"] == {"class": "Echo", "seen": 0}
    assert _code(client.call, "inspect", path="/missing") == "not_found"


def test_breakers_lists_supervised_circuits(client: ControlClient, ctl_system: ActorSystem) -> None:
    ctl_system.supervise("/guarded", children=[ChildSpec("c", Actor, breaker=Breaker())])
    rows = client.call("breakers")
    assert [(r["path"], r["kind"], r["state"]) for r in rows] == [("/guarded/c", "child", "closed")]


def test_dlq_commands_work_live(client: ControlClient, ctl_system: ActorSystem) -> None:
    client.call("tell", path="/ghost", type="plain", body="lost")
    (record,) = client.call("dlq.ls", reason="dead_target")
    assert client.call("dlq.show", id=record["id"])["message"] == "lost"
    assert client.call("dlq.stats")["depth"] == 1
    redriven = client.call("dlq.redrive", id=record["id"], to="/echo")
    assert redriven["status"] == "redriven"
    poll_until(lambda: ctl_system.inspect("/echo")["state"]["seen"] == 1)
    assert _code(client.call, "dlq.redrive", id=record["id"]) == "conflict"
    assert _code(client.call, "dlq.show", id="nope") == "not_found"
    client.call("tell", path="/ghost", type="plain", body="again")
    (second,) = client.call("dlq.ls", status="pending")
    assert client.call("dlq.resolve", id=second["id"], note="known")["status"] == "resolved"
    assert _code(client.call, "dlq.purge", status="pending") == "bad_args"  # needs confirm
    assert client.call("dlq.purge", status="resolved") == {"purged": 1}


def test_health_tracks_dlq_growth_and_reconciliation(
    client: ControlClient, ctl_system: ActorSystem
) -> None:
    first = client.call("health")
    assert first["subsystems"]["storage"]["status"] == "green"
    assert first["subsystems"]["breakers"]["status"] == "green"
    assert first["subsystems"]["venue"]["status"] == "green"
    assert first["subsystems"]["dead_letters"]["status"] == "green"
    assert first["subsystems"]["reconciliation"]["status"] == "yellow"  # unknown yet
    client.call("tell", path="/ghost", type="plain", body=1)
    grown = client.call("health")["subsystems"]["dead_letters"]
    assert (grown["status"], grown["growth"]) == ("yellow", 1)
    assert client.call("health")["subsystems"]["dead_letters"]["status"] == "green"
    ctl_system.events.publish("reconciliation_result", None, ok=True, diffs=[])
    assert client.call("health")["subsystems"]["reconciliation"]["status"] == "green"
    ctl_system.events.publish("reconciliation_result", None, ok=False, diffs=["BTC"])
    report = client.call("health")
    assert report["subsystems"]["reconciliation"]["status"] == "red"
    assert report["status"] == "red"


def test_metrics_returns_counters_and_totals(client: ControlClient) -> None:
    metrics = client.call("metrics")
    assert {"sent", "handled", "dead_lettered", "queued", "journaled"} <= metrics["counters"].keys()
    assert {"restarts", "dead_letters"} <= metrics["totals"].keys()
    assert metrics["actors"] == 4
    assert "phalanx_messages" in metrics["prometheus"]  # the exposition text, as the port serves


def test_shutdown_triggers_the_node_stop_after_replying(
    client: ControlClient, server: ControlServer, ctl_system: ActorSystem
) -> None:
    assert client.call("shutdown") == {"stopping": True, "node": "ctl"}
    assert server.stopped.wait(5)  # type: ignore[attr-defined]
    with (
        ControlServer(ctl_system, ctl_system.var_dir / "other.sock") as bare,
        ControlClient(bare.path) as other,
    ):
        assert _code(other.call, "shutdown") == "not_supported"


def test_a_failing_command_is_an_internal_error_not_a_dead_server(
    client: ControlClient, ctl_system: ActorSystem, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken() -> None:
        raise RuntimeError("tree is broken")

    monkeypatch.setattr(ctl_system, "tree", broken)
    with pytest.raises(ControlError) as err:
        client.call("tree")
    assert err.value.code == "internal"
    assert "tree is broken" in err.value.message
    assert client.call("ps")


def test_commands_lists_every_command_with_help(client: ControlClient) -> None:
    names = client.call("commands")
    expected = {"tree", "ps", "inspect", "tell", "ask", "kill", "restart", "stop", "breakers",
                "metrics", "health", "events", "shutdown", "dlq.ls", "dlq.redrive"}  # fmt: skip
    assert expected <= names.keys()


def test_ctl_events_prints_json_lines(
    server: ControlServer, ctl_system: ActorSystem, capsys: pytest.CaptureFixture[str]
) -> None:
    ctl_system.events.publish("probe_ctl", "/svc/a", n=1)
    ctl_system.events.publish("probe_ctl", "/echo", n=2)
    var = str(server.path.parent)
    argv = ["ctl", "--var-dir", var, "--json", "events", "--kind", "probe_ctl", "--path", "/svc/*"]
    assert main([*argv, "--history", "5", "--count", "1"]) == 0
    (line,) = capsys.readouterr().out.splitlines()
    assert json.loads(line)["n"] == 1


def test_inspect_of_a_view_with_int_keys_still_arrives(
    client: ControlClient, ctl_system: ActorSystem
) -> None:
    ctl_system.spawn(IntKeys, "/intkeys")
    assert client.call("inspect", path="/intkeys")["state"] == {"by_level": {1: "a", 2: "b"}}
