"""The control server: the node's Unix socket, one thread per client (bounded).

Security: ``VAR/control.sock`` is bound under umask 0o177, so it is never
wider than 0600, not even between ``bind`` and ``chmod``. On accept the
peer's credentials are read with ``SO_PEERCRED``: only the node's own
effective uid, or root, is served (root bypasses file modes anyway, so
refusing it would add no protection and take ``sudo phalanx ctl`` away).
Anyone else gets an ``unauthorized`` reply and is disconnected.

Robustness: every bad frame gets an error reply and the connection carries
on, except an oversized one, which is refused from its header and closes the
connection. A client that stalls mid-frame for ``frame_timeout`` seconds, or
stops reading its event stream, is disconnected. Nothing a client does can
raise out of its own thread.
"""

from __future__ import annotations

import contextlib
import fnmatch
import itertools
import os
import selectors
import socket
import stat
import struct
import threading
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from phalanx.errors import ConfigError
from phalanx.protocols.control import (
    DEFAULT_MAX_FRAME,
    PROTOCOL_VERSION,
    ConnectionClosed,
    ControlError,
    FrameError,
    error_frame,
    pack_frame,
    read_frame,
    unix_address,
)
from phalanx.runtime._control_commands import AfterReply, run_command, validate_args
from phalanx.runtime._control_health import HealthState

if TYPE_CHECKING:
    from phalanx.runtime._events import Event, Subscription
    from phalanx.runtime._system import ActorSystem

__all__ = ["ControlServer", "peer_allowed", "peer_credentials"]

_UMASK_LOCK = threading.Lock()
Credentials = Callable[[socket.socket], tuple[int, int, int]]


def peer_credentials(sock: socket.socket) -> tuple[int, int, int]:
    """``(pid, uid, gid)`` of the process at the other end of a Unix socket."""
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    pid, uid, gid = struct.unpack("3i", raw)
    return pid, uid, gid


def peer_allowed(peer_uid: int, node_uid: int) -> bool:
    """The access rule: the node's own uid, or root."""
    return peer_uid in (node_uid, 0)


