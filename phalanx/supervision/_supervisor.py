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

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal

from phalanx.errors import (
    AlreadyPresent,
    AlreadyStarted,
    ChildNotFound,
    ChildRestarting,
    ChildRunning,
    ConfigError,
    SupervisorStartFailed,
)
from phalanx.runtime._actor import Actor
from phalanx.runtime._cell import SHUTDOWN as SHUTDOWN_SIGNAL
from phalanx.runtime._envelope import Envelope
from phalanx.runtime._ref import Ref
from phalanx.supervision._intensity import (
    CRASHED,
    KILLED,
    SHUTDOWN,
    START_FAILED,
    RestartWindow,
    should_restart,
    terminated_by_itself,
)
from phalanx.supervision._policy import Directive, backoff_delay
from phalanx.supervision._spec import ChildSpec, Strategy

if TYPE_CHECKING:
    from phalanx.runtime._cell import ActorCell
    from phalanx.runtime._timers import Timer
    from phalanx.supervision._breaker import CircuitBreaker

__all__ = ["AutoShutdown", "Supervisor", "SupervisorRef"]

AutoShutdown = Literal["never", "any_significant", "all_significant"]


@dataclass
class _Child:
    """One child as its supervisor sees it (OTP ``#child{}``)."""

    spec: ChildSpec
    path: str
    cell: ActorCell | None = None
    restarting: bool = False
    consecutive: int = 0
    last_failure: float = 0.0
    timer: Timer | None = None
    breaker: CircuitBreaker | None = None
    incarnations: set[int] = field(default_factory=set)
    # The last incarnation a group restart asked to end: its end is no failure.
    ending: int | None = None
    # The group restart stopped at this child until its ``ending`` incarnation ends.
    awaiting_end: bool = False


# Internal messages name the Supervisor instance they are for (``owner``): the
# mailbox outlives an incarnation, and a successor must not act on them.


@dataclass(frozen=True)
class _Exited:
    owner: object
    cell: ActorCell
    incarnation: int
    reason: str
    error: BaseException | None

    @property
    def path(self) -> str:
        return self.cell.path


@dataclass(frozen=True)
class _Retry:
    owner: object
    path: str


@dataclass(frozen=True)
class _HalfOpen:
    owner: object
    path: str


@dataclass(frozen=True)
class _TrialOk:
    owner: object
    path: str


@dataclass(frozen=True)
class _Call:
    op: str
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)


def _always_resume(exc: BaseException) -> Directive:
    # A supervisor answers a bad request with an error and keeps supervising.
    return Directive.RESUME


