"""Failures: the restart matrix, intensity, backoff, group restarts, escalation, breakers.

Runs on the supervisor's thread, one note at a time (see ``_supervisor``).
"""

from __future__ import annotations

import time

from phalanx.runtime._cell import SHUTDOWN as SHUTDOWN_SIGNAL
from phalanx.supervision._children import _Child, _Exited, _HalfOpen, _Retry, _TrialOk
from phalanx.supervision._core import _SupervisorCore
from phalanx.supervision._intensity import CRASHED, KILLED, should_restart, terminated_by_itself
from phalanx.supervision._policy import Directive, backoff_delay

__all__: list[str] = []


class _Restarts(_SupervisorCore):
    """What follows a child's exit: restart (with backoff), drop, escalate, or open a circuit."""

    def _on_exited(self, note: _Exited) -> None:
        child = self._find(note.path)
        if (
            child is None
            or child.cell is not note.cell
            or note.cell.incarnation != note.incarnation
        ):
            return  # stale: about a cell or an incarnation we already replaced or stopped
        cell = note.cell
        if child.ending == note.incarnation:
            # The late end of an incarnation a group restart asked to end: not a
            # failure. Resume that restart if it was waiting for this child.
            if child.awaiting_end:
                child.awaiting_end = False
                self._on_retry(child.path)
            return
        if child.breaker is not None and child.breaker.state == "half_open":
            child.breaker.record_failure()  # the trial failed: reopen, longer
            self._open_circuit(child)
            return
        directive = cell.last_directive if note.reason == CRASHED else None
        if directive is Directive.ESCALATE:
            self._escalate(f"child {note.path} escalated {note.error!r}")
            return
        restart = directive is not Directive.STOP and should_restart(
            child.spec.restart, note.reason
        )
        if not restart:
            self._drop(child, note.reason)
            return
        if not self._window.add():
            if child.breaker is not None:
                child.breaker.trip("intensity exceeded")
                self._window.reset()
                self._open_circuit(child)
                return
            self._escalate(
                f"restart intensity {self._window.intensity}/{self._window.period}s exceeded "
                f"by {note.path} ({note.reason})"
            )
            return
        self._restart_after_backoff(child, note.reason, note.error)

    def _drop(self, child: _Child, reason: str) -> None:
        """A child that will not be restarted: stop it for good; forget it if temporary."""
        significant = child.spec.significant and terminated_by_itself(child.spec.restart, reason)
        self._terminate(child, finish=True, reason=reason)
        if child.spec.restart == "temporary" or self.strategy == "simple_one_for_one":
            with self._lock:
                self._children.remove(child)
        if significant:
            self._check_auto_shutdown(child)

    def _check_auto_shutdown(self, child: _Child) -> None:
        if self.auto_shutdown == "any_significant":
            self._shutdown_self(f"significant child {child.path} terminated")
        elif self.auto_shutdown == "all_significant":
            alive = [c for c in self._children if c.spec.significant and c.cell is not None]
            if not alive:
                self._shutdown_self("all significant children terminated")

    def _restart_after_backoff(
        self, child: _Child, reason: str, error: BaseException | None
    ) -> None:
        retry = child.spec.retry or self.system.default_retry
        now = time.monotonic()
        if now - child.last_failure > retry.reset_after:
            child.consecutive = 0
        child.consecutive += 1
        child.last_failure = now
        delay = backoff_delay(retry, child.consecutive) if reason != KILLED else 0.0
        group = self._restart_group(child)
        for member in group:
            member.restarting = True
        self.system._event(
            "child_restarting",
            child.path,
            supervisor=self.path,
            supervisor_incarnation=self.incarnation,
            intensity=self._window.intensity,
            period=self._window.period,
            strategy=self.strategy,
            reason=reason,
            error=repr(error) if error is not None else None,
            group=[m.path for m in group],
            backoff_s=round(delay, 4),
        )
        # Siblings stop now (reverse order); everyone restarts after the backoff.
        for member in reversed(group):
            if member is not child:
                self._terminate(member, finish=member.spec.restart == "temporary")
        for member in group:
            if member.cell is not None and member.cell.status != "stopped":
                member.cell.status = "backoff" if delay > 0 else "restarting"
        if delay > 0:
            child.timer = self.system.timers.call_later(
                delay, self._send_self(_Retry(self, child.path))
            )
        else:
            self._on_retry(child.path)

    def _restart_group(self, child: _Child) -> list[_Child]:
        """The children a failure restarts, in start order (OTP strategies)."""
        if self.strategy == "one_for_all":
            return list(self._children)
        if self.strategy == "rest_for_one":
            return self._children.from_child(child)
        return [child]

    def _on_retry(self, path: str) -> None:
        child = self._find(path)
        if child is None or not child.restarting:
            return  # terminated meanwhile (terminate_child wins over a queued retry)
        child.timer = None
        for member in self._restart_group(child):
            if member.spec.restart == "temporary" and member is not child:
                with self._lock:
                    self._children.remove(member)  # temporary bystanders are not restarted
                continue
            cell = member.cell
            if cell is not None and cell.actor is not None and cell.incarnation == member.ending:
                # Asked to end but stuck (a C call): start it, and those after it,
                # once its end arrives (_on_exited), keeping the start order.
                member.awaiting_end = True
                return
            if member.cell is not None and member.cell.actor is not None:
                continue  # still running (not part of the failure)
            error = self._start_child(member)
            if error is not None:
                # A failed restart counts against intensity and is tried again later,
                # so the supervisor keeps serving requests meanwhile (OTP try_again_restart).
                member.restarting = True
                if member.cell is not None:
                    member.cell.status = "restarting"
                if not self._window.add():
                    self._escalate(f"restart of {member.path} keeps failing: {error!r}")
                    return
                retry = member.spec.retry or self.system.default_retry
                member.consecutive += 1
                delay = backoff_delay(retry, member.consecutive)
                member.timer = self.system.timers.call_later(
                    delay, self._send_self(_Retry(self, member.path))
                )
                return

    def _escalate(self, why: str) -> None:
        """Intensity exceeded: stop every child in reverse order, then exit with ``shutdown``."""
        if self._escalating:
            return
        self._shutdown_self(why, kind="supervisor_escalated")

    def _shutdown_self(self, why: str, kind: str = "supervisor_auto_shutdown") -> None:
        self._escalating = True
        self.system._event(kind, self.path, reason=why)
        self._terminate_all()
        # Ends this incarnation with reason shutdown; the parent sees it as an exit.
        self._cell.inbox.put_control(SHUTDOWN_SIGNAL)

    # --- circuit breakers ----------------------------------------------------

    def _open_circuit(self, child: _Child) -> None:
        assert child.breaker is not None
        cell = child.cell
        if cell is not None:
            cell.status = "circuit_open"
            cell.breaker_state = "open"
        delay = child.breaker.reset_timeout
        child.timer = self.system.timers.call_later(
            delay, self._send_self(_HalfOpen(self, child.path))
        )

    def _on_half_open(self, path: str) -> None:
        child = self._find(path)
        if child is None or child.breaker is None or child.cell is None:
            return
        child.timer = None
        state = child.breaker.state
        if state == "open":
            # Fired early, or the deadline moved later (open_for): try again then.
            until = child.breaker.opened_until()
            left = max(0.01, until - time.monotonic()) if until is not None else 0.01
            child.timer = self.system.timers.call_later(
                left, self._send_self(_HalfOpen(self, path))
            )
            return
        if state != "half_open":
            return
        child.cell.trial_notify = self._send_self(_TrialOk(self, path))
        error = self._start_child(child)
        if error is not None:
            child.breaker.record_failure()
            self._open_circuit(child)

    def _on_trial_ok(self, path: str) -> None:
        child = self._find(path)
        if child is not None and child.breaker is not None:
            child.breaker.record_success()
