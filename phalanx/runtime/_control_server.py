"""The control server: the node's Unix socket, one thread per client (bounded).

Security: ``VAR/control.sock`` is bound under umask 0o177, so it is never
wider than 0600, not even between ``bind`` and ``chmod``. On accept the
peer's credentials are read with ``SO_PEERCRED``: only the node's own
effective uid, or root, is served (root bypasses file modes anyway, so
refusing it would add no protection and take ``sudo phalanx ctl`` away).
Anyone else gets an ``unauthorized`` reply and is disconnected.

Robustness: the accept thread outlives any one client (a failure while
admitting one closes that socket only); at most ``max_clients`` are served
and the next gets a ``busy`` reply. Each admitted client is served by its own
:class:`._control_connection._Connection`.
"""

from __future__ import annotations

import contextlib
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
from typing import TYPE_CHECKING

from phalanx.errors import ConfigError
from phalanx.protocols.control import DEFAULT_MAX_FRAME, error_frame, unix_address
from phalanx.runtime._control_connection import _Connection
from phalanx.runtime._control_health import HealthState

if TYPE_CHECKING:
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
