"""What a control command sees of its connection, and what it may hand back.

A command is a function of a :class:`Session` and its validated arguments.
It returns a JSON-safe result, or an :class:`AfterReply` when an action must
wait until the reply is on the wire (``shutdown``). Every state-changing
command is audited on the event stream (:func:`_audit`) before it acts.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from phalanx.runtime._control_health import HealthState
    from phalanx.runtime._system import ActorSystem

__all__ = ["AfterReply", "Session", "_audit"]


class Session(Protocol):
    """What a command sees of its connection and server."""

    system: ActorSystem
    health: HealthState
    peer: dict[str, int]

    def subscribe(
        self, request_id: Any, kinds: list[str] | None, path: str | None, history: int
    ) -> int:
        """Open an event subscription streamed on this connection; returns its id."""

    def unsubscribe(self, sub_id: int) -> bool:
        """End a subscription of this connection; False if it was not open."""

    def request_shutdown(self) -> Callable[[], None] | None:
        """The node's stop trigger, or None when this server cannot stop the node."""


@dataclasses.dataclass(frozen=True)
class AfterReply:
    """A result plus an action to run once the reply has been sent (``shutdown``)."""

    result: Any
    action: Callable[[], None]


def _audit(session: Session, cmd: str, path: str | None = None, **fields: Any) -> None:
    """Every state-changing command goes on the event stream (and so the health log)."""
    session.system.events.publish("control_command", path, command=cmd, peer=session.peer, **fields)
