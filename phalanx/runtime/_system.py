"""The :class:`ActorSystem`: the registry of addresses and the lifecycle of a node."""

from __future__ import annotations

import fcntl
import itertools
import os
import re
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from pykka import Future, Timeout

from phalanx.errors import (
    ActorDead,
    AlreadyStarted,
    AskTimeout,
    ConfigError,
    PhalanxError,
    StorageError,
)
from phalanx.runtime._actor import Actor
from phalanx.runtime._cell import ActorCell
from phalanx.runtime._cell_state import Decider
from phalanx.runtime._context import current_path, current_trace
from phalanx.runtime._delivery import PostOffice
from phalanx.runtime._envelope import Envelope
from phalanx.runtime._events import Event, EventStream
from phalanx.runtime._future import ReplyFuture
from phalanx.runtime._logging import LogManager
from phalanx.runtime._mailbox import Mailbox
from phalanx.runtime._ref import Ref
from phalanx.runtime._timers import Timer, Timers
from phalanx.storage import DeadLetterStore, Storage
from phalanx.storage._durable import DurableMailboxes
from phalanx.supervision import ChildSpec, Retry, Strategy
from phalanx.supervision._decider import default_decider
from phalanx.supervision._root import RootPolicy
from phalanx.supervision._supervisor import AutoShutdown, Supervisor, SupervisorRef, _always_resume

__all__ = ["ActorSystem"]

_PATH = re.compile(r"^(/[A-Za-z0-9_.:@+=-]+)+$")
# Events whose publisher writes its own line to the decision log (saga actors
# and start_sagas): the health log would only repeat it (10 of 33 lines per saga).
_LOGGED_BY_PUBLISHER = frozenset({
    "saga_started", "saga_resumed", "saga_step",
    "saga_completed", "saga_compensated", "saga_compensation_failed",
})  # fmt: skip


