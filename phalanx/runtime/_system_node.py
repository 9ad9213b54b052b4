"""The node under an :class:`ActorSystem`: var dir lock, storage, logs, timers; start and stop.

``start`` locks the var dir (one node per dir), opens storage, the dead
letter store, the logs and the timers, then redelivers the dead-letter
outbox. Invariant: a failed start leaves no thread, open file or lock
behind. ``shutdown`` stops top-level actors in reverse spawn order (each
supervisor stops its own subtree), then whatever is left, within one
deadline, and closes storage and logs last. Every event goes to the health
log (dead letters to the audit log) unless its publisher writes its own line.
"""

from __future__ import annotations

import fcntl
import os
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

from phalanx.errors import ConfigError, PhalanxError, StorageError
from phalanx.runtime._envelope import Envelope
from phalanx.runtime._events import Event, EventStream
from phalanx.runtime._logging import LogManager
from phalanx.runtime._timers import Timer, Timers
from phalanx.storage import DeadLetterStore, Storage
from phalanx.storage._durable import DurableMailboxes

if TYPE_CHECKING:
    from structlog.typing import FilteringBoundLogger

    from phalanx.runtime._cell import ActorCell
    from phalanx.runtime._delivery import PostOffice
    from phalanx.supervision._root import RootPolicy

__all__: list[str] = []

# Events whose publisher writes its own line to the decision log (saga actors
# and start_sagas): the health log would only repeat it (10 of 33 lines per saga).
_LOGGED_BY_PUBLISHER = frozenset({
    "saga_started", "saga_resumed", "saga_step",
    "saga_completed", "saga_compensated", "saga_compensation_failed",
})  # fmt: skip


class _Node:
    """Base of :class:`ActorSystem`: the node's services, its start, shutdown and logging."""

    # Set by ActorSystem.__init__.
    name: str
    var_dir: Path
    shutdown_timeout: float
    resolved_retention_s: float
    _sync: bool
    _map_size: int
    _log_retention: dict[str, int] | None
    _secrets: tuple[str, ...]
    _cells: dict[str, ActorCell]
    _spawn_order: dict[str, int]
    _lock: threading.RLock
    _started: bool
    _closed: bool
    _sealed: bool
    _lock_fd: int | None
    events: EventStream
    post: PostOffice
    _root: RootPolicy
    # Opened by start().
    storage: Storage
    logs: LogManager
    timers: Timers
    _health_log: FilteringBoundLogger
    _audit_log: FilteringBoundLogger
    _retention_timer: Timer

    # --- lifecycle ---------------------------------------------------------

    def start(self) -> Self:
        """Open storage, logs and timers. Raises ConfigError for an unusable var dir."""
        if self._started:
            return self
        try:
            self.var_dir.mkdir(parents=True, exist_ok=True)
            probe = self.var_dir / ".write-probe"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            raise ConfigError(
                f"var dir {str(self.var_dir)!r} is not usable: {exc.strerror or exc}"
            ) from exc
        self._lock_fd = os.open(self.var_dir / "node.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(self._lock_fd)
            self._lock_fd = None
            raise ConfigError(
                f"var dir {str(self.var_dir)!r} is in use by another phalanx node"
            ) from exc
        try:
            self.storage = Storage(
                self.var_dir / "state.lmdb", map_size=self._map_size, sync=self._sync
            )
        except StorageError:
            self._release_lock()
            raise
        try:
            self._open_services()
            self._started = True
            self._sealed = False
            self._event("node_started", None, var_dir=str(self.var_dir))
            self.dead_letters.drain_outbox(self.post.redeliver)
            self._apply_retention()
            self._retention_timer = self.timers.call_every(3600.0, self._apply_retention)
        except BaseException:
            # Invariant: a failed start leaves no thread, open file or lock behind
            # (the storage writer is not a daemon: it would hang interpreter exit).
            self._started = False
            for part in ("timers", "logs"):
                opened = self.__dict__.get(part)
                if opened is not None:
                    opened.close()
            self.storage.close()
            self._release_lock()
            raise
        return self

    def _open_services(self) -> None:
        self.dead_letters: DeadLetterStore = DeadLetterStore(
            self.storage, deliver=self.post.redeliver
        )
        self.post.attach(self.dead_letters, DurableMailboxes(self.storage))
        try:
            self.logs = LogManager(
                self.var_dir / "logs",
                retention_days=self._log_retention,
                secrets=self._secrets,
                node=self.name,
            )
        except ValueError as exc:  # unknown taxonomy, retention < 1 day
            raise ConfigError(f"log settings: {exc}") from exc
        self._health_log = self.logs.logger("health")
        self._audit_log = self.logs.logger("audit")
        self.events.add_listener(self._log_event)
        self.timers = Timers(self.name, on_error=self._timer_error)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.shutdown()

    def shutdown(self, timeout: float | None = None) -> None:
        """Stop every actor in reverse spawn order, then flush and close storage and logs.

        ``timeout`` (default ``shutdown_timeout``) bounds the whole stop: an
        actor still stopping at the deadline is killed, and interrupted if it
        is stuck in Python code, so no thread outlives the system.
        """
        if timeout is None:
            timeout = self.shutdown_timeout
        if self._closed or not self._started:
            self._closed = True
            return
        self._closed = True
        deadline = time.monotonic() + timeout
        # Top-level actors in reverse spawn order; each supervisor stops its own
        # subtree by its children's shutdown specs. Then anything left over.
        for top_level_only in (True, False):
            with self._lock:
                cells = sorted(self._cells.values(), key=lambda c: -self._spawn_order[c.path])
            for cell in cells:
                if top_level_only and cell.parent is not self._root:
                    continue
                if not cell.shutdown(max(0.05, deadline - time.monotonic()), keep_journaled=True):
                    self._event("shutdown_overrun", cell.path)
        self.timers.close()
        self._event("node_stopped", None)
        self._sealed = True
        try:
            self.storage.flush()
        finally:
            self.storage.close()
            self.logs.close()
            self._release_lock()

    def _release_lock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def _require_running(self) -> None:
        if not self._started:
            raise PhalanxError("the actor system is not started (use it as a context manager)")
        if self._closed:
            raise PhalanxError("the actor system is shut down")

    # --- node timers -------------------------------------------------------

    def _apply_retention(self) -> None:
        purged = self.dead_letters.apply_retention(self.resolved_retention_s)
        if purged:
            self._event("dead_letters_purged", None, purged=purged, status="resolved")

    def _timer_error(self, exc: BaseException) -> None:
        self._event("timer_failed", None, error=repr(exc))

    # --- logging -----------------------------------------------------------

    def _event(self, kind: str, path: str | None, **fields: Any) -> Event:
        return self.events.publish(kind, path, **fields)

    def _log_failure(self, path: str, exc: BaseException, env: Envelope | None, where: str) -> None:
        if self._started and not self.logs.closed:
            self._health_log.error(
                "actor_failure",
                actor=path,
                where=where,
                message_id=env.message_id if env is not None else None,
                attempt=env.attempt if env is not None else None,
                exc_info=exc,
            )

    def _log_event(self, event: Event) -> None:
        if not self._started or self.logs.closed or event.kind in _LOGGED_BY_PUBLISHER:
            return
        log = self._audit_log if event.kind == "dead_letter" else self._health_log
        log.info(event.kind, actor=event.path, **event.fields)
