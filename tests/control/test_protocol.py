"""The control protocol against an in-process server: every bad input gets a typed error."""

from __future__ import annotations

import os
import socket
import stat
import subprocess
import threading
from pathlib import Path

import pytest

from phalanx import ActorSystem
from phalanx.cli._client import ControlClient, NodeUnreachable
from phalanx.errors import ConfigError
from phalanx.protocols.control import HEADER, ControlError
from phalanx.runtime._control import ControlServer, peer_allowed

from .conftest import RawClient


def _code(frame: dict) -> str:
    assert frame["ok"] is False, frame
    return frame["error"]["code"]


def test_socket_is_created_with_mode_0600(server: ControlServer) -> None:
    mode = os.stat(server.path).st_mode
    assert stat.S_ISSOCK(mode)
    assert stat.S_IMODE(mode) == 0o600


def test_hello_reports_version_node_and_frame_limit(server: ControlServer) -> None:
    client = RawClient(server.path, hello=False)
    client.send({"type": "hello", "version": 1, "client": "test"})
    reply = client.recv()
    assert reply["type"] == "hello"
    assert reply["version"] == 1
    assert reply["node"] == "ctl"
    assert reply["pid"] == os.getpid()
    assert reply["max_frame"] == server.max_frame
    client.close()


def test_version_mismatch_gets_a_clear_error_and_close(server: ControlServer) -> None:
    client = RawClient(server.path, hello=False)
    client.send({"type": "hello", "version": 99})
    reply = client.recv()
    assert _code(reply) == "version_mismatch"
    assert "99" in reply["error"]["message"]
    assert client.sock.recv(1) == b""  # closed by the node
    client.close()
    with pytest.raises(ControlError) as err:
        ControlClient(server.path, version=2).connect()
    assert err.value.code == "version_mismatch"


def test_request_before_hello_is_refused_but_connection_stays(server: ControlServer) -> None:
    client = RawClient(server.path, hello=False)
    assert _code(client.call("ps")) == "hello_required"
    client.send({"type": "hello", "version": 1})
    assert client.recv()["type"] == "hello"
    assert client.call("ps")["ok"] is True
    client.close()


def test_unknown_command_and_bad_args_get_typed_errors(server: ControlServer) -> None:
    client = RawClient(server.path)
    reply = client.call("frobnicate")
    assert _code(reply) == "unknown_command"
    assert "frobnicate" in reply["error"]["message"]
    reply = client.call("ps", sort="sideways")
    assert _code(reply) == "bad_args"
    assert "sort" in reply["error"]["message"]
    assert _code(client.call("ps", bogus=1)) == "bad_args"
    assert _code(client.call("inspect")) == "bad_args"  # path missing
    assert _code(client.call("inspect", path=7)) == "bad_args"
    client.send({"type": "request", "id": 5, "cmd": "ps", "args": [1, 2]})
    assert _code(client.recv()) == "bad_args"
    assert client.call("ps")["ok"] is True
    client.close()


def test_malformed_frames_get_errors_and_the_connection_survives(server: ControlServer) -> None:
    client = RawClient(server.path)
    client.send_body(b"\xc1\xc1\xc1")  # 0xc1 is never valid msgpack
    assert _code(client.recv()) == "malformed_frame"
    client.send([1, 2, 3])  # not a map
    assert _code(client.recv()) == "malformed_frame"
    client.send({"type": "request", "id": True, "cmd": "ps"})  # bool id
    assert _code(client.recv()) == "malformed_frame"
    client.send({"type": "request", "id": 1, "cmd": 5})
    assert _code(client.recv()) == "malformed_frame"
    client.send({"type": "gossip"})
    assert _code(client.recv()) == "malformed_frame"
    assert client.call("ps")["ok"] is True
    client.close()


