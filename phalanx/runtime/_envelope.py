"""Envelopes: every message travels in one.

Our :class:`Envelope` subclasses pykka's, so pykka's own ``ActorRef.tell`` /
``ask`` / proxy calls and ours share one mailbox and one loop.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from pykka import Future
from pykka._envelope import Envelope as _PykkaEnvelope

from phalanx._ids import new_id
from phalanx.runtime._context import current_path, current_trace

__all__ = ["Envelope"]


class Envelope(_PykkaEnvelope[Any]):
    """A message plus its delivery metadata (DESIGN section 3).

    ``attempt`` starts at 1 and goes up by one on each redelivery.
    ``dead_letter_id`` is set when the message came back from the dead-letter
    store, so a new failure updates the same record and keeps its history.
    ``durable_key`` is the LMDB key of a durable-mailbox entry, acked after the
    handler finishes.
    """

    __slots__ = (
        "attempt",
        "dead_letter_id",
        "durable_key",
        "enqueued_at",
        "message_id",
        "sender",
        "trace",
    )

    def __init__(
        self,
        message: Any,
        reply_to: Future[Any] | None = None,
        *,
        message_id: str | None = None,
        sender: str | None = None,
        attempt: int = 1,
        enqueued_at: float | None = None,
        trace: Mapping[str, str] | None = None,
        dead_letter_id: str | None = None,
    ) -> None:
        super().__init__(message, reply_to)
        self.message_id: str = message_id or new_id()
        self.sender: str | None = sender
        self.attempt: int = attempt
        self.enqueued_at: float = time.time() if enqueued_at is None else enqueued_at
        self.trace: Mapping[str, str] = trace if trace is not None else current_trace()
        self.dead_letter_id: str | None = dead_letter_id
        self.durable_key: bytes | None = None

    @classmethod
    def outgoing(
        cls,
        message: Any,
        reply_to: Future[Any] | None = None,
        *,
        sender: str | None = None,
        trace: Mapping[str, str] | None = None,
    ) -> Envelope:
        """An envelope for a new send: sender and trace come from the running handler."""
        return cls(
            message,
            reply_to,
            sender=sender if sender is not None else current_path(),
            trace=trace,
        )

    def __repr__(self) -> str:
        return (
            f"Envelope(id={self.message_id}, message={self.message!r}, "
            f"sender={self.sender!r}, attempt={self.attempt})"
        )
