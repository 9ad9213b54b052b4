"""The actor cell: everything that belongs to an address rather than an incarnation.

A cell owns the inbox, the counters, the restart state and the current
incarnation. Refs resolve to cells, so a restart is invisible to senders.
This module holds its lifecycle: starting an incarnation, its end (reported
to the parent unless the parent asked for it), ending one at a supervisor's
request, and stopping for good. The attributes and per-message accounting are
in ``_cell_state.py``, the handler-failure policy in ``_cell_failures.py``.
"""

from __future__ import annotations

import threading

from phalanx.runtime._actor import Actor, ExitReason, _constructing
from phalanx.runtime._cell_failures import _CellFailures
from phalanx.runtime._mailbox import Control

__all__ = ["ActorCell"]

KILL = Control(ExitReason.KILLED)
SHUTDOWN = Control(ExitReason.SHUTDOWN)

# Seconds to wait for a KILL control to be taken before interrupting (brutal ends).
_KILL_WAIT = 1.0
# Seconds an interrupted incarnation gets to end before its end is given up on.
_INTERRUPT_GRACE = 5.0


class ActorCell(_CellFailures):
    """State of one address: inbox, incarnation, status, counters, restart policy."""

    __slots__ = ()

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