class ActorSystem:
    """A node: actors addressed by path, their mailboxes, dead letters, logs and timers.

    Use it as a context manager; leaving the block shuts everything down in
    reverse spawn order and waits for every actor thread::

        with ActorSystem(name="demo", var_dir=tmp_path) as system:
            ref = system.spawn(Counter, "/counter")
            ref.tell("inc")
    """

    def __init__(
        self,
        name: str = "phalanx",
        var_dir: str | os.PathLike[str] = "./var",
        *,
        mailbox: Mailbox | None = None,
        retry: Retry | None = None,
        sync: bool = True,
        map_size: int = 64 * 2**20,
        log_retention_days: dict[str, int] | None = None,
        secrets: tuple[str, ...] = (),
        start_timeout: float = 10.0,
        resolved_retention_s: float = 7 * 86400.0,
        shutdown_timeout: float = 5.0,
    ) -> None:
        self.name = name
        self.var_dir = Path(var_dir)
        self.default_mailbox = mailbox or Mailbox()
        self.default_retry = retry or Retry()
        self.start_timeout = start_timeout
        self.resolved_retention_s = resolved_retention_s
        self.shutdown_timeout = shutdown_timeout
        self._sync = sync
        self._map_size = map_size
        self._log_retention = log_retention_days
        self._secrets = secrets
        self._cells: dict[str, ActorCell] = {}
        self._order = itertools.count()
        self._spawn_order: dict[str, int] = {}
        self._lock = threading.RLock()
        self._retired_processed = 0
        self._retired_offered = 0
        self._retired_journaled = 0
        self._retired_restarts = 0
        self._started = False
        self._closed = False
        # True while there is nowhere to put a message: before start, after shutdown.
        self._sealed = True
        self._lock_fd: int | None = None
        self.events = EventStream()
        self.post = PostOffice(self._cells, self.events)
        self._root = RootPolicy(self)

    # --- lifecycle ---------------------------------------------------------

    def start(self) -> ActorSystem:
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

    def __enter__(self) -> ActorSystem:
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

    # --- spawning and addressing ------------------------------------------

    def spawn(
        self,
        factory: type[Actor] | Callable[..., Actor],
        path: str,
        *args: Any,
        mailbox: Mailbox | None = None,
        retry: Retry | None = None,
        decider: Decider | None = None,
        **kwargs: Any,
    ) -> Ref:
        """Start an actor at ``path`` and return its :class:`Ref`.

        The first incarnation's ``on_start`` has run when this returns; if it
        raised, ``spawn`` raises the same exception and nothing stays at ``path``.
        """
        self._require_running()
        cell = self._new_cell(path, factory, args, kwargs, mailbox, retry, decider)
        cell.parent = self._root
        error = cell.start(self.start_timeout)
        if error is not None:
            cell.finish("start_failed", keep_journaled=True)
            cell.join(self.start_timeout)
            if isinstance(error, TimeoutError):
                raise AskTimeout(str(error)) from None
            raise error
        return Ref(self, path)

    def supervise(
        self,
        path: str,
        strategy: Strategy = "one_for_one",
        intensity: int = 3,
        period: float = 5.0,
        children: Sequence[ChildSpec] = (),
        auto_shutdown: AutoShutdown = "never",
        clock: Callable[[], float] = time.monotonic,
    ) -> SupervisorRef:
        """Start an OTP supervisor at ``path`` with ``children`` (started in order).

        Raises :class:`SupervisorStartFailed` if a child fails to start; the
        children already started are stopped again, in reverse order.
        ``clock`` (monotonic seconds) drives the intensity window; tests inject one.
        """
        self.spawn(
            Supervisor,
            path,
            strategy,
            intensity,
            period,
            tuple(children),
            auto_shutdown,
            clock,
            decider=_always_resume,
        )
        return SupervisorRef(self, path)

    def _new_cell(
        self,
        path: str,
        factory: Callable[..., Actor],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        mailbox: Mailbox | None = None,
        retry: Retry | None = None,
        decider: Decider | None = None,
    ) -> ActorCell:
        """Register a new address (no incarnation yet); replays its durable journal."""
        if not isinstance(path, str) or not _PATH.match(path):
            raise ValueError(
                f"invalid actor path {path!r}: use /segment[/segment...] with letters, "
                "digits and . _ : @ + = -"
            )
        cell = ActorCell(
            self,
            path,
            factory,
            args,
            kwargs,
            mailbox or self.default_mailbox,
            retry or self.default_retry,
            decider or default_decider,
        )
        with self._lock:
            if path in self._cells:
                raise AlreadyStarted(f"an actor is already running at {path}")
        replayed = 0
        if cell.inbox.mailbox.durable:
            # Invariant: replay before the path is published, so no new tell can
            # be journaled (or queued) ahead of, or on top of, the unfinished ones.
            replayed = self.post.replay(cell)
        with self._lock:
            if path in self._cells:
                raise AlreadyStarted(f"an actor is already running at {path}")
            self._cells[path] = cell
            self._spawn_order[path] = next(self._order)
        if replayed:
            self._event("durable_replay", path, messages=replayed)
        return cell

    def ref(self, path: str) -> Ref:
        """A :class:`Ref` to ``path``; valid even before or after an actor lives there."""
        return Ref(self, path)

    def is_alive(self, path: str) -> bool:
        """True while an actor is registered at ``path`` and not stopped."""
        cell = self._cells.get(path)
        return cell is not None and cell.status != "stopped"

    def paths(self) -> list[str]:
        """Every registered path, in spawn order."""
        with self._lock:
            return sorted(self._cells, key=self._spawn_order.__getitem__)

    # --- sending -----------------------------------------------------------

    def _refuse_if_closed(self) -> None:
        # Sends during shutdown still reach live actors or the DLQ; only once
        # storage is closed is there nowhere left to put a message.
        if self._sealed:
            state = "shut down" if self._closed else "not started"
            raise ActorDead(f"the actor system is {state}: nothing can be delivered")

    def tell(self, path: str, message: Any) -> None:
        """Send ``message`` to ``path``; undeliverable messages are dead-lettered."""
        if self._sealed:
            self._refuse_if_closed()
        self.post.send(path, Envelope.outgoing(message))

    def tell_many(self, path: str, messages: Iterable[Any]) -> None:
        """Tell each message in order; a durable mailbox journals them in one commit.

        For a durable mailbox this is the high-throughput form: one commit
        (and one fsync) for the whole batch instead of one per message.
        """
        self._refuse_if_closed()
        self.post.send_many(path, [Envelope.outgoing(message) for message in messages])

    def ask_future(self, path: str, message: Any) -> Future[Any]:
        """Send and return the reply future; delivery errors are set on it."""
        if self._sealed:
            self._refuse_if_closed()
        future: Future[Any] = ReplyFuture()
        self.post.send(path, Envelope.outgoing(message, future))
        return future

    def ask(self, path: str, message: Any, timeout: float | None = 5.0) -> Any:
        """Send and wait for the reply (see :meth:`Ref.ask` for the errors)."""
        # ask_future() inlined: this is the request/reply hot path (as tell is).
        if self._sealed:
            self._refuse_if_closed()
        future: Future[Any] = ReplyFuture()
        self.post.send(path, Envelope.outgoing(message, future))
        try:
            return future.get(timeout=timeout)
        except Timeout as exc:
            raise AskTimeout(f"no reply from {path} within {timeout}s") from exc

    # --- control -----------------------------------------------------------

    def _cell(self, path: str) -> ActorCell:
        cell = self._cells.get(path)
        if cell is None:
            raise LookupError(f"no actor at {path}")
        return cell

    def kill(self, path: str) -> bool:
        """End the incarnation at ``path`` abruptly (reason ``killed``); queued messages stay.

        The kill takes effect at the next message boundary: a handler already
        running finishes first (Python threads cannot be interrupted safely).
        """
        killed = self._cell(path).kill()
        if killed:
            self._event("actor_killed", path)
        return killed

    def stop(self, path: str, timeout: float = 5.0) -> bool:
        """Stop the actor at ``path`` for good; queued messages are dead-lettered."""
        cell = self._cell(path)
        cell.request_stop()
        return cell.join(timeout)

    def _retire(self, cell: ActorCell, reason: str) -> None:
        with self._lock:
            if self._cells.get(cell.path) is cell:
                del self._cells[cell.path]
                del self._spawn_order[cell.path]
            self._retired_processed += cell.processed
            self._retired_offered += cell.inbox.offered
            self._retired_journaled += cell.kept_journaled
            self._retired_restarts += cell.restarts
        self._event(
            "actor_stopped",
            cell.path,
            reason=reason,
            incarnation=cell.incarnation,
            journaled=cell.kept_journaled,  # durable messages kept for the next cell/boot
        )

    # --- timers ------------------------------------------------------------

    def _timed_send(self, path: str, message: Any) -> Callable[[], None]:
        trace, sender = dict(current_trace()), current_path()

        def send() -> None:
            self.post.send(path, Envelope(message, sender=sender, trace=trace))

        return send

    def send_after(self, delay: float, path: str | Ref, message: Any) -> Timer:
        """Tell ``message`` to ``path`` once, after ``delay`` seconds."""
        target = path.path if isinstance(path, Ref) else path
        return self.timers.call_later(delay, self._timed_send(target, message))

    def send_every(self, interval: float, path: str | Ref, message: Any) -> Timer:
        """Tell ``message`` to ``path`` every ``interval`` seconds until cancelled."""
        target = path.path if isinstance(path, Ref) else path
        return self.timers.call_every(interval, self._timed_send(target, message))

    def _apply_retention(self) -> None:
        purged = self.dead_letters.apply_retention(self.resolved_retention_s)
        if purged:
            self._event("dead_letters_purged", None, purged=purged, status="resolved")

    def _timer_error(self, exc: BaseException) -> None:
        self._event("timer_failed", None, error=repr(exc))

    # --- views -------------------------------------------------------------

    def stats(self, path: str) -> dict[str, Any]:
        """Status, mailbox depth/capacity, processed, restarts, incarnation, breaker."""
        return self._cell(path).stats()

    def inspect(self, path: str) -> dict[str, Any]:
        """Stats, the actor's ``introspect()``, recent failures and queued messages."""
        cell = self._cell(path)
        actor = cell.actor
        try:
            state = actor.introspect() if actor is not None else None
        except Exception as exc:
            state = {"introspect_error": repr(exc)}
        return {
            **cell.stats(),
            "state": state,
            "recent_failures": list(cell.recent_failures),
            "queued": [
                {"message_id": e.message_id, "message": repr(e.message)[:200], "attempt": e.attempt}
                for e in cell.inbox.snapshot()
            ],
        }

    def tree(self) -> dict[str, Any]:
        """The supervision tree as a nested dict: path, kind, strategy, status, children."""
        with self._lock:
            top = [c for c in self._cells.values() if c.parent is self._root]
            top.sort(key=lambda c: self._spawn_order.get(c.path, 0))
        return {
            "path": "/",
            "kind": "supervisor",
            "strategy": "root",
            "status": "stopped" if self._closed else "running",
            "children": [self._subtree(cell) for cell in top],
        }

    def _subtree(self, cell: ActorCell) -> dict[str, Any]:
        node = {**cell.stats(), "kind": "actor", "children": []}
        actor = cell.actor
        if isinstance(actor, Supervisor):
            node.update(
                kind="supervisor",
                strategy=actor.strategy,
                intensity=actor.introspect()["intensity"],
                period=actor.introspect()["period"],
            )
            for child in actor.children_view():
                child_cell = self._cells.get(child["path"])
                if child_cell is not None:
                    node["children"].append(self._subtree(child_cell))
                else:
                    node["children"].append(
                        {
                            "path": child["path"],
                            "kind": child["type"],
                            "status": child["status"],
                            "children": [],
                        }
                    )
        return node

    def counters(self) -> dict[str, int]:
        """Conservation: sent = handled + dead_lettered + queued + journaled (+ in flight).

        ``journaled`` counts durable messages left in the journal at shutdown
        for the next boot to replay.
        """
        with self._lock:
            cells = list(self._cells.values())
            handled = self._retired_processed + sum(c.processed for c in cells)
            offered = self._retired_offered + sum(c.inbox.offered for c in cells)
        sent, dead_lettered, _ = self.post.counts()
        return {
            "sent": sent + offered,
            "handled": handled,
            "dead_lettered": dead_lettered,
            "queued": sum(len(c.inbox) for c in cells),
            "journaled": self._retired_journaled,
        }

    def totals(self) -> dict[str, Any]:
        """Run totals for this node's lifetime: restarts and dead letters by reason."""
        with self._lock:
            restarts = self._retired_restarts + sum(c.restarts for c in self._cells.values())
        return {"restarts": restarts, "dead_letters": self.post.counts()[2]}

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
