"""The supervisor's core: its state, and starting and stopping one child.

Everything here runs on the supervisor's own thread, except the views that
take ``_lock`` and ``child_exited`` (the exiting child's thread), which only
queues a note.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from phalanx.runtime._actor import Actor
from phalanx.runtime._envelope import Envelope
from phalanx.supervision._children import (
    AutoShutdown,
    _always_resume,
    _Child,
    _ChildTable,
    _Exited,
    _validate,
)
from phalanx.supervision._intensity import SHUTDOWN, START_FAILED, RestartWindow
from phalanx.supervision._policy import Directive
from phalanx.supervision._spec import ChildSpec, Strategy

if TYPE_CHECKING:
    from phalanx.runtime._cell import ActorCell

__all__: list[str] = []


class _SupervisorCore(Actor):
    """State, child start/stop, and the parent hook; strategies live in subclasses."""

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
        self._children = _ChildTable()
        self._lock = threading.Lock()  # guards _children for readers on other threads
        self._dynamic_seq = 0
        self._escalating = False

    def _after_incarnation(self, reason: str) -> None:
        # Whatever ended this incarnation (stop, escalation, crash, kill), its
        # children end with it, as linked processes do in OTP.
        self._terminate_all(keep_journaled=reason == START_FAILED)

    def child_exited(
        self, cell: ActorCell, reason: str, exc: BaseException | None, incarnation: int
    ) -> None:
        """The parent hook of every child cell (see ``runtime.Parent``).

        Called on the exiting child's thread: it only hands the news to ours.
        """
        note = _Exited(self, cell, incarnation, reason, exc)
        # outgoing(): the fields Envelope() sets, without its Python-level __init__.
        if self._cell.inbox.append_unbounded(Envelope.outgoing(note, sender=cell.path)):
            self.system.post.count_sent()

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
        shutdown (see the ``_supervisor`` docstring); otherwise dead-lettered.

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

    def _find(self, path: str) -> _Child | None:
        return self._children.by_path(path)

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

    def _send_self(self, message: Any) -> Callable[[], None]:
        inbox = self._cell.inbox
        post = self.system.post

        def send() -> None:
            if inbox.append_unbounded(Envelope.outgoing(message, sender=self._cell.path)):
                post.count_sent()

        return send


def _factory_of(spec: ChildSpec) -> Callable[..., Actor]:
    if spec.is_supervisor:
        from phalanx.supervision._supervisor import Supervisor  # noqa: PLC0415

        return lambda: Supervisor(
            strategy=spec.strategy or "one_for_one",
            intensity=spec.intensity,
            period=spec.period,
            children=spec.children,
            auto_shutdown=spec.auto_shutdown,
        )
    assert spec.factory is not None
    return spec.factory
