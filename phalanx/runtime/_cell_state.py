"""The state of an address: slots, counters, the pykka inbox, per-message accounting.

A cell owns the inbox, the counters, the restart state and the current
incarnation. Refs resolve to cells, so a restart is invisible to senders.
This base of :class:`~phalanx.runtime._cell.ActorCell` holds every attribute
(all in ``__slots__``), the per-message calls the actor loop makes after a
handler returns, and the ``stats`` view; the lifecycle is in ``_cell.py``,
the handler-failure policy in ``_cell_failures.py``.

Invariant: only the actor thread writes ``processed`` and the pending acks.
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from _thread import RLock as _RLock
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from pykka import messages as pykka_messages

from phalanx.runtime._actor import Actor
from phalanx.runtime._envelope import Envelope
from phalanx.runtime._flags import Flag, Signals
from phalanx.runtime._mailbox import Inbox, Mailbox
from phalanx.supervision import Directive, Retry
from phalanx.supervision._decider import default_decider

if TYPE_CHECKING:
    from phalanx.runtime._cell import ActorCell
    from phalanx.runtime._system import ActorSystem
    from phalanx.runtime._timers import Timer

__all__ = ["Decider", "Parent"]

Decider = Callable[[BaseException], Directive]
Factory = Callable[..., Actor]


class Parent(Protocol):
    """What a cell reports to: the root policy or an OTP supervisor."""

    def child_exited(
        self, cell: ActorCell, reason: str, exc: BaseException | None, incarnation: int
    ) -> None:
        """An incarnation ended without being asked to (called on the exiting thread).

        ``incarnation`` is the number of the incarnation that ended, captured
        under the cell lock: by the time this runs, a newer one may be running.
        """


class _PykkaInbox:
    """What pykka's ``ActorRef`` sees as the inbox: every put goes through the cell."""

    __slots__ = ("_cell",)

    def __init__(self, cell: ActorCell) -> None:
        self._cell = cell

    def put(self, envelope: Any, /) -> None:
        cell = self._cell
        env = (
            envelope
            if isinstance(envelope, Envelope)
            else Envelope.outgoing(envelope.message, envelope.reply_to)
        )
        if type(env.message) is pykka_messages._ActorStop:
            if cell.inbox.append_unbounded(env):  # a stop request is never refused
                cell.system.post.count_sent()  # bypasses offer(), so counted here
            elif env.reply_to is not None:  # already stopped: never leave stop() waiting
                with contextlib.suppress(queue.Full):
                    env.reply_to.set(None)
            return
        cell.system.post.deliver(cell, env)

    def get(self) -> Any:  # pragma: no cover - the phalanx loop reads the Inbox directly
        return self._cell.inbox.get()

    def empty(self) -> bool:
        return len(self._cell.inbox) == 0


