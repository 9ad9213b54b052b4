"""The :class:`ActorSystem`: the registry of addresses and the lifecycle of a node.

This module holds the registry (spawn, supervise, addresses), the send path
(tell, ask: the hot path), control (kill, stop, retire) and timed sends. The
node's services, start and shutdown are in ``_system_node.py``; the views
(stats, inspect, tree, counters) in ``_system_views.py``.
"""

from __future__ import annotations

import itertools
import os
import re
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pykka import Future, Timeout

from phalanx.errors import ActorDead, AlreadyStarted, AskTimeout
from phalanx.runtime._actor import Actor
from phalanx.runtime._cell import ActorCell
from phalanx.runtime._cell_state import Decider
from phalanx.runtime._context import current_path, current_trace
from phalanx.runtime._delivery import PostOffice
from phalanx.runtime._envelope import Envelope
from phalanx.runtime._events import EventStream
from phalanx.runtime._future import ReplyFuture
from phalanx.runtime._mailbox import Mailbox
from phalanx.runtime._ref import Ref
from phalanx.runtime._system_views import _SystemViews
from phalanx.runtime._timers import Timer
from phalanx.supervision import ChildSpec, Retry, Strategy
from phalanx.supervision._decider import default_decider
from phalanx.supervision._root import RootPolicy

if TYPE_CHECKING:
    from phalanx.supervision._supervisor import AutoShutdown, SupervisorRef

__all__ = ["ActorSystem"]

_PATH = re.compile(r"^(/[A-Za-z0-9_.:@+=-]+)+$")


class ActorSystem(_SystemViews):
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
        # Imported here: the supervisor actor builds on this package, so a
        # module-level import would make importing a supervision module first
        # (in a fresh interpreter) a circular import.
        from phalanx.supervision._supervisor import Supervisor, SupervisorRef, _always_resume  # noqa: PLC0415

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
