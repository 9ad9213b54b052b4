"""Frame fuzzing: random bytes and random frames never hurt the node or change its tree."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from phalanx import ActorSystem
from phalanx.protocols.control import (
    HEADER,
    PROTOCOL_VERSION,
    ConnectionClosed,
    pack_frame,
    read_frame,
)
from phalanx.runtime._control import COMMANDS, ControlServer

from .conftest import RawClient

# Commands that change the tree given a real path are left out: random text
# never names a live actor, but a shrinker could stumble on "/echo".
_SAFE = sorted(set(COMMANDS) - {"kill", "stop", "restart"})

_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.floats(allow_nan=True),
    st.text(max_size=40),
    st.binary(max_size=40),
)
_values = st.recursive(
    _scalars,
    lambda inner: (
        st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner, max_size=5)
    ),
    max_leaves=20,
)
_frames = st.fixed_dictionaries(
    {},
    optional={
        "type": st.sampled_from(["hello", "request", "request", "request", "cancel"]) | st.text(),
        "id": st.one_of(st.integers(min_value=-(2**63), max_value=2**63), _scalars),
        "cmd": st.sampled_from(_SAFE) | st.text(max_size=12),
        "args": st.dictionaries(
            st.sampled_from(["path", "sort", "limit", "type", "body", "id", "kinds", "x"]),
            _values,
            max_size=4,
        )
        | _values,
        "version": st.sampled_from([PROTOCOL_VERSION, 0, 2]) | _scalars,
    },
)


def _shape(node: dict[str, Any]) -> Any:
    """The parts of the tree a fuzz case must not change (counters may move)."""
    return (
        node["path"],
        node.get("kind"),
        node.get("status"),
        node.get("incarnation"),
        node.get("restarts"),
        [_shape(c) for c in node.get("children", [])],
    )


@pytest.fixture
def fuzz_server(ctl_system: ActorSystem) -> Iterator[ControlServer]:
    with ControlServer(
        ctl_system, ctl_system.var_dir / "control.sock", max_frame=4096, frame_timeout=2.0
    ) as srv:
        yield srv


def _drain_replies(sock: socket.socket) -> None:
    """Read every reply until the node closes: each must be a well-formed frame."""
    sock.shutdown(socket.SHUT_WR)
    while True:
        frame = _read_or_eof(sock)
        if frame is None:
            return
        assert frame.get("type") in ("hello", "response", "event", "end"), frame


def _read_or_eof(sock: socket.socket) -> dict[str, Any] | None:
    try:
        frame = read_frame(sock, 64 << 20)
    except ConnectionClosed:
        return None
    except ConnectionResetError:
        return None
    assert frame is not None, "the node neither replied nor closed within 10s"
    return frame


def _check_alive(server: ControlServer, before: Any) -> None:
    client = RawClient(server.path)
    assert client.call("ps")["ok"] is True
    tree = client.call("tree")
    client.close()
    assert tree["ok"] is True
    assert _shape(tree["result"]) == before


def _before(server: ControlServer) -> Any:
    client = RawClient(server.path)
    tree = client.call("tree")["result"]
    client.close()
    return _shape(tree)


def _connect(server: ControlServer, hello: bool) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(10.0)
    sock.connect(str(server.path))
    if hello:
        sock.sendall(pack_frame({"type": "hello", "version": PROTOCOL_VERSION}))
    return sock


def _bytes_case(server: ControlServer, data: bytes, hello: bool) -> None:
    before = _before(server)
    sock = _connect(server, hello)
    try:
        sock.sendall(data)
        _drain_replies(sock)
    except (BrokenPipeError, ConnectionResetError):
        pass  # the node may close first (oversized header): that is allowed
    finally:
        sock.close()
    _check_alive(server, before)


def _frames_case(
    server: ControlServer,
    frames: list[dict[str, Any]],
    hello: bool,
    cut: int | None,
    lie: int | None,
) -> None:
    before = _before(server)
    sock = _connect(server, hello)
    try:
        for frame in frames:
            body = msgpack.packb(frame, use_bin_type=True)
            length = len(body) if lie is None else lie  # a header that lies about the body
            sock.sendall(HEADER.pack(length) + body)
        if cut is not None:  # a last frame cut short: the node must not wait forever
            body = msgpack.packb(frames[0], use_bin_type=True)
            sock.sendall(HEADER.pack(len(body)) + body[:cut])
        _drain_replies(sock)
    except (BrokenPipeError, ConnectionResetError):
        pass
    finally:
        sock.close()
    _check_alive(server, before)


def _fuzz(examples: int) -> Any:
    return settings(
        max_examples=examples,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )


_bytes = {"data": st.binary(max_size=600), "hello": st.booleans()}
_framed = {
    "frames": st.lists(_frames, min_size=1, max_size=6),
    "hello": st.booleans(),
    "cut": st.none() | st.integers(min_value=0, max_value=64),
    "lie": st.none() | st.integers(min_value=0, max_value=2**32 - 1),
}


@_fuzz(50)
@given(**_bytes)
def test_random_bytes_never_hurt_the_node(
    fuzz_server: ControlServer, data: bytes, hello: bool
) -> None:
    _bytes_case(fuzz_server, data, hello)


@_fuzz(60)
@given(**_framed)
def test_random_frames_get_replies_and_leave_the_tree_unchanged(
    fuzz_server: ControlServer,
    frames: list[dict[str, Any]],
    hello: bool,
    cut: int | None,
    lie: int | None,
) -> None:
    _frames_case(fuzz_server, frames, hello, cut, lie)


@pytest.mark.slow
@_fuzz(1000)
@given(**_bytes)
def test_random_bytes_never_hurt_the_node_long(
    fuzz_server: ControlServer, data: bytes, hello: bool
) -> None:
    _bytes_case(fuzz_server, data, hello)


@pytest.mark.slow
@_fuzz(1500)
@given(**_framed)
def test_random_frames_leave_the_tree_unchanged_long(
    fuzz_server: ControlServer,
    frames: list[dict[str, Any]],
    hello: bool,
    cut: int | None,
    lie: int | None,
) -> None:
    _frames_case(fuzz_server, frames, hello, cut, lie)