class ControlServer:
    """Serves the control protocol for ``system`` on the Unix socket at ``path``.

    Use it as a context manager around the node's wait::

        with ControlServer(system, var_dir / "control.sock", on_shutdown=stop.set):
            stop.wait()

    ``on_shutdown`` is what the ``shutdown`` command calls (after its reply is
    sent); without it the command answers ``not_supported``. ``credentials``
    reads the peer's ``(pid, uid, gid)``; tests replace it to fake another uid.
    """

    def __init__(
        self,
        system: ActorSystem,
        path: str | os.PathLike[str],
        *,
        on_shutdown: Callable[[], None] | None = None,
        max_frame: int = DEFAULT_MAX_FRAME,
        max_clients: int = 16,
        max_subscriptions: int = 4,
        frame_timeout: float = 10.0,
        credentials: Credentials = peer_credentials,
    ) -> None:
        self.system = system
        self.path = Path(path)
        self.on_shutdown = on_shutdown
        self.max_frame = max_frame
        self.max_clients = max_clients
        self.max_subscriptions = max_subscriptions
        self.frame_timeout = frame_timeout
        self._credentials = credentials
        self._node_uid = os.geteuid()
        self._listener: socket.socket | None = None
        self._wake_r: socket.socket | None = None
        self._wake_w: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._conns: set[_Connection] = set()
        self._lock = threading.Lock()
        self._stopping = False
        self._inode: int | None = None
        self._seq = itertools.count(1)
        self.health: HealthState | None = None

    # --- lifecycle ---------------------------------------------------------

    def start(self) -> ControlServer:
        """Bind the socket (mode 0600) and start accepting. ConfigError if it cannot."""
        self._clear_stale()
        self.health = HealthState(self.system)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            # umask is process-wide: the lock keeps two servers from interleaving,
            # and 0o177 can only make a file created meanwhile elsewhere stricter.
            with _UMASK_LOCK:
                old = os.umask(0o177)
                try:
                    with unix_address(self.path) as address:
                        listener.bind(address)
                finally:
                    os.umask(old)
            os.chmod(self.path, 0o600)
            self._inode = os.stat(self.path).st_ino
            listener.listen(64)
        except OSError as exc:
            listener.close()
            self.health.close()
            raise ConfigError(f"cannot bind control socket {str(self.path)!r}: {exc}") from exc
        self._listener = listener
        self._wake_r, self._wake_w = socket.socketpair()
        self._thread = threading.Thread(
            target=self._accept_loop, name="phalanx-control-accept", daemon=True
        )
        self._thread.start()
        return self

    def _clear_stale(self) -> None:
        """Remove a leftover socket file, but only if no node answers on it."""
        try:
            st = os.lstat(self.path)
        except FileNotFoundError:
            return
        if not stat.S_ISSOCK(st.st_mode):
            raise ConfigError(f"{str(self.path)!r} exists and is not a socket: not removing it")
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        probe.settimeout(1.0)
        try:
            with unix_address(self.path) as address:
                probe.connect(address)
        except (ConnectionRefusedError, FileNotFoundError):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)
            return
        except OSError as exc:
            raise ConfigError(f"cannot probe control socket {str(self.path)!r}: {exc}") from exc
        finally:
            probe.close()
        raise ConfigError(f"a node already answers on {str(self.path)!r}")

    def stop(self) -> None:
        """Stop accepting, disconnect every client, remove the socket file. Idempotent."""
        with self._lock:
            if self._stopping or self._listener is None:
                self._stopping = True
                return
            self._stopping = True
            conns = list(self._conns)
        assert self._wake_w is not None
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")
        if self._thread is not None:
            self._thread.join(5.0)
        for conn in conns:
            conn.abort()
        for conn in conns:
            conn.join(5.0)
        self._listener.close()
        with contextlib.suppress(OSError):
            if os.stat(self.path).st_ino == self._inode:
                os.unlink(self.path)
        for sock in (self._wake_r, self._wake_w):
            if sock is not None:
                sock.close()
        if self.health is not None:
            self.health.close()

    def __enter__(self) -> ControlServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # --- accepting ---------------------------------------------------------

    def _accept_loop(self) -> None:
        assert self._listener is not None
        assert self._wake_r is not None
        with selectors.DefaultSelector() as sel:
            sel.register(self._listener, selectors.EVENT_READ)
            sel.register(self._wake_r, selectors.EVENT_READ)
            while not self._stopping:
                for key, _ in sel.select():
                    if key.fileobj is self._wake_r or self._stopping:
                        return
                    try:
                        sock, _addr = self._listener.accept()
                    except OSError:
                        continue
                    self._admit(sock)

    def _admit(self, sock: socket.socket) -> None:
        conn: _Connection | None = None
        try:
            sock.settimeout(self.frame_timeout)
            pid, uid, gid = self._credentials(sock)
            if not peer_allowed(uid, self._node_uid):
                self.system.events.publish("control_refused", None, peer_pid=pid, peer_uid=uid)
                sock.sendall(
                    error_frame(None, "unauthorized", f"uid {uid} may not control this node")
                )
                sock.close()
                return
            with self._lock:
                busy = len(self._conns) >= self.max_clients or self._stopping
                if not busy:
                    conn = _Connection(self, sock, {"pid": pid, "uid": uid, "gid": gid})
                    self._conns.add(conn)
            if conn is None:
                sock.sendall(error_frame(None, "busy", f"{self.max_clients} clients connected"))
                sock.close()
                return
            conn.start(next(self._seq))
        except Exception as exc:  # the accept thread must outlive any one client
            sock.close()
            if conn is not None:
                self._forget(conn)
            if not isinstance(exc, OSError):
                self.system.events.publish("control_accept_failed", None, error=repr(exc))

    def _forget(self, conn: _Connection) -> None:
        with self._lock:
            self._conns.discard(conn)


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