def test_oversized_frame_is_refused_from_its_header_alone(ctl_system: ActorSystem) -> None:
    with ControlServer(ctl_system, ctl_system.var_dir / "control.sock", max_frame=1024) as srv:
        client = RawClient(srv.path)
        # Announce 1 GiB but send nothing more: the reply must come without the body.
        client.send_raw(HEADER.pack(1 << 30))
        reply = client.recv()
        assert _code(reply) == "frame_too_large"
        assert "1073741824" in reply["error"]["message"]
        assert client.sock.recv(1) == b""
        client.close()
        assert RawClient(srv.path).call("ps")["ok"] is True


def test_client_vanishing_mid_frame_and_mid_stream_leaves_server_working(
    server: ControlServer, ctl_system: ActorSystem
) -> None:
    client = RawClient(server.path)
    client.send_raw(HEADER.pack(100) + b"\x81")  # a frame cut short
    client.close()
    streamer = RawClient(server.path)
    assert streamer.call("events")["ok"] is True
    for i in range(50):
        ctl_system.events.publish("test_noise", "/echo", i=i)
    streamer.close()  # gone with events in flight
    for i in range(50):
        ctl_system.events.publish("test_noise", "/echo", i=i)
    fresh = RawClient(server.path)
    assert fresh.call("ps")["ok"] is True
    fresh.close()


def test_events_stream_filters_by_kind_and_path_glob(
    server: ControlServer, ctl_system: ActorSystem
) -> None:
    client = RawClient(server.path)
    reply = client.call("events", kinds=["probe"], path="/svc/*")
    assert reply["ok"] is True
    sub_id = reply["result"]["subscription"]
    ctl_system.events.publish("probe", "/echo", n=1)  # wrong path
    ctl_system.events.publish("other", "/svc/a", n=2)  # wrong kind
    ctl_system.events.publish("probe", "/svc/a", n=3)
    frame = client.recv()
    assert frame["type"] == "event"
    assert frame["event"]["kind"] == "probe"
    assert frame["event"]["n"] == 3
    unsub = client.call("unsubscribe", id=sub_id)
    assert unsub["ok"] is True
    assert _code(client.call("unsubscribe", id=sub_id)) == "not_found"
    client.close()


def test_events_history_replays_recent_matching_events(
    server: ControlServer, ctl_system: ActorSystem
) -> None:
    ctl_system.events.publish("probe_history", "/echo", n=1)
    ctl_system.events.publish("probe_history", "/echo", n=2)
    with ControlClient(server.path, timeout=10) as client:
        events = client.events(kinds=["probe_history"], history=1)
        assert next(events)["n"] == 2
        ctl_system.events.publish("probe_history", "/echo", n=3)
        assert next(events)["n"] == 3
        events.close()


def test_clients_beyond_the_limit_are_told_busy(ctl_system: ActorSystem) -> None:
    with ControlServer(ctl_system, ctl_system.var_dir / "control.sock", max_clients=1) as srv:
        first = RawClient(srv.path)
        second = RawClient(srv.path, hello=False)
        assert _code(second.recv()) == "busy"
        second.close()
        assert first.call("ps")["ok"] is True
        first.close()


def test_peer_rule_is_same_uid_or_root() -> None:
    assert peer_allowed(1000, 1000)
    assert peer_allowed(0, 1000)
    assert not peer_allowed(1001, 1000)
    assert not peer_allowed(65534, 0)


def test_a_peer_with_another_uid_is_refused(ctl_system: ActorSystem) -> None:
    other = os.geteuid() + 4242

    def fake_credentials(sock: socket.socket) -> tuple[int, int, int]:
        return 12345, other, other

    with ControlServer(
        ctl_system, ctl_system.var_dir / "control.sock", credentials=fake_credentials
    ) as srv:
        sub = ctl_system.events.subscribe(["control_refused"])
        client = RawClient(srv.path, hello=False)
        reply = client.recv()
        assert _code(reply) == "unauthorized"
        assert str(other) in reply["error"]["message"]
        assert client.sock.recv(1) == b""
        client.close()
        event = sub.get(timeout=5)
        assert event is not None
        assert event.fields["peer_uid"] == other
        sub.close()