class Supervisor(Actor):
    """Supervises children by OTP rules, plus retry with backoff and circuit breakers."""

    decider: Callable[[BaseException], Directive] = staticmethod(_always_resume)

    def __init__(
        self,
        strategy: Strategy = "one_for_one",
        intensity: int = 3,
        period: float = 5.0,
        children: Sequence[ChildSpec] = (),
        auto_shutdown: AutoShutdown = "never",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        _validate(strategy, children, auto_shutdown)
        self.strategy = strategy
        self.auto_shutdown = auto_shutdown
        self._window = RestartWindow(intensity, period, clock)
        self._specs = list(children)
        self._children: list[_Child] = []
        self._lock = threading.Lock()  # guards _children for readers on other threads
        self._dynamic_seq = 0
        self._escalating = False

    # --- lifecycle -----------------------------------------------------------

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

    def _after_incarnation(self, reason: str) -> None:
        # Whatever ended this incarnation (stop, escalation, crash, kill), its
        # children end with it, as linked processes do in OTP.
        self._terminate_all(keep_journaled=reason == START_FAILED)

    def on_receive(self, message: Any) -> Any:
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

    # Called on the exiting child's thread: hand the news to our own thread.
    def child_exited(
        self, cell: ActorCell, reason: str, exc: BaseException | None, incarnation: int
    ) -> None:
        """The parent hook of every child cell (see ``runtime.Parent``)."""
        note = _Exited(self, cell, incarnation, reason, exc)
        if self._cell.inbox.append_unbounded(Envelope(note, sender=cell.path)):
            self.system.post.count_sent()

    # --- starting and stopping children -------------------------------------

    def _child_path(self, child_id: str) -> str:
        return f"{self.path.rstrip('/')}/{child_id}"

    def _start_child(self, child: _Child) -> BaseException | None:
        """Start (or restart) one child and wait for its ``on_start``."""
        spec = child.spec
        cell = child.cell
        if cell is not None and cell.status == "stopped":
            cell = child.cell = None  # stopped for good behind our back (system.stop)
        if cell is None:
            cell = self.system._new_cell(
                child.path,
                _factory_of(spec),
                tuple(spec.args),
                dict(spec.kwargs),
                mailbox=spec.mailbox,
                retry=spec.retry,
                decider=_always_resume if spec.is_supervisor else spec.decider,
            )
            cell.parent = self
            if spec.breaker is not None and child.breaker is None:
                from phalanx.supervision._breaker import CircuitBreaker  # noqa: PLC0415

                child.breaker = CircuitBreaker(
                    spec.breaker, name=child.path, on_change=self._breaker_changed(child)
                )
            child.cell = cell
        else:
            cell.restarts += 1
            cell.status = "restarting"
        error = cell.start(self.system.start_timeout)
        if error is None:
            child.restarting = False
            child.incarnations.add(cell.incarnation)
        return error

    def _terminate(
        self,
        child: _Child,
        *,
        finish: bool,
        reason: str = SHUTDOWN,
        keep_journaled: bool = False,
    ) -> None:
        """End a child's incarnation by its shutdown spec; ``finish`` stops it for good.

        ``reason`` is the exit reason reported when it is finished (the child's
        own, when it ended by itself and is not restarted). Its queued durable
        messages stay journaled only with ``keep_journaled`` or at node
        shutdown (see the module docstring); otherwise they are dead-lettered.

        Not finishing (a group restart), a child that does not end in time is
        marked ``ending``: its end is reported later and completes the restart.
        """
        if child.timer is not None:
            child.timer.cancel()
            child.timer = None
        cell = child.cell
        if cell is None:
            return
        incarnation = cell.incarnation  # only this thread starts our children
        shutdown = child.spec.shutdown
        report_late = not finish
        if shutdown == "brutal_kill":
            ended = cell.end_incarnation(brutal=True, timeout=1.0, report_late=report_late)
        elif shutdown == "infinity":
            ended = cell.end_incarnation(brutal=False, timeout=None, report_late=report_late)
        else:
            ended = cell.end_incarnation(
                brutal=False, timeout=float(shutdown), report_late=report_late
            )
        if not finish:
            # Ended or not (then its end is reported late), that end is ours.
            child.ending = incarnation
            child.awaiting_end = False
            if not ended:
                self.system._event("child_end_overrun", child.path, supervisor=self.path)
        if finish:
            keep = keep_journaled or self.system._closed  # node shutdown: keep for next boot
            cell.finish(reason, keep_journaled=keep)
            cell.join(5.0)
            child.cell = None
            child.restarting = False
            child.ending = None
            child.awaiting_end = False

    def _terminate_all(self, *, keep_journaled: bool = False) -> None:
        """Stop every child for good: reverse start order, or in parallel if dynamic."""
        with self._lock:
            children = list(reversed(self._children))
        if self.strategy == "simple_one_for_one":
            threads = [
                threading.Thread(
                    target=self._terminate,
                    args=(child,),
                    kwargs={"finish": True, "keep_journaled": keep_journaled},
                    name=f"phalanx-sup-stop:{child.path}",
                )
                for child in children
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()  # one shared timer: each child's own spec bounds it
        else:
            for child in children:
                self._terminate(child, finish=True, keep_journaled=keep_journaled)

    # --- failures ------------------------------------------------------------

    def _find(self, path: str) -> _Child | None:
        for child in self._children:
            if child.path == path:
                return child
        return None

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
            return self._children[self._children.index(child) :]
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

    def _breaker_changed(self, child: _Child) -> Callable[[str, str, float], None]:
        def changed(old: str, new: str, reset_timeout: float) -> None:
            if child.cell is not None:
                child.cell.breaker_state = new
                if new == "closed" and child.cell.status == "circuit_open":
                    child.cell.status = "running"
            self.system._event(
                "breaker_state",
                child.path,
                old=old,
                new=new,
                reset_timeout_s=round(reset_timeout, 4),
            )

        return changed

    # --- the dynamic API (runs on the supervisor's thread) ------------------

    def _api_start_child(self, spec_or_args: Any, kwargs: dict[str, Any]) -> str:
        if self.strategy == "simple_one_for_one":
            template = self._specs[0]
            child_id = kwargs.pop("child_id", None)
            if child_id is None:
                self._dynamic_seq += 1
                child_id = f"{template.id}-{self._dynamic_seq}"
            spec = replace(
                template,
                id=child_id,
                args=(*template.args, *spec_or_args),
                kwargs={**template.kwargs, **kwargs},
            )
        else:
            spec = spec_or_args
            if not isinstance(spec, ChildSpec):
                raise TypeError(f"start_child needs a ChildSpec, got {type(spec).__qualname__}")
        _validate("one_for_one", [spec], self.auto_shutdown)  # significant-child rules
        existing = next((c for c in self._children if c.spec.id == spec.id), None)
        if existing is not None:
            live = existing.cell is not None and existing.cell.status != "stopped"
            if live and not existing.restarting:
                raise AlreadyStarted(f"child {spec.id!r} is already started at {existing.path}")
            raise AlreadyPresent(f"child {spec.id!r} exists but is not running")
        child = _Child(spec, self._child_path(spec.id))
        error = self._start_child(child)
        if error is not None:
            if child.cell is not None:
                child.cell.finish(START_FAILED, keep_journaled=True)
            raise error
        with self._lock:
            self._children.append(child)
        return child.path

    def _child_by_id(self, key: str) -> _Child:
        for child in self._children:
            if key in (child.spec.id, child.path):
                return child
        raise ChildNotFound(f"no child {key!r} under {self.path}")

    def _api_terminate_child(self, key: str) -> None:
        if self.strategy == "simple_one_for_one" and key.startswith(self._child_path("")):
            known = any(key == c.path for c in self._children)
            if not known and not self.system.is_alive(key):
                return  # OTP: terminating a dynamic child that is already gone is ok
        child = self._child_by_id(key)
        stranded = self._stranded_by(child)
        self._terminate(child, finish=True)
        if child.spec.restart == "temporary" or self.strategy == "simple_one_for_one":
            with self._lock:
                self._children.remove(child)
        # OTP: the siblings its pending group restart had stopped stay terminated.
        for member in stranded:
            self._terminate(member, finish=True)
            if member.spec.restart == "temporary":
                with self._lock:
                    self._children.remove(member)

    def _stranded_by(self, child: _Child) -> list[_Child]:
        """Group members whose restart only ``child``'s pending retry would carry out."""
        holds_retry = child.restarting and (child.timer is not None or child.awaiting_end)
        if not holds_retry or self.strategy == "simple_one_for_one":
            return []
        return [
            m
            for m in self._restart_group(child)
            if m is not child and m.restarting and m.timer is None and not m.awaiting_end
        ]

    def _api_restart_child(self, key: str) -> str:
        child = self._child_by_id(key)
        if child.restarting:
            raise ChildRestarting(f"child {key!r} is restarting")
        if child.cell is not None and child.cell.status != "stopped":
            raise ChildRunning(f"child {key!r} is running")
        error = self._start_child(child)
        if error is not None:
            if child.cell is not None:
                child.cell.finish(START_FAILED, keep_journaled=True)
                child.cell = None
            raise error
        return child.path

    def _api_delete_child(self, key: str) -> None:
        child = self._child_by_id(key)
        if child.restarting:
            raise ChildRestarting(f"child {key!r} is restarting")
        if child.cell is not None and child.cell.status != "stopped":
            raise ChildRunning(f"child {key!r} is running")
        with self._lock:
            self._children.remove(child)

    def _api_which_children(self) -> list[dict[str, Any]]:
        return self.children_view()

    def _api_count_children(self) -> dict[str, int]:
        view = self.children_view()
        return {
            # OTP counts the template, not the dynamic children, under simple_one_for_one.
            "specs": 1 if self.strategy == "simple_one_for_one" else len(view),
            "active": sum(1 for c in view if c["status"] == "running"),
            "supervisors": sum(1 for c in view if c["type"] == "supervisor"),
            "workers": sum(1 for c in view if c["type"] == "worker"),
        }

    # --- views (safe from any thread) -----------------------------------------

    def children_view(self) -> list[dict[str, Any]]:
        """OTP ``which_children``: id, path, status, type, restart, significant."""
        with self._lock:
            children = list(self._children)
        out = []
        for child in children:
            cell = child.cell
            if child.restarting or (cell is not None and cell.status in ("restarting", "backoff")):
                status = "restarting"
            elif cell is not None and cell.status == "circuit_open":
                status = "circuit_open"
            elif cell is not None and cell.status != "stopped":
                status = "running"
            else:
                status = "undefined"
            out.append(
                {
                    "id": child.spec.id,
                    "path": child.path,
                    "status": status,
                    "type": "supervisor" if child.spec.is_supervisor else "worker",
                    "restart": child.spec.restart,
                    "significant": child.spec.significant,
                }
            )
        return out

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

    def _send_self(self, message: Any) -> Callable[[], None]:
        inbox = self._cell.inbox
        post = self.system.post

        def send() -> None:
            if inbox.append_unbounded(Envelope(message, sender=self._cell.path)):
                post.count_sent()

        return send


def _factory_of(spec: ChildSpec) -> Callable[..., Actor]:
    if spec.is_supervisor:
        return lambda: Supervisor(
            strategy=spec.strategy or "one_for_one",
            intensity=spec.intensity,
            period=spec.period,
            children=spec.children,
            auto_shutdown=spec.auto_shutdown,
        )
    assert spec.factory is not None
    return spec.factory


def _validate(strategy: str, children: Sequence[ChildSpec], auto_shutdown: str) -> None:
    if auto_shutdown not in ("never", "any_significant", "all_significant"):
        raise ConfigError(
            f"auto_shutdown must be never|any_significant|all_significant, got {auto_shutdown!r}"
        )
    ids = [c.id for c in children]
    if len(ids) != len(set(ids)):
        raise ConfigError(f"duplicate child ids: {sorted({i for i in ids if ids.count(i) > 1})}")
    if strategy == "simple_one_for_one" and len(children) != 1:
        raise ConfigError("simple_one_for_one needs exactly one child spec (the template)")
    for spec in children:
        if spec.significant and auto_shutdown == "never":
            raise ConfigError(f"child {spec.id!r} is significant but auto_shutdown is 'never'")
        if spec.significant and spec.restart == "permanent":
            raise ConfigError(f"child {spec.id!r}: a significant child cannot be permanent")


class SupervisorRef(Ref):
    """A :class:`Ref` to a supervisor, with the OTP dynamic API.

    Each call is an ``ask`` to the supervisor, so it waits its turn behind
    child exits and restarts already queued. Errors are typed, one per OTP
    error return: ``AlreadyStarted``, ``AlreadyPresent``, ``ChildNotFound``,
    ``ChildRunning``, ``ChildRestarting``.
    """

    __slots__ = ()

    def _call(self, op: str, *args: Any, timeout: float | None = 30.0, **kwargs: Any) -> Any:
        return self.ask(_Call(op, args, kwargs), timeout=timeout)

    def start_child(self, spec_or_arg: Any = None, *args: Any, **kwargs: Any) -> Ref:
        """Start a child from a ChildSpec, or (simple_one_for_one) with extra args.

        For ``simple_one_for_one``, positional args are appended to the
        template's, keyword args override its kwargs, and ``child_id=`` names
        the child (default ``<template id>-<n>``).
        """
        if isinstance(spec_or_arg, ChildSpec):
            path = self._call("start_child", spec_or_arg, {})
        else:
            extra = args if spec_or_arg is None else (spec_or_arg, *args)
            path = self._call("start_child", extra, dict(kwargs))
        return Ref(self._system, path)

    def terminate_child(self, child: str | Ref) -> None:
        """Stop a child by its shutdown spec; its spec is kept unless temporary or dynamic."""
        self._call("terminate_child", child.path if isinstance(child, Ref) else child)

    def restart_child(self, child_id: str) -> Ref:
        """Start a terminated child again from its kept spec."""
        return Ref(self._system, self._call("restart_child", child_id))

    def delete_child(self, child_id: str) -> None:
        """Forget a terminated child's spec."""
        self._call("delete_child", child_id)

    def which_children(self) -> list[dict[str, Any]]:
        """Each child: id, path, status (running|restarting|circuit_open|undefined), type."""
        result: list[dict[str, Any]] = self._call("which_children")
        return result

    def count_children(self) -> dict[str, int]:
        """OTP counts: specs, active, supervisors, workers."""
        result: dict[str, int] = self._call("count_children")
        return result