class _CellState:
    """State of one address; the base of :class:`ActorCell` (all of its slots)."""

    # Slots: 37 attributes overflow CPython 3.11's shared-key instance dicts;
    # measured (min of 20x5000) 9.6-10.2 us per cell with a dict, 3.8 us with
    # slots and the lazy Inbox Condition.
    __slots__ = (
        "_ended",
        "_expected_end",
        "_first_start",
        "_keep_journaled",
        "_lock",
        "_pending_acks",
        "_stopping",
        "actor",
        "args",
        "breaker_state",
        "decider",
        "durable_seq",
        "factory",
        "failures",
        "inbox",
        "incarnation",
        "kept_journaled",
        "kind",
        "kwargs",
        "last_directive",
        "parent",
        "path",
        "processed",
        "pykka_inbox",
        "recent_failures",
        "restart_state",
        "restart_timer",
        "restarts",
        "retry",
        "signals",
        "spawned_at",
        "start_error",
        "status",
        "system",
        "terminated",
        "thread",
        "trial_notify",
    )

    def __init__(
        self,
        system: ActorSystem,
        path: str,
        factory: Factory,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        mailbox: Mailbox,
        retry: Retry,
        decider: Decider = default_decider,
    ) -> None:
        self.system = system
        self.path = path
        self.factory = factory
        self.args = args
        self.kwargs = kwargs
        self.retry = retry
        self.decider = decider
        self.inbox = Inbox(mailbox)
        self.pykka_inbox = _PykkaInbox(self)  # type: ignore[arg-type]  # only ActorCell is built
        self.kind = getattr(factory, "__qualname__", type(factory).__qualname__)
        self.actor: Actor | None = None
        self.thread: threading.Thread | None = None
        self.status = "starting"
        self.incarnation = 0
        self.processed = 0
        self.restarts = 0
        self.failures = 0
        self.spawned_at = time.time()
        self.recent_failures: deque[dict[str, Any]] = deque(maxlen=10)
        self.durable_seq = 0
        # Handled durable entries not yet deleted; only the actor thread appends.
        self._pending_acks: list[bytes] = []
        # The supervisor told of every incarnation end it did not ask for.
        self.parent: Parent | None = None
        # The decider's directive for the last handler failure (None after a kill).
        self.last_directive: Directive | None = None
        # Breaker state shown by stats(); the supervisor owns the breaker itself.
        self.breaker_state: str | None = None
        # Set by a supervisor during a half-open trial: called once on the next success.
        self.trial_notify: Callable[[], None] | None = None
        self.restart_timer: Timer | None = None
        # Restart bookkeeping owned by the parent policy (opaque to the cell).
        self.restart_state: Any = None
        self._lock = _RLock()
        self._stopping = False
        # The incarnation a parent asked to end (its end is not reported), if any.
        self._expected_end: int | None = None
        self._keep_journaled = False
        self.kept_journaled = 0
        # One Condition for the lifecycle flags, the cell's three and each
        # incarnation's actor_stopped (see _flags: an Event costs 4-6.5 us).
        self.signals = Signals()
        self._first_start = Flag(self.signals)
        self._ended = Flag(self.signals, True)
        self.start_error: BaseException | None = None
        self.terminated = Flag(self.signals)

    # --- messages ----------------------------------------------------------

    def handled(self, env: Envelope, result: Any) -> None:
        """An envelope was handled: count it, answer the asker, ack durable storage."""
        self.processed += 1  # Invariant: only the actor thread writes this.
        if env.reply_to is not None:
            env.reply_to.set(result)
        if env.durable_key is not None:
            self.ack_later(env)

    def report_trial(self) -> None:
        """A message was handled while a half-open trial was pending: tell the supervisor."""
        notify, self.trial_notify = self.trial_notify, None
        if notify is not None:
            notify()

    def ack_later(self, env: Envelope) -> None:
        """Queue the durable entry of a handled envelope for deletion (actor thread only).

        Deletes go out in batches of up to 64, and whenever the mailbox
        drains, so a crash redelivers at most 64 handled messages (at least
        once) while the journal costs one commit per batch, not per message.
        """
        assert env.durable_key is not None
        acks = self._pending_acks
        acks.append(env.durable_key)
        env.durable_key = None
        if len(acks) >= 64 or not len(self.inbox):
            self.flush_acks()

    def flush_acks(self) -> None:
        """Submit every pending durable delete now."""
        if self._pending_acks:
            acks, self._pending_acks = self._pending_acks, []
            self.system.post.journal.ack(acks)

    # --- views -------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """The ``system.stats(path)`` view (DESIGN section 9)."""
        return {
            "path": self.path,
            "kind": self.kind,
            "status": self.status,
            "mailbox_depth": len(self.inbox),
            "mailbox_capacity": self.inbox.mailbox.capacity,
            "overflow": self.inbox.mailbox.overflow,
            "durable": self.inbox.mailbox.durable,
            "processed": self.processed,
            "restarts": self.restarts,
            "failures": self.failures,
            "incarnation": self.incarnation,
            "breaker": self.breaker_state,
            "spawned_at": self.spawned_at,
        }
