"""The :class:`ActorSystem`: registry, delivery, dead letters, lifecycle of a node."""

from __future__ import annotations

import contextlib
import fcntl
import itertools
import os
import queue
import re
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from types import TracebackType
from typing import Any

from pykka import Future, ThreadingFuture, Timeout

from phalanx.errors import (
    ActorDead,
    AlreadyStarted,
    AskTimeout,
    CircuitOpen,
    ConfigError,
    MailboxFull,
    PhalanxError,
    StorageError,
)
from phalanx.runtime._actor import Actor
from phalanx.runtime._cell import ActorCell, Decider, default_decider
from phalanx.runtime._context import current_path, current_trace
from phalanx.runtime._envelope import Envelope
from phalanx.runtime._events import Event, EventStream
from phalanx.runtime._logging import LogManager
from phalanx.runtime._mailbox import CLOSED, OVERFLOW, Mailbox
from phalanx.runtime._ref import Ref
from phalanx.runtime._timers import Timer, Timers
from phalanx.storage import DeadLetter, DeadLetterStore, Storage
from phalanx.storage._durable import DurableEntry, DurableMailboxes
from phalanx.supervision import Retry

__all__ = ["ActorSystem"]

_PATH = re.compile(r"^(/[A-Za-z0-9_.:@+=-]+)+$")

# Reasons whose asker should see the handler's own exception.
_HANDLER_REASONS = frozenset(
    {"retries_exhausted", "handler_failed", "permanent_error", "validation_failed"}
)


def _ask_error(reason: str, target: str | None) -> PhalanxError:
    if reason == "mailbox_overflow":
        return MailboxFull(f"mailbox of {target} is full; the message was dead-lettered")
    if reason == "circuit_open":
        return CircuitOpen(f"circuit of {target} is open; the message was dead-lettered")
    return ActorDead(f"no live actor at {target} ({reason}); the message was dead-lettered")


