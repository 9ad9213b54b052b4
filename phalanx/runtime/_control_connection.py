"""One control client: a reader thread answering its frames, one pump per event subscription.

Robustness: every bad frame gets an error reply and the connection carries
on, except an oversized one, which is refused from its header and closes the
connection. A client that stalls mid-frame for ``frame_timeout`` seconds, or
stops reading its event stream, is disconnected. Nothing a client does can
raise out of its own thread.

A request is answered only after a ``hello`` with this node's protocol
version; a version mismatch is answered and closes the connection. An
``events`` subscription's pump starts only once its reply is sent, so the
reply precedes every event frame of that subscription.
"""

from __future__ import annotations

import contextlib
import fnmatch
import itertools
import os
import socket
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from phalanx.protocols.control import (
    PROTOCOL_VERSION,
    ConnectionClosed,
    ControlError,
    FrameError,
    error_frame,
    pack_frame,
    read_frame,
)
from phalanx.runtime._control_commands import run_command, validate_args
from phalanx.runtime._control_session import AfterReply

if TYPE_CHECKING:
    from phalanx.runtime._control_server import ControlServer
    from phalanx.runtime._events import Event, Subscription

__all__ = ["_Connection"]


class _Sub:
    __slots__ = ("history", "match", "request_id", "sub", "thread")

    def __init__(
        self,
        sub: Subscription,
        request_id: Any,
        match: Callable[[Event], bool],
        history: list[Event],
    ) -> None:
        self.sub = sub
        self.request_id = request_id
        self.match = match
        self.history = history
        self.thread: threading.Thread | None = None


