"""Path-addressed references that stay valid across restarts."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from pykka import Future

if TYPE_CHECKING:
    from phalanx.runtime._system import ActorSystem

__all__ = ["Ref"]


class Ref:
    """A stable address: it always reaches the current incarnation at ``path``.

    A Ref holds no actor instance, so it never goes stale: after a restart it
    reaches the new incarnation, and after a stop its messages become dead
    letters with reason ``dead_target``.
    """

    __slots__ = ("_system", "path")

    def __init__(self, system: ActorSystem, path: str) -> None:
        self._system = system
        self.path = path

    def tell(self, message: Any) -> None:
        """Send without waiting. Undeliverable messages are dead-lettered, never dropped."""
        self._system.tell(self.path, message)

    def tell_many(self, messages: Iterable[Any]) -> None:
        """Tell several messages in order (one commit for a durable mailbox)."""
        self._system.tell_many(self.path, messages)

    def ask(self, message: Any, timeout: float | None = 5.0) -> Any:
        """Send and wait for the reply.

        Raises ``MailboxFull``, ``CircuitOpen``, ``ActorDead``, ``AskTimeout``,
        or the handler's own exception when the failure was not retried.
        """
        return self._system.ask(self.path, message, timeout=timeout)

    def ask_future(self, message: Any) -> Future[Any]:
        """Send and return the reply future at once (``future.get(timeout=...)``)."""
        return self._system.ask_future(self.path, message)

    def is_alive(self) -> bool:
        """True while an incarnation is running, starting or being restarted here."""
        return self._system.is_alive(self.path)

    def stats(self) -> dict[str, Any]:
        """Shorthand for ``system.stats(ref.path)``."""
        return self._system.stats(self.path)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Ref) and other._system is self._system and other.path == self.path

    def __hash__(self) -> int:
        return hash(self.path)

    def __repr__(self) -> str:
        return f"Ref({self.path!r})"