class _Counter:
    """A thread-safe counter (``+=`` on an int is not atomic across threads)."""

    __slots__ = ("_lock", "value")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.value = 0

    def add(self, n: int = 1) -> None:
        with self._lock:
            self.value += n


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
    ) -> None:
        self.name = name
        self.var_dir = Path(var_dir)
        self.default_mailbox = mailbox or Mailbox()
        self.default_retry = retry or Retry()
        self.start_timeout = start_timeout
        self.resolved_retention_s = resolved_retention_s
        self._sync = sync
        self._map_size = map_size
        self._log_retention = log_retention_days
        self._secrets = secrets
        self._cells: dict[str, ActorCell] = {}
        self._order = itertools.count()
        self._spawn_order: dict[str, int] = {}
        self._lock = threading.RLock()
        self._sent = _Counter()
        self._dead_lettered = _Counter()
        self._retired_processed = 0
        self._retired_offered = 0
        self._retired_journaled = 0
        self._retired_restarts = 0
        self._dl_by_reason: dict[str, int] = {}
        self._overflow_log: dict[str, tuple[float, int]] = {}
        self._started = False
        self._closed = False
        # True while there is nowhere to put a message: before start, after shutdown.
        self._sealed = True
        self._lock_fd: int | None = None
        self.events = EventStream()

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
        self.dead_letters: DeadLetterStore = DeadLetterStore(self.storage, deliver=self._redeliver)
        self._durable = DurableMailboxes(self.storage)
        self.logs = LogManager(
            self.var_dir / "logs",
            retention_days=self._log_retention,
            secrets=self._secrets,
            node=self.name,
        )
        self._health_log = self.logs.logger("health")
        self._audit_log = self.logs.logger("audit")
        self.events.add_listener(self._log_event)
        self.timers = Timers(self.name, on_error=self._timer_error)
        self._started = True
        self._sealed = False
        self._event("node_started", None, var_dir=str(self.var_dir))
        self.dead_letters.drain_outbox(self._redeliver)
        self._apply_retention()
        self._retention_timer = self.timers.call_every(3600.0, self._apply_retention)
        return self

    def __enter__(self) -> ActorSystem:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.shutdown()

    def shutdown(self, timeout: float = 10.0) -> None:
        """Stop every actor in reverse spawn order, then flush and close storage and logs."""
        if self._closed or not self._started:
            self._closed = True
            return
        self._closed = True
        deadline = time.monotonic() + timeout
        with self._lock:
            cells = sorted(self._cells.values(), key=lambda c: -self._spawn_order[c.path])
        for cell in cells:
            cell.request_stop(keep_journaled=True)
            cell.join(max(0.05, deadline - time.monotonic()))
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
            self._cells[path] = cell
            self._spawn_order[path] = next(self._order)
        if cell.inbox.mailbox.durable:
            self._replay_durable(cell)
        cell.start_incarnation()
        if not cell.wait_first_start(self.start_timeout):
            cell.request_stop()
            raise AskTimeout(f"{path} did not finish on_start within {self.start_timeout}s")
        if cell.start_error is not None:
            cell.join(self.start_timeout)
            raise cell.start_error
        return Ref(self, path)

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
        env = Envelope.outgoing(message)
        cell = self._cells.get(path)
        if cell is None:
            self._sent.add()
            self._dead_letter("dead_target", env, path)
            return
        self._deliver(cell, env)

    def tell_many(self, path: str, messages: Iterable[Any]) -> None:
        """Tell each message in order; a durable mailbox journals them in one commit.

        For a durable mailbox this is the high-throughput form: one commit
        (and one fsync) for the whole batch instead of one per message.
        """
        self._refuse_if_closed()
        envs = [Envelope.outgoing(message) for message in messages]
        cell = self._cells.get(path)
        if cell is None:
            for env in envs:
                self._sent.add()
                self._dead_letter("dead_target", env, path)
            return
        if cell.inbox.mailbox.durable and envs:
            self._durable_append(cell, envs)
        for env in envs:
            self._deliver(cell, env)

    def ask_future(self, path: str, message: Any) -> Future[Any]:
        """Send and return the reply future; delivery errors are set on it."""
        self._refuse_if_closed()
        future: Future[Any] = ThreadingFuture()
        env = Envelope.outgoing(message, future)
        cell = self._cells.get(path)
        if cell is None:
            self._sent.add()
            self._dead_letter("dead_target", env, path)
        else:
            self._deliver(cell, env)
        return future

    def ask(self, path: str, message: Any, timeout: float | None = 5.0) -> Any:
        """Send and wait for the reply (see :meth:`Ref.ask` for the errors)."""
        future = self.ask_future(path, message)
        try:
            return future.get(timeout=timeout)
        except Timeout as exc:
            raise AskTimeout(f"no reply from {path} within {timeout}s") from exc

    def _deliver(self, cell: ActorCell, env: Envelope) -> bool:
        # Counted as sent by Inbox.offer (under its lock: no second lock here).
        if cell.inbox.mailbox.durable and env.durable_key is None:
            self._durable_append(cell, [env])
        spilled, reason = cell.inbox.offer(env)
        if spilled is None:
            return True
        if reason == CLOSED:
            self._sent.add()  # offer() does not count refusals by a closed inbox
        self._dead_letter(reason or OVERFLOW, spilled, cell.path)
        return spilled is not env

    def _count_sent(self) -> None:
        self._sent.add()

    # --- durable mailboxes -------------------------------------------------

    def _durable_append(self, cell: ActorCell, envs: list[Envelope]) -> None:
        with cell._lock:
            first = cell.durable_seq
            cell.durable_seq += len(envs)
        entries = [
            DurableEntry(
                key=self._durable.key(cell.path, first + i),
                message_id=env.message_id,
                message=env.message,
                sender=env.sender,
                attempt=env.attempt,
                enqueued_at=env.enqueued_at,
                trace=dict(env.trace),
            )
            for i, env in enumerate(envs)
        ]
        self._durable.append(entries)  # Invariant: committed before tell returns.
        for env, entry in zip(envs, entries, strict=True):
            env.durable_key = entry.key

    def _durable_ack(self, env: Envelope) -> None:
        if env.durable_key is not None:
            self._durable.ack([env.durable_key])
            env.durable_key = None

    def _replay_durable(self, cell: ActorCell) -> None:
        cell.durable_seq = self._durable.next_seq(cell.path)
        entries = self._durable.load(cell.path)
        for entry in entries:
            env = Envelope(
                entry.message,
                message_id=entry.message_id or None,
                sender=entry.sender,
                attempt=entry.attempt,
                enqueued_at=entry.enqueued_at,
                trace=entry.trace,
            )
            env.durable_key = entry.key
            if isinstance(entry.message, Exception):
                self._dead_letter("validation_failed", env, cell.path, error=entry.message)
                continue
            self._sent.add()
            cell.inbox.append_unbounded(env)
        if entries:
            self._event("durable_replay", cell.path, messages=len(entries))

    # --- dead letters ------------------------------------------------------

    def _dead_letter(
        self, reason: str, env: Envelope, target: str | None, error: BaseException | None = None
    ) -> None:
        """Record an undeliverable envelope. Invariant: every refusal path ends here."""
        future = env.reply_to
        if future is not None:
            exc = error if (error is not None and reason in _HANDLER_REASONS) else None
            if exc is None:
                exc = _ask_error(reason, target)
            with contextlib.suppress(queue.Full):
                future.set_exception((type(exc), exc, exc.__traceback__))
        message = env.message
        dl_id = self.dead_letters.put(
            reason=reason,
            message=message,
            target=target,
            sender=env.sender,
            message_id=env.message_id,
            error=error,
            attempts=env.attempt,
            trace=env.trace,
            dead_letter_id=env.dead_letter_id,
        )
        self._durable_ack(env)
        with self._dead_lettered._lock:
            self._dead_lettered.value += 1
            self._dl_by_reason[reason] = self._dl_by_reason.get(reason, 0) + 1
        self._note_dead_letter(reason, target, dl_id, error)

    def _note_dead_letter(
        self, reason: str, target: str | None, dl_id: str, error: BaseException | None
    ) -> None:
        # Overflow can spill 100k+/s: log it at most once a second per target,
        # with the count. Every dead letter is still a durable record.
        if reason == "mailbox_overflow":
            now = time.monotonic()
            key = target or ""
            last, count = self._overflow_log.get(key, (0.0, 0))
            if now - last < 1.0:
                self._overflow_log[key] = (last, count + 1)
                return
            self._overflow_log[key] = (now, 0)
            self.events.publish("dead_letter", target, reason=reason, id=dl_id, since_last=count)
            return
        self.events.publish(
            "dead_letter",
            target,
            reason=reason,
            id=dl_id,
            error=repr(error) if error is not None else None,
        )

    def _redeliver(self, record: DeadLetter, target: str) -> None:
        env = Envelope(
            record.message,
            message_id=record.message_id,
            sender=record.sender,
            attempt=record.attempts,
            trace=record.trace,
            dead_letter_id=record.id,
        )
        cell = self._cells.get(target)
        if cell is None:
            self._sent.add()
            self._dead_letter("dead_target", env, target)
        else:
            self._deliver(cell, env)

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
        self._event("actor_stopped", cell.path, reason=reason, incarnation=cell.incarnation)

    # --- timers ------------------------------------------------------------

    def _timed_send(self, path: str, message: Any) -> Callable[[], None]:
        trace, sender = dict(current_trace()), current_path()

        def send() -> None:
            env = Envelope(message, sender=sender, trace=trace)
            cell = self._cells.get(path)
            if cell is None:
                self._sent.add()
                self._dead_letter("dead_target", env, path)
            else:
                self._deliver(cell, env)

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
        children = []
        for path in self.paths():
            cell = self._cells.get(path)
            if cell is not None:
                children.append({**cell.stats(), "kind": "actor", "children": []})
        return {
            "path": "/",
            "kind": "supervisor",
            "strategy": "one_for_one",
            "status": "stopped" if self._closed else "running",
            "children": children,
        }

    def counters(self) -> dict[str, int]:
        """Conservation: sent = handled + dead_lettered + queued + journaled (+ in flight).

        ``journaled`` counts durable messages left in the journal at shutdown
        for the next boot to replay.
        """
        with self._lock:
            cells = list(self._cells.values())
            handled = self._retired_processed + sum(c.processed for c in cells)
            offered = self._retired_offered + sum(c.inbox.offered for c in cells)
        return {
            "sent": self._sent.value + offered,
            "handled": handled,
            "dead_lettered": self._dead_lettered.value,
            "queued": sum(len(c.inbox) for c in cells),
            "journaled": self._retired_journaled,
        }

    def totals(self) -> dict[str, Any]:
        """Run totals for this node's lifetime: restarts and dead letters by reason."""
        with self._lock:
            restarts = self._retired_restarts + sum(c.restarts for c in self._cells.values())
        with self._dead_lettered._lock:
            by_reason = dict(self._dl_by_reason)
        return {"restarts": restarts, "dead_letters": by_reason}

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
        if not self._started or self.logs.closed:
            return
        log = self._audit_log if event.kind == "dead_letter" else self._health_log
        log.info(event.kind, actor=event.path, **event.fields)
