"""The control protocol: length-prefixed msgpack frames over the node's Unix socket.

A frame is a 4-byte big-endian body length, then a msgpack map. The client
speaks first, with a hello carrying :data:`PROTOCOL_VERSION`; the node answers
with its own hello, or with a ``version_mismatch`` error and closes.

Client frames::

    {"type": "hello", "version": 1, "client": "phalanx-ctl"}
    {"type": "request", "id": 7, "cmd": "ps", "args": {"sort": "depth"}}

Node frames::

    {"type": "hello", "version": 1, "node": "phalanx", "pid": 123, "max_frame": 1048576}
    {"type": "response", "id": 7, "ok": True, "result": [...]}
    {"type": "response", "id": 7, "ok": False, "error": {"code": "not_found", "message": "..."}}
    {"type": "event", "id": 9, "event": {...}, "dropped": 0}  # a subscription's stream
    {"type": "end", "id": 9, "reason": "unsubscribed"}

Invariant: a frame whose length exceeds the limit is refused from its header
alone (its body is never read), answered with ``frame_too_large``, and the
connection is closed, since the stream cannot be resynchronised safely. Any
other bad frame gets an error reply and the connection stays usable.
"""

from __future__ import annotations

import contextlib
import os
import socket
import struct
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any, Final

import msgpack

from phalanx.errors import PhalanxError

__all__ = [
    "DEFAULT_MAX_FRAME",
    "ERROR_CODES",
    "HEADER",
    "PROTOCOL_VERSION",
    "ConnectionClosed",
    "ControlError",
    "FrameError",
    "decode_body",
    "error_frame",
    "pack_frame",
    "read_frame",
    "unix_address",
]

PROTOCOL_VERSION: Final = 1
DEFAULT_MAX_FRAME: Final = 1 << 20  # 1 MiB: the largest reply (ps of 5,000 actors) is ~400 KiB
HEADER: Final = struct.Struct(">I")
_SUN_PATH_MAX: Final = 107  # sun_path is 108 bytes with its terminating NUL (Linux)

ERROR_CODES: Final = frozenset(
    {
        "malformed_frame",  # not msgpack, not a map, or a field of the wrong type
        "frame_too_large",  # header announced more than the limit; connection closed
        "hello_required",  # a request before the hello exchange
        "version_mismatch",  # client and node speak different protocol versions
        "unauthorized",  # peer uid is neither the node's nor root
        "busy",  # too many clients connected
        "unknown_command",
        "bad_args",  # arguments failed validation (names what was wrong)
        "not_found",  # no actor, child or dead letter by that name
        "conflict",  # the target is in a state that forbids the operation
        "timeout",  # an ask got no reply in time: outcome unknown
        "actor_dead",
        "mailbox_full",
        "circuit_open",
        "handler_error",  # the actor's handler raised (type and message given)
        "not_supported",
        "shutting_down",
        "internal",  # a bug in the node's command code; the node keeps running
    }
)


class ControlError(PhalanxError):
    """An error reply from the node (or a protocol failure), with its typed ``code``."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class FrameError(ControlError):
    """A frame that cannot be read: ``malformed_frame`` or ``frame_too_large``."""


class ConnectionClosed(ControlError):
    """The peer closed the connection (cleanly between frames, or mid-frame)."""

    def __init__(self, message: str = "connection closed by peer") -> None:
        super().__init__("connection_closed", message)


def _fallback(obj: Any) -> Any:
    # Replies carry introspect() views and event fields: anything not msgpack
    # native travels as text rather than failing the whole reply.
    if isinstance(obj, Decimal):
        return str(obj)
    if isinstance(obj, set | frozenset):
        return sorted(obj, key=repr)
    if isinstance(obj, BaseException):
        return f"{type(obj).__qualname__}: {obj}"
    return repr(obj)


def pack_frame(obj: Any) -> bytes:
    """One frame: header + msgpack body. Non-native values are stringified."""
    body: bytes = msgpack.packb(obj, use_bin_type=True, default=_fallback)
    return HEADER.pack(len(body)) + body


def error_frame(ident: Any, code: str, message: str) -> bytes:
    """An error response frame for request ``ident`` (None for protocol errors)."""
    return pack_frame(
        {"type": "response", "id": ident, "ok": False, "error": {"code": code, "message": message}}
    )


def decode_body(body: bytes, *, strict_keys: bool = True) -> dict[str, Any]:
    """Decode one frame body into a map; :class:`FrameError` (malformed) otherwise.

    The node decodes strictly (map keys str or bytes); a client passes
    ``strict_keys=False`` so an ``introspect()`` view with int keys still arrives.
    """
    try:
        obj = msgpack.unpackb(body, raw=False, strict_map_key=strict_keys)
    except Exception as exc:  # msgpack raises many types (ValueError, StackError, ...)
        raise FrameError("malformed_frame", f"body is not valid msgpack: {exc}") from None
    if not isinstance(obj, dict):
        raise FrameError("malformed_frame", f"frame must be a map, got {type(obj).__name__}")
    return obj


def _recv_exact(sock: socket.socket, n: int, *, idle_ok: bool) -> bytes | None:
    """Read exactly ``n`` bytes. None on a timeout before the first byte if ``idle_ok``."""
    chunks: list[bytes] = []
    got = 0
    while got < n:
        try:
            chunk = sock.recv(min(n - got, 1 << 16))
        except TimeoutError:
            if idle_ok and got == 0:
                return None
            raise FrameError("malformed_frame", f"frame stalled after {got} of {n} bytes") from None
        if not chunk:
            if got == 0 and idle_ok:
                raise ConnectionClosed()
            raise ConnectionClosed(f"connection closed mid-frame ({got} of {n} bytes)")
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def read_frame(
    sock: socket.socket, max_frame: int = DEFAULT_MAX_FRAME, *, strict_keys: bool = True
) -> dict[str, Any] | None:
    """Read one frame. None when the socket timed out idle, between frames.

    Raises :class:`ConnectionClosed` at EOF, :class:`FrameError` with code
    ``frame_too_large`` (body not read) or ``malformed_frame``.
    """
    header = _recv_exact(sock, HEADER.size, idle_ok=True)
    if header is None:
        return None
    (length,) = HEADER.unpack(header)
    if length > max_frame:
        raise FrameError(
            "frame_too_large", f"frame of {length} bytes exceeds the limit of {max_frame} bytes"
        )
    body = _recv_exact(sock, length, idle_ok=False)
    assert body is not None
    return decode_body(body, strict_keys=strict_keys)


@contextlib.contextmanager
def unix_address(path: str | os.PathLike[str]) -> Iterator[str]:
    """An address to bind or connect ``path`` with, even past sun_path's 107 bytes.

    A longer path is reached through its directory's descriptor
    (``/proc/self/fd/N/name``, Linux), open only for the ``with`` block.
    """
    path = Path(path)
    if len(os.fsencode(path)) <= _SUN_PATH_MAX:
        yield str(path)
        return
    fd = os.open(path.parent, os.O_PATH | os.O_DIRECTORY)
    try:
        yield f"/proc/self/fd/{fd}/{path.name}"
    finally:
        os.close(fd)
