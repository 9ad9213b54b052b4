"""OTP supervisors as actors: strategies, restart types, intensity, escalation, breakers.

A :class:`Supervisor` is an actor; every decision runs on its own thread, one
message at a time, so child exits, restart timers and API calls never race.
Children's exits arrive as control-plane messages that bypass the mailbox
bound (they must never be dropped).

Where Python forces a different mechanism than OTP:
- children are threads, so "kill" ends an incarnation at the next message
  boundary, and code stuck past a shutdown timeout is interrupted with an
  async exception (see ``runtime.ActorKilled``);
- a child's mailbox belongs to its address, so a restarted child keeps the
  messages queued for it (OTP's die with the process); so does the supervisor's
  own, so every internal message names the supervisor instance it is for, and
  exit notes name the child cell and the incarnation that ended: a note meant
  for a predecessor, or about an incarnation already replaced, is dropped;
- a child stuck in a C call cannot be stopped in time: the supervisor moves
  on and finishes that child's part of a group restart when its end arrives.

Durable messages queued for a child belong to its address. When a child is
stopped for good while the node runs (terminate_child, not restarted, an
escalation) they are dead-lettered as ``actor_stopped``; at node shutdown,
and when a start fails (at boot, start_child, restart_child, or a failed
supervisor start), they stay in the journal for the next cell at that path
(a restart, a later start, the next boot), counted as ``journaled`` and
reported in the ``actor_stopped`` event.
"""

from __future__ import annotations

from typing import Any

from phalanx.errors import SupervisorStartFailed
from phalanx.supervision._children import (
    AutoShutdown,
    _always_resume,
    _Call,
    _Child,
    _Exited,
    _HalfOpen,
    _Retry,
    _TrialOk,
)
from phalanx.supervision._dynamic import SupervisorRef, _DynamicApi
from phalanx.supervision._intensity import START_FAILED

__all__ = ["AutoShutdown", "Supervisor", "SupervisorRef", "_Call", "_always_resume"]


class Supervisor(_DynamicApi):
    """Supervises children by OTP rules, plus retry with backoff and circuit breakers.

    Split by concept: state and child start/stop in ``_core``, failures and
    breakers in ``_restarts``, the dynamic API in ``_dynamic``.
    """

    def on_start(self) -> None:
        for spec in self._specs if self.strategy != "simple_one_for_one" else ():
            child = _Child(spec, self._child_path(spec.id))
            error = self._start_child(child)
            if error is not None:
                if child.cell is not None:
                    child.cell.finish(START_FAILED, keep_journaled=True)
                self._terminate_all(keep_journaled=True)
                raise SupervisorStartFailed(
                    f"{self.path}: child {spec.id!r} failed to start: {error!r}"
                ) from error
            with self._lock:
                self._children.append(child)

    def on_receive(self, message: Any) -> Any:
        if type(message) is _Call:  # the dynamic API: every start_child is one
            return getattr(self, f"_api_{message.op}")(*message.args, **message.kwargs)
        if (
            isinstance(message, _Exited | _Retry | _HalfOpen | _TrialOk)
            and message.owner is not self
        ):
            return None  # for a predecessor incarnation of this supervisor: stale
        if isinstance(message, _Exited):
            self._on_exited(message)
        elif isinstance(message, _Retry):
            self._on_retry(message.path)
        elif isinstance(message, _HalfOpen):
            self._on_half_open(message.path)
        elif isinstance(message, _TrialOk):
            self._on_trial_ok(message.path)
        elif isinstance(message, _Call):
            return getattr(self, f"_api_{message.op}")(*message.args, **message.kwargs)
        else:
            return super().on_receive(message)
        return None

    def introspect(self) -> dict[str, Any]:
        return {
            "class": "Supervisor",
            "strategy": self.strategy,
            "intensity": self._window.intensity,
            "period": self._window.period,
            "restarts_in_window": self._window.count(),
            "auto_shutdown": self.auto_shutdown,
            "children": self.children_view(),
        }
