"""The actor cell: everything that belongs to an address rather than an incarnation.

A cell owns the inbox, the counters, the restart state and the current
incarnation. Refs resolve to cells, so a restart is invisible to senders.
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
import traceback
from _thread import RLock as _RLock
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from pydantic import ValidationError
from pykka import messages as pykka_messages

from phalanx.errors import CircuitOpen, UnknownMessage
from phalanx.runtime._actor import Actor, ExitReason, _constructing
from phalanx.runtime._envelope import Envelope
from phalanx.runtime._flags import Flag, Signals
from phalanx.runtime._mailbox import Control, Inbox, Mailbox
from phalanx.supervision import Directive, Retry
from phalanx.supervision._decider import default_decider, retry_budget

if TYPE_CHECKING:
    from phalanx.runtime._system import ActorSystem
    from phalanx.runtime._timers import Timer

__all__ = ["ActorCell", "Decider", "Parent", "default_decider"]

Decider = Callable[[BaseException], Directive]
Factory = Callable[..., Actor]

KILL = Control(ExitReason.KILLED)
SHUTDOWN = Control(ExitReason.SHUTDOWN)

# Seconds to wait for a KILL control to be taken before interrupting (brutal ends).
_KILL_WAIT = 1.0
# Seconds an interrupted incarnation gets to end before its end is given up on.
_INTERRUPT_GRACE = 5.0


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


class ActorCell:
    """State of one address: inbox, incarnation, status, counters, restart policy."""

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
        self.pykka_inbox = _PykkaInbox(self)
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

    # --- incarnations ------------------------------------------------------

    def start_incarnation(self) -> bool:
        """Build a new instance with the factory and start its thread.

        Returns False, starting nothing, while stopping or while the previous
        incarnation has not ended (never two consumers on one inbox); True
        otherwise, even if the factory failed (that end is reported as usual).
        """
        with self._lock:
            if self._stopping or self.actor is not None:
                return False
            self.incarnation += 1
            # Exact without the inbox lock: controls are put under this lock, or by
            # the running incarnation on its own thread (and none runs here).
            if self.inbox.control_pending:
                self.inbox.clear_controls()
            self._ended.clear()
            self.last_directive = None
            _constructing.cell = self
            try:
                actor = self.factory(*self.args, **self.kwargs)
            except Exception as exc:
                _constructing.cell = None
                self.incarnation_ended(None, ExitReason.START_FAILED, exc)
                return True
            finally:
                _constructing.cell = None
            if not isinstance(actor, Actor) or actor._cell is not self:
                self.incarnation_ended(
                    None,
                    ExitReason.START_FAILED,
                    TypeError(f"factory for {self.path} did not return a phalanx Actor"),
                )
                return True
            self.actor = actor
        # Started after the lock is released: the new thread takes it at once
        # (incarnation_started), and holding it here cost two thread switches
        # per spawn. Safe: stops, kills and ends queue controls for this
        # incarnation's thread, which takes them whenever it runs.
        actor._start_actor_loop()
        return True

    def wait_first_start(self, timeout: float) -> bool:
        """Wait until the first incarnation is running or failed to start."""
        return self._first_start.wait(timeout)

    def incarnation_started(self, actor: Actor) -> None:
        """Called on the actor thread once ``on_start`` succeeded."""
        with self._lock:
            self.status = "running"
        self._first_start.set()
        kind = "actor_restarted" if self.incarnation > 1 else "actor_started"
        self.system._event(kind, self.path, incarnation=self.incarnation)

    def incarnation_ended(
        self, actor: Actor | None, reason: str, exc: BaseException | None
    ) -> None:
        """Called when an incarnation ends, on its thread (or the starter's).

        Invariant: the parent hears of every end it did not cause itself,
        except a failed *first* start, which fails the starter instead.
        """
        if actor is not None:
            self.flush_acks()  # on the ending incarnation's thread
        with self._lock:
            if actor is not None and self.actor is not actor:
                return
            self.actor = None
            if self.inbox.control_pending:  # exact, as in start_incarnation (or on its thread)
                self.inbox.clear_controls()
            if exc is not None and reason == ExitReason.START_FAILED:
                self.record_failure(exc, None, where="start")
            first_start_failed = not self._first_start.is_set() and (
                reason == ExitReason.START_FAILED
            )
            if first_start_failed:
                self.start_error = exc
            incarnation = self.incarnation  # Invariant: the one that ended (lock held)
            expected = self._expected_end == incarnation
            if expected:
                self._expected_end = None
            notify = False
            if self._stopping:
                self._finish_stop(reason)
            elif not first_start_failed:
                self.status = "restarting"
                notify = not expected
            self._ended.set()
        self._first_start.set()
        if notify and self.parent is not None:
            self.parent.child_exited(self, reason, exc, incarnation)

    def start(self, timeout: float) -> BaseException | None:
        """Start the next incarnation and wait for its ``on_start``.

        Returns None once it runs, or the error that failed its start (the
        cell is then left ``restarting``, for the caller to retry or finish).
        """
        self.start_error = None
        self._first_start.clear()
        if not self.start_incarnation():
            # A start that timed out earlier may still be stuck (in a C call):
            # this start fails too, rather than wait on an end that is not ours.
            return TimeoutError(f"{self.path}: the previous incarnation has not ended yet")
        if not self._first_start.wait(timeout):
            # Invariant: one consumer per inbox. The slow incarnation is ended
            # (killed, interrupted) before anyone may start another.
            self.end_incarnation(brutal=True, timeout=_KILL_WAIT)
            return TimeoutError(f"{self.path} did not finish on_start within {timeout}s")
        error = self.start_error
        if error is not None and not isinstance(error, Exception):
            # SystemExit/KeyboardInterrupt from on_start: callers re-raise start
            # errors, and must not end their own thread with it.
            wrapped = RuntimeError(f"{self.path} on_start raised {error!r}")
            wrapped.__cause__ = error
            return wrapped
        return error

    def end_incarnation(
        self, *, brutal: bool, timeout: float | None, report_late: bool = False
    ) -> bool:
        """End the current incarnation at a supervisor's request, keeping the address.

        Not a failure: the parent is not told. ``brutal`` skips ``on_stop``
        (a kill). A graceful end that overruns ``timeout`` is killed, and a
        handler or ``on_stop`` stuck in Python code is interrupted. Returns
        True once the incarnation has ended.

        False means it is still running (stuck in a C call, which no interrupt
        reaches). It ends at its next bytecode boundary; with ``report_late``
        that end is reported to the parent (``child_exited``, reason
        ``killed``) so the parent can finish what it started, otherwise it
        stays unreported.
        """
        with self._lock:
            actor = self.actor
            if actor is None:
                return True
            incarnation = self.incarnation
            self._expected_end = incarnation
            self.inbox.put_control(KILL if brutal else SHUTDOWN)
        if self._ended.wait(timeout):
            return True
        with self._lock:
            if self.actor is not actor:
                return True
            self.inbox.put_control(KILL)
        actor._interrupt()
        if self._ended.wait(_INTERRUPT_GRACE):
            return True
        with self._lock:
            if self.actor is not actor:
                return True  # ended just now (its end was not reported)
            if report_late:
                self._expected_end = None
        return False

    def finish(self, reason: str = ExitReason.SHUTDOWN, *, keep_journaled: bool = False) -> None:
        """Stop for good with no incarnation running (a parent decided not to restart)."""
        with self._lock:
            self._keep_journaled = keep_journaled
            if self.restart_timer is not None:
                self.restart_timer.cancel()
                self.restart_timer = None
            if self.actor is None:
                self._finish_stop(reason)
                return
            self._stopping = True
            self.inbox.put_control(SHUTDOWN)

    def _crash_directive(self, exc: BaseException) -> Directive:
        try:
            return self.decider(exc)
        except Exception:
            return Directive.RESTART

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

    def handle_failure(self, actor: Actor, exc: Exception, env: Envelope) -> bool:
        """Apply the directive for a handler failure. True means: keep running."""
        self.record_failure(exc, env, where="handler")
        directive = self._crash_directive(exc)
        self.last_directive = directive
        system = self.system
        if directive is Directive.RESUME:
            if env.reply_to is not None:
                self.processed += 1
                env.reply_to.set_exception((type(exc), exc, exc.__traceback__))
                if env.durable_key is not None:
                    self.ack_later(env)
            else:
                bad_input = isinstance(exc, UnknownMessage | ValidationError)
                reason = "validation_failed" if bad_input else "permanent_error"
                if isinstance(exc, CircuitOpen):
                    reason = "circuit_open"
                system.post.dead_letter(reason, env, self.path, error=exc)
            return True
        if directive is Directive.RESTART:
            fatal: BaseException | None = None
            try:
                actor.pre_restart(exc)
            except Exception as hook_exc:
                self.record_failure(hook_exc, None, where="pre_restart")
            except BaseException as hook_exc:  # SystemExit...: place the message first
                fatal = hook_exc
            budget = retry_budget(exc, self.retry)
            if env.attempt < budget:
                env.attempt += 1
                # Invariant: this thread is the only consumer, so the redelivered
                # envelope is the first one the next incarnation takes.
                self.inbox.put_head(env)
                system._event(
                    "retry_attempt",
                    self.path,
                    message_id=env.message_id,
                    attempt=env.attempt,
                    max_attempts=budget,
                    error=repr(exc),
                )
            else:
                system.post.dead_letter("retries_exhausted", env, self.path, error=exc)
            if fatal is not None:
                raise fatal  # ends the incarnation as a crash with this error
            return False
        system.post.dead_letter("handler_failed", env, self.path, error=exc)
        return False

    def handle_fatal(self, exc: BaseException, env: Envelope) -> None:
        """A handler raised KeyboardInterrupt/SystemExit: fail the message loudly."""
        self.record_failure(exc, env, where="handler")
        self.system.post.dead_letter("handler_failed", env, self.path, error=exc)
        with self._lock:
            self._stopping = True

    def record_failure(self, exc: BaseException, env: Envelope | None, *, where: str) -> None:
        """Keep the failure (with traceback) for ``inspect``, count it, and log it."""
        self.failures += 1
        self.system._log_failure(self.path, exc, env, where)
        self.recent_failures.append(
            {
                "at": time.time(),
                "where": where,
                "incarnation": self.incarnation,
                "error_type": type(exc).__qualname__,
                "error": str(exc),
                "traceback": "".join(traceback.format_exception(exc)),
                "message_id": env.message_id if env is not None else None,
                "attempt": env.attempt if env is not None else None,
            }
        )

    # --- control -----------------------------------------------------------

    def kill(self) -> bool:
        """End the current incarnation abruptly (a crash with reason ``killed``)."""
        with self._lock:
            if self.actor is None or self._stopping:
                return False
            self.inbox.put_control(KILL)
            return True

    def request_stop(self, *, keep_journaled: bool = False) -> None:
        """Stop for good: the incarnation finishes its message, runs ``on_stop``, ends.

        With ``keep_journaled`` (node shutdown), queued messages of a durable
        mailbox stay in the journal for the next boot instead of being
        dead-lettered; everything else queued is dead-lettered as usual.
        """
        with self._lock:
            if self.status == "stopped" or self._stopping:
                return
            self._stopping = True
            self._keep_journaled = keep_journaled
            if self.restart_timer is not None:
                self.restart_timer.cancel()
                self.restart_timer = None
            if self.actor is None:
                self._finish_stop(ExitReason.SHUTDOWN)
                return
            self.inbox.put_control(SHUTDOWN)

    def shutdown(self, timeout: float, *, keep_journaled: bool = False) -> bool:
        """Stop for good within ``timeout``: graceful first, then killed and interrupted.

        Returns True once stopped and its thread has exited.
        """
        self.request_stop(keep_journaled=keep_journaled)
        if self.join(timeout):
            return True
        with self._lock:
            actor = self.actor
            if actor is not None:
                self.inbox.put_control(KILL)
        if actor is not None:
            actor._interrupt()
        return self.join(_INTERRUPT_GRACE)

    def join(self, timeout: float | None) -> bool:
        """Wait until stopped for good and the last thread has exited."""
        if not self.terminated.wait(timeout):
            return False
        thread = self.thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
            return not thread.is_alive()
        return True

    def _finish_stop(self, reason: str) -> None:
        # Invariant: called once, with the lock held; after inbox.close() every
        # later offer is refused, so each queued envelope is dead-lettered here.
        if self.status == "stopped":
            return
        self._stopping = True
        self.status = "stopped"
        for env in self.inbox.close():
            if self._keep_journaled and env.durable_key is not None:
                self.kept_journaled += 1  # replayed at the next boot, not lost
                continue
            self.system.post.dead_letter("actor_stopped", env, self.path)
        self.system._retire(self, reason)
        self.terminated.set()

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