class _Connection:
    """One client: a reader thread answering requests, plus one pump per subscription."""

    def __init__(self, server: ControlServer, sock: socket.socket, peer: dict[str, int]) -> None:
        self.server = server
        self.system = server.system
        assert server.health is not None
        self.health = server.health
        self.sock = sock
        self.peer = peer
        self._send_lock = threading.Lock()
        self._subs: dict[int, _Sub] = {}
        self._sub_seq = itertools.count(1)
        self._hello = False
        self._thread: threading.Thread | None = None
        self._closed = threading.Event()

    def start(self, n: int) -> None:
        self._thread = threading.Thread(
            target=self._run, name=f"phalanx-control-client-{n}", daemon=True
        )
        self._thread.start()

    def join(self, timeout: float) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    def abort(self) -> None:
        """Wake the reader (and any pump) by shutting the socket down."""
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)

    def send(self, frame: bytes) -> None:
        with self._send_lock:
            self.sock.sendall(frame)

    # --- the reader --------------------------------------------------------

    def _run(self) -> None:
        try:
            while not self.server._stopping:
                try:
                    frame = read_frame(self.sock, self.server.max_frame)
                except FrameError as exc:
                    self.send(error_frame(None, exc.code, exc.message))
                    if exc.code == "frame_too_large":
                        return  # the body was not read: the stream cannot be resynced
                    continue
                if frame is None:
                    continue  # idle between frames
                try:
                    keep = self._dispatch(frame)
                except (ConnectionClosed, OSError):
                    raise
                except Exception as exc:  # a bug must cost one reply, not the node
                    ident = frame.get("id")
                    ident = ident if isinstance(ident, int | str) else None
                    self.send(error_frame(ident, "internal", f"{type(exc).__qualname__}: {exc}"))
                    keep = True
                if not keep:
                    return
        except (ConnectionClosed, OSError):
            return  # the client went away (or stop() shut the socket)
        finally:
            self._close()

    def _dispatch(self, frame: dict[str, Any]) -> bool:
        """Answer one frame; False closes the connection."""
        kind = frame.get("type")
        if kind == "hello":
            version = frame.get("version")
            if version != PROTOCOL_VERSION:
                self.send(
                    error_frame(
                        None,
                        "version_mismatch",
                        f"client speaks control protocol version {version!r}, this node "
                        f"speaks {PROTOCOL_VERSION}: use the phalanx that runs the node",
                    )
                )
                return False
            self._hello = True
            self.send(
                pack_frame(
                    {
                        "type": "hello",
                        "version": PROTOCOL_VERSION,
                        "node": self.system.name,
                        "pid": os.getpid(),
                        "max_frame": self.server.max_frame,
                    }
                )
            )
            return True
        ident = frame.get("id")
        if kind != "request":
            self.send(error_frame(None, "malformed_frame", f"unknown frame type {kind!r}"))
            return True
        if not isinstance(ident, int | str) or isinstance(ident, bool):
            self.send(error_frame(None, "malformed_frame", "request id must be an int or str"))
            return True
        if not self._hello:
            self.send(error_frame(ident, "hello_required", "send a hello frame first"))
            return True
        cmd = frame.get("cmd")
        if not isinstance(cmd, str):
            self.send(error_frame(ident, "malformed_frame", "request cmd must be a str"))
            return True
        try:
            handler, args = validate_args(cmd, frame.get("args"))
            if cmd == "events":
                result: Any = {"subscription": self.subscribe(ident, **args.model_dump())}
            else:
                result = run_command(self, handler, args)
        except ControlError as exc:
            self.send(error_frame(ident, exc.code, exc.message))
            return True
        after = None
        if isinstance(result, AfterReply):
            result, after = result.result, result.action
        try:
            reply = pack_frame({"type": "response", "id": ident, "ok": True, "result": result})
        except Exception as exc:  # e.g. an int beyond 64 bits in an introspect() view
            reply = error_frame(ident, "internal", f"reply cannot be encoded: {exc}")
        self.send(reply)
        if cmd == "events":
            self._start_pump(result["subscription"])
        if after is not None:
            after()
        return True

    def _close(self) -> None:
        self._closed.set()
        with self.server._lock:
            subs = list(self._subs.values())
            self._subs.clear()
        for entry in subs:
            entry.sub.close()
        for entry in subs:
            if entry.thread is not None and entry.thread is not threading.current_thread():
                entry.thread.join(5.0)
        with contextlib.suppress(OSError):
            self.sock.close()
        self.server._forget(self)

    # --- the Session protocol ----------------------------------------------

    def request_shutdown(self) -> Callable[[], None] | None:
        return self.server.on_shutdown

    def subscribe(
        self, request_id: Any, kinds: list[str] | None, path: str | None, history: int
    ) -> int:
        with self.server._lock:
            if len(self._subs) >= self.server.max_subscriptions:
                raise ControlError(
                    "conflict", f"at most {self.server.max_subscriptions} subscriptions per client"
                )
        kind_set = frozenset(kinds) if kinds is not None else None

        def match(event: Event) -> bool:
            if kind_set is not None and event.kind not in kind_set:
                return False
            return path is None or (
                event.path is not None and fnmatch.fnmatchcase(event.path, path)
            )

        sub = self.system.events.subscribe(kind_set, maxsize=10_000)
        past = (
            [e for e in self.system.events.recent(1000) if match(e)][-history:] if history else []
        )
        sub_id = next(self._sub_seq)
        with self.server._lock:
            self._subs[sub_id] = _Sub(sub, request_id, match, past)
        return sub_id

    def unsubscribe(self, sub_id: int) -> bool:
        with self.server._lock:
            entry = self._subs.pop(sub_id, None)
        if entry is None:
            return False
        entry.sub.close()
        return True

    def _start_pump(self, sub_id: int) -> None:
        with self.server._lock:
            entry = self._subs.get(sub_id)
        if entry is None:
            return
        entry.thread = threading.Thread(
            target=self._pump, args=(sub_id, entry), name="phalanx-control-events", daemon=True
        )
        entry.thread.start()

    def _pump(self, sub_id: int, entry: _Sub) -> None:
        seen = {id(e) for e in entry.history}
        rid = entry.request_id
        try:
            for past in entry.history:
                self.send(pack_frame({"type": "event", "id": rid, "event": past.as_dict()}))
            while (event := entry.sub.get()) is not None:
                if id(event) in seen or not entry.match(event):
                    continue
                frame = {"type": "event", "id": rid, "event": event.as_dict()}
                if entry.sub.dropped:
                    frame["dropped"] = entry.sub.dropped
                self.send(pack_frame(frame))
            if not self._closed.is_set():
                self.send(pack_frame({"type": "end", "id": rid, "reason": "unsubscribed"}))
        except OSError:
            # The client stopped reading or went away: end the whole connection.
            entry.sub.close()
            self.abort()
