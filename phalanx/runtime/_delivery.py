"""The post office: every envelope is delivered, journaled, or dead-lettered here.

Invariant (DESIGN section 8.1): every envelope that enters :meth:`PostOffice.send`
ends in exactly one of: an inbox, the dead-letter store, or (durable mailboxes
at shutdown) the journal. The conservation counts are kept here:
``sent = handled + dead_lettered + queued + journaled`` once nothing is in flight.
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from phalanx.errors import ActorDead, CircuitOpen, MailboxFull, PhalanxError
from phalanx.runtime._envelope import Envelope
from phalanx.runtime._events import EventStream
from phalanx.runtime._mailbox import CLOSED, OVERFLOW
from phalanx.storage import DeadLetter, DeadLetterStore
from phalanx.storage._durable import DurableEntry, DurableMailboxes

if TYPE_CHECKING:
    from phalanx.runtime._cell import ActorCell

__all__ = ["PostOffice"]

# Reasons whose asker should see the handler's own exception.
_HANDLER_REASONS = frozenset(
    {"retries_exhausted", "handler_failed", "permanent_error", "validation_failed"}
)


def _ask_error(reason: str, target: str | None) -> PhalanxError:
    if reason == OVERFLOW:
        return MailboxFull(f"mailbox of {target} is full; the message was dead-lettered")
    if reason == "circuit_open":
        return CircuitOpen(f"circuit of {target} is open; the message was dead-lettered")
    return ActorDead(f"no live actor at {target} ({reason}); the message was dead-lettered")


class PostOffice:
    """Routes envelopes to cells by path and records everything undeliverable."""

    def __init__(self, cells: Mapping[str, ActorCell], events: EventStream) -> None:
        self._cells = cells  # the system's live registry (read without a lock: dict.get is atomic)
        self._events = events
        self._lock = threading.Lock()
        self._sent = 0  # envelopes that never reached Inbox.offer (which counts its own)
        self._dead_lettered = 0
        self._by_reason: dict[str, int] = {}
        self._overflow_log: dict[str, tuple[float, int]] = {}
        self.dead_letters: DeadLetterStore
        self.journal: DurableMailboxes

    def attach(self, dead_letters: DeadLetterStore, journal: DurableMailboxes) -> None:
        """Connect the stores (the node's storage is opened at system start)."""
        self.dead_letters = dead_letters
        self.journal = journal

    # --- sending -----------------------------------------------------------

    def count_sent(self, n: int = 1) -> None:
        """Count envelopes that bypass :meth:`deliver` (stop requests, replays)."""
        with self._lock:
            self._sent += n

    def send(self, path: str, env: Envelope) -> bool:
        """Deliver ``env`` to the actor at ``path``, or dead-letter it as ``dead_target``."""
        cell = self._cells.get(path)
        if cell is None:
            self.count_sent()
            self.dead_letter("dead_target", env, path)
            return False
        return self.deliver(cell, env)

    def send_many(self, path: str, envs: Sequence[Envelope]) -> None:
        """Deliver in order; a durable mailbox journals the whole batch in one commit."""
        cell = self._cells.get(path)
        if cell is not None and cell.inbox.durable and envs:
            self.append_journal(cell, envs)
        for env in envs:
            self.send(path, env)

    def deliver(self, cell: ActorCell, env: Envelope) -> bool:
        """Queue ``env`` in ``cell``'s inbox; whatever spills is dead-lettered."""
        if cell.breaker_state == "open":
            self.count_sent()
            self.dead_letter("circuit_open", env, cell.path)
            return False
        # Counted as sent by Inbox.offer, under its own lock.
        if cell.inbox.durable and env.durable_key is None:
            self.append_journal(cell, [env])
        spilled, reason = cell.inbox.offer(env)
        if spilled is None:
            return True
        if reason == CLOSED:
            self.count_sent()  # offer() does not count refusals by a closed inbox
        self.dead_letter(reason or OVERFLOW, spilled, cell.path)
        return spilled is not env

    def redeliver(self, record: DeadLetter, target: str) -> None:
        """The dead-letter store's redrive hook: send the record's message again."""
        env = Envelope(
            record.message,
            message_id=record.message_id,
            sender=record.sender,
            attempt=record.attempts,
            trace=record.trace,
            dead_letter_id=record.id,
        )
        self.send(target, env)

    # --- durable mailboxes -------------------------------------------------

    def append_journal(self, cell: ActorCell, envs: Sequence[Envelope]) -> None:
        """Journal envelopes for a durable mailbox; returns once committed."""
        with cell._lock:
            first = cell.durable_seq
            cell.durable_seq += len(envs)
        entries = [
            DurableEntry(
                key=self.journal.key(cell.path, first + i),
                message_id=env.message_id,
                message=env.message,
                sender=env.sender,
                attempt=env.attempt,
                enqueued_at=env.enqueued_at,
                trace=dict(env.trace),
            )
            for i, env in enumerate(envs)
        ]
        self.journal.append(entries)  # Invariant: committed before tell returns.
        for env, entry in zip(envs, entries, strict=True):
            env.durable_key = entry.key

    def ack_now(self, env: Envelope) -> None:
        """Delete the journal entry of an envelope that left the system."""
        if env.durable_key is not None:
            self.journal.ack([env.durable_key])
            env.durable_key = None

    def replay(self, cell: ActorCell) -> int:
        """Queue the unfinished journaled messages of ``cell``, oldest first."""
        cell.durable_seq = self.journal.next_seq(cell.path)
        entries = self.journal.load(cell.path)
        for entry in entries:
            env = Envelope(
                entry.message,
                message_id=entry.message_id or None,
                sender=entry.sender,
                attempt=entry.attempt,
                enqueued_at=entry.enqueued_at,
                trace=entry.trace,
            )
            env.durable_key = entry.key
            self.count_sent()
            if isinstance(entry.message, Exception):  # undecodable: keep it, loudly
                self.dead_letter("validation_failed", env, cell.path, error=entry.message)
                continue
            cell.inbox.append_unbounded(env)
        return len(entries)

    # --- dead letters ------------------------------------------------------

    def dead_letter(
        self, reason: str, env: Envelope, target: str | None, error: BaseException | None = None
    ) -> None:
        """Record an undeliverable envelope. Invariant: every refusal path ends here."""
        future = env.reply_to
        if future is not None:
            exc = error if (error is not None and reason in _HANDLER_REASONS) else None
            if exc is None:
                exc = _ask_error(reason, target)
            with contextlib.suppress(queue.Full):  # already answered
                future.set_exception((type(exc), exc, exc.__traceback__))
        dl_id = self.dead_letters.put(
            reason=reason,
            message=env.message,
            target=target,
            sender=env.sender,
            message_id=env.message_id,
            error=error,
            attempts=env.attempt,
            trace=env.trace,
            dead_letter_id=env.dead_letter_id,
        )
        self.ack_now(env)
        with self._lock:
            self._dead_lettered += 1
            self._by_reason[reason] = self._by_reason.get(reason, 0) + 1
        self._publish(reason, target, dl_id, error)

    def _publish(
        self, reason: str, target: str | None, dl_id: str, error: BaseException | None
    ) -> None:
        # Overflow can spill 100k+/s: publish it at most once a second per
        # target, with the count. Every dead letter is still a durable record.
        if reason == OVERFLOW:
            now = time.monotonic()
            key = target or ""
            last, count = self._overflow_log.get(key, (0.0, 0))
            if now - last < 1.0:
                self._overflow_log[key] = (last, count + 1)
                return
            self._overflow_log[key] = (now, 0)
            self._events.publish("dead_letter", target, reason=reason, id=dl_id, since_last=count)
            return
        self._events.publish(
            "dead_letter",
            target,
            reason=reason,
            id=dl_id,
            error=repr(error) if error is not None else None,
        )

    # --- counts ------------------------------------------------------------

    def counts(self) -> tuple[int, int, dict[str, int]]:
        """``(sent outside offer, dead_lettered, dead letters by reason)``."""
        with self._lock:
            return self._sent, self._dead_lettered, dict(self._by_reason)