# Stdlib only: the child runs as nobody, who may not read this checkout's venv.
_NOBODY_CLIENT = """
import socket, struct, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.settimeout(10)
try:
    s.connect(sys.argv[1])
except PermissionError:
    print("EACCES"); sys.exit(0)
n = struct.unpack(">I", s.recv(4))[0]
body = s.recv(n)
print("unauthorized" if b"unauthorized" in body else repr(body))
"""
_SYSTEM_PYTHON = Path("/usr/bin/python3")


@pytest.mark.skipif(
    os.geteuid() != 0 or not _SYSTEM_PYTHON.exists(),
    reason="needs root (to run a client as nobody) and a system python nobody can run",
)
def test_a_client_running_as_nobody_is_refused(ctl_system: ActorSystem) -> None:
    os.chmod(ctl_system.var_dir, 0o755)
    with ControlServer(ctl_system, ctl_system.var_dir / "control.sock") as srv:
        run = [str(_SYSTEM_PYTHON), "-I", "-c", _NOBODY_CLIENT, str(srv.path)]

        def as_nobody() -> str:
            out = subprocess.run(
                run, user=65534, capture_output=True, text=True, timeout=30, cwd="/", check=False
            )
            return out.stdout.strip() or out.stderr

        assert as_nobody() == "EACCES"  # mode 0600 alone keeps nobody out...
        os.chmod(srv.path, 0o666)
        assert as_nobody() == "unauthorized"  # ...and SO_PEERCRED refuses the uid anyway


def test_stale_socket_file_is_replaced_but_a_live_one_is_not(ctl_system: ActorSystem) -> None:
    path = ctl_system.var_dir / "control.sock"
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(path))
    stale.close()  # the file stays, nobody listens
    with ControlServer(ctl_system, path) as srv:
        assert RawClient(srv.path).call("ps")["ok"] is True
        with pytest.raises(ConfigError, match="already answers"):
            ControlServer(ctl_system, path).start()
    assert not path.exists()  # removed at stop


def test_a_non_socket_file_in_the_way_is_not_removed(ctl_system: ActorSystem) -> None:
    path = ctl_system.var_dir / "control.sock"
    path.write_text("precious")
    with pytest.raises(ConfigError, match="not a socket"):
        ControlServer(ctl_system, path).start()
    assert path.read_text() == "precious"


def test_client_reports_unreachable_without_a_node(tmp_path: Path) -> None:
    path = tmp_path / "control.sock"
    with pytest.raises(NodeUnreachable, match="no control socket"):
        ControlClient(path).connect()
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(str(path))  # what a SIGKILLed node leaves behind
    dead.close()
    with pytest.raises(NodeUnreachable, match="refused"):
        ControlClient(path).connect()


def test_server_stop_disconnects_clients_and_joins_threads(ctl_system: ActorSystem) -> None:
    srv = ControlServer(ctl_system, ctl_system.var_dir / "control.sock").start()
    idle = RawClient(srv.path)
    streaming = RawClient(srv.path)
    assert streaming.call("events")["ok"] is True
    stopper = threading.Thread(target=srv.stop)
    stopper.start()
    stopper.join(15)
    assert not stopper.is_alive()
    assert idle.sock.recv(1) == b""
    idle.close()
    streaming.close()
    assert not srv.path.exists()


def test_a_socket_path_beyond_sun_path_limit_still_works(tmp_path: Path) -> None:
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    with ActorSystem(name="deep", var_dir=deep, sync=False) as system:
        path = deep / "control.sock"
        assert len(str(path)) > 107
        with ControlServer(system, path) as srv, ControlClient(srv.path) as client:
            assert client.call("ps") == []
            assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
