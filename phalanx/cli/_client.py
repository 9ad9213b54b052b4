"""A blocking client of the control protocol (used by ``phalanx ctl`` and ``phalanx shell``)."""

from __future__ import annotations

import collections
import itertools
import socket
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Any

from phalanx.protocols.control import (
    DEFAULT_MAX_FRAME,
    PROTOCOL_VERSION,
    ConnectionClosed,
    ControlError,
    pack_frame,
    read_frame,
    unix_address,
)

__all__ = ["UNREACHABLE_CODES", "ControlClient", "NodeUnreachable"]

# Error codes that mean "this node cannot be used from here" (exit code 3).
UNREACHABLE_CODES = frozenset({"unreachable", "version_mismatch", "unauthorized", "busy"})


class NodeUnreachable(ControlError):
    """No node answers on the socket: missing file, refused, or the node went away."""

    def __init__(self, message: str) -> None:
        super().__init__("unreachable", message)


class ControlClient:
    """One connection to a node's control socket; :meth:`call` runs one command.

    ``timeout`` bounds each wait for a reply; :meth:`events` blocks until the
    caller stops iterating (or the node ends the stream).
    """

    def __init__(
        self,
        path: str | Path,
        *,
        timeout: float = 30.0,
        version: int = PROTOCOL_VERSION,
        client: str = "phalanx-ctl",
    ) -> None:
        self.path = Path(path)
        self.timeout = timeout
        self.version = version
        self.client = client
        self.node: dict[str, Any] = {}
        self._sock: socket.socket | None = None
        self._ids = itertools.count(1)
        self._pending: collections.deque[dict[str, Any]] = collections.deque()

    def connect(self) -> ControlClient:
        """Connect and exchange hellos; :class:`NodeUnreachable` or an error reply otherwise."""
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            with unix_address(self.path) as address:
                sock.connect(address)
        except FileNotFoundError:
            sock.close()
            raise NodeUnreachable(
                f"no control socket at {self.path} (is the node running?)"
            ) from None
        except ConnectionRefusedError:
            sock.close()
            raise NodeUnreachable(f"connection refused on {self.path} (stale socket?)") from None
        except OSError as exc:
            sock.close()
            raise NodeUnreachable(f"cannot connect to {self.path}: {exc}") from None
        self._sock = sock
        try:
            self._send({"type": "hello", "version": self.version, "client": self.client})
            reply = self._read()
        except BaseException:
            self.close()
            raise
        if reply.get("type") != "hello":
            self.close()
            self._raise(reply)
        self.node = reply
        return self

    def _send(self, frame: dict[str, Any]) -> None:
        assert self._sock is not None, "not connected"
        try:
            self._sock.sendall(pack_frame(frame))
        except OSError as exc:
            raise NodeUnreachable(f"the node closed the connection: {exc}") from None

    def _read(self) -> dict[str, Any]:
        assert self._sock is not None, "not connected"
        while True:
            try:
                frame = read_frame(self._sock, max(DEFAULT_MAX_FRAME, 64 << 20), strict_keys=False)
            except ConnectionClosed:
                raise NodeUnreachable("the node closed the connection") from None
            except TimeoutError:
                raise ControlError("timeout", f"no reply within {self.timeout}s") from None
            except OSError as exc:
                raise NodeUnreachable(f"connection to the node failed: {exc}") from None
            if frame is None:
                raise ControlError("timeout", f"no reply within {self.timeout}s")
            return frame

    @staticmethod
    def _raise(frame: dict[str, Any]) -> None:
        error = frame.get("error") or {}
        raise ControlError(
            str(error.get("code", "internal")), str(error.get("message", repr(frame)))
        )

    def request(self, cmd: str, args: dict[str, Any] | None = None) -> Any:
        """Send ``cmd`` and return its result; an error reply raises :class:`ControlError`."""
        ident = next(self._ids)
        self._send({"type": "request", "id": ident, "cmd": cmd, "args": args or {}})
        while True:
            frame = self._read()
            if frame.get("type") == "response" and frame.get("id") in (ident, None):
                if not frame.get("ok"):
                    self._raise(frame)
                return frame.get("result")
            if frame.get("type") in ("event", "end"):
                self._pending.append(frame)

    def call(self, cmd: str, **args: Any) -> Any:
        """:meth:`request` with keyword arguments (None values are left out)."""
        return self.request(cmd, {k: v for k, v in args.items() if v is not None})

    def events(
        self, kinds: list[str] | None = None, path: str | None = None, history: int = 0
    ) -> Iterator[dict[str, Any]]:
        """Subscribe and yield event dicts as they come (blocks between events)."""
        sub = self.call("events", kinds=kinds, path=path, history=history)
        assert self._sock is not None
        self._sock.settimeout(None)
        try:
            while True:
                frame = self._pending.popleft() if self._pending else self._read()
                if frame.get("type") == "end":
                    return
                if frame.get("type") == "event":
                    yield frame["event"]
        finally:
            if self._sock is not None:
                self._sock.settimeout(self.timeout)
            del sub

    def close(self) -> None:
        """Close the connection (the node keeps running)."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def __enter__(self) -> ControlClient:
        return self.connect() if self._sock is None else self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
