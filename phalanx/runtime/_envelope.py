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
from phalanx.runtime._context import _path as _path_var
from phalanx.runtime._context import _trace as _trace_var
from phalanx.runtime._context import current_trace

_new = object.__new__
_time = time.time

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
        "_message_id",
        "attempt",
        "dead_letter_id",
        "durable_key",
        "enqueued_at",
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
        # Made on first use: most envelopes are handled without anyone reading
        # it, and new_id() was 0.5 µs of a ~5 µs tell.
        self._message_id: str | None = message_id
        self.sender: str | None = sender
        self.attempt: int = attempt
        self.enqueued_at: float = time.time() if enqueued_at is None else enqueued_at
        self.trace: Mapping[str, str] = trace if trace is not None else current_trace()
        self.dead_letter_id: str | None = dead_letter_id
        self.durable_key: bytes | None = None

    @property
    def message_id(self) -> str:
        """The message's unique, time-ordered id (made on first access, then fixed)."""
        ident = self._message_id
        if ident is None:
            ident = self._message_id = new_id()
        return ident

    @classmethod
    def outgoing(
        cls,
        message: Any,
        reply_to: Future[Any] | None = None,
        *,
        sender: str | None = None,
        trace: Mapping[str, str] | None = None,
    ) -> Envelope:
        """An envelope for a new send: sender and trace come from the running handler.

        Builds the slots directly (no ``__init__`` call): this is the ``tell``
        hot path, measured at 0.6 µs through ``__init__`` and 0.3 µs this way.
        """
        env = _new(cls)
        env.message = message
        env.reply_to = reply_to
        env._message_id = None
        env.sender = _path_var.get() if sender is None else sender
        env.attempt = 1
        env.enqueued_at = _time()
        env.trace = _trace_var.get() if trace is None else trace
        env.dead_letter_id = None
        env.durable_key = None
        return env

    def __repr__(self) -> str:
        return (
            f"Envelope(id={self.message_id}, message={self.message!r}, "
            f"sender={self.sender!r}, attempt={self.attempt})"
        )
