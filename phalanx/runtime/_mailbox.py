"""Bounded mailboxes: the :class:`Mailbox` settings and the inbox queue.

The inbox belongs to the actor's *address* (its cell), not to an incarnation,
so a restart keeps every queued message.
"""

from __future__ import annotations

import threading
import time
from _thread import RLock as _RLock
from collections import deque
from dataclasses import dataclass
from typing import Literal

from phalanx.errors import ConfigError
from phalanx.runtime._envelope import Envelope

__all__ = ["CLOSED", "OVERFLOW", "STOPPED", "Control", "Inbox", "Mailbox", "Overflow"]

# Why offer() spilled an envelope (dead-letter reasons).
OVERFLOW = "mailbox_overflow"
CLOSED = "dead_target"  # the address had already stopped for good
STOPPED = "actor_stopped"  # it stopped while a blocked sender waited

Overflow = Literal["dead_letter", "drop_oldest", "block"]
_OVERFLOWS: tuple[str, ...] = ("dead_letter", "drop_oldest", "block")


@dataclass(frozen=True, slots=True)
class Mailbox:
    """Mailbox settings for one actor (DESIGN section 9).

    On overflow, ``dead_letter`` dead-letters the new message,
    ``drop_oldest`` dead-letters the oldest queued one, and ``block`` makes
    the sender wait up to ``block_timeout`` seconds and then dead-letters the
    new message. ``durable=True`` appends each message to LMDB before ``tell``
    returns and removes it after its handler finishes.
    """

    capacity: int = 1000
    overflow: Overflow = "dead_letter"
    block_timeout: float = 1.0
    durable: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.capacity, bool) or not isinstance(self.capacity, int):
            raise ConfigError(f"Mailbox.capacity must be an int, got {self.capacity!r}")
        if self.capacity < 1:
            raise ConfigError(f"Mailbox.capacity must be >= 1, got {self.capacity}")
        if self.overflow not in _OVERFLOWS:
            raise ConfigError(
                f"Mailbox.overflow must be one of {_OVERFLOWS}, got {self.overflow!r}"
            )
        if self.block_timeout < 0:
            raise ConfigError(f"Mailbox.block_timeout must be >= 0, got {self.block_timeout}")


class Control:
    """A control signal for the actor loop; it bypasses capacity and queues first."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"Control({self.name})"


class Inbox:
    """A bounded FIFO of envelopes plus a priority lane for control signals.

    Invariants:
    - ``len(self)`` never exceeds ``capacity`` through :meth:`offer`; only
      :meth:`put_head` (redelivery of a message that was already counted)
      may exceed it, by the one message being redelivered.
    - once :meth:`close` has run, :meth:`offer` accepts nothing, so a message
      either is in the list :meth:`close` returned or was refused to its
      sender: none is lost between the two.
    - ``_waiting`` counts the threads inside ``_cond.wait`` (the consumer, and
      under ``block`` the blocked senders), read and written under ``_lock``:
      a change notifies only when it is not zero, and a waiter counts itself
      before it releases the lock to wait, so no wake-up is missed.

    The lock is an RLock: ``with`` on it and the Condition's ownership checks
    are then C calls; ``Condition(Lock())`` probes three missing methods at
    construction (~4 us per spawn) and runs Python-level fallbacks on every
    notify and wait. The Condition is made by the first wait (it is only
    touched while ``_waiting`` is not zero).
    """

    __slots__ = (
        "_block",
        "_capacity",
        "_closed",
        "_cond",
        "_control",
        "_items",
        "_lock",
        "_mailbox",
        "_waiting",
        "durable",
        "offered",
    )

    def __init__(self, mailbox: Mailbox) -> None:
        self._mailbox = mailbox
        self._capacity = mailbox.capacity
        self._items: deque[Envelope] = deque()
        self._control: deque[Control] = deque()
        self._lock = _RLock()
        self._cond: threading.Condition | None = None
        self._waiting = 0
        self._closed = False
        # Only under "block" do senders wait on the condition too; otherwise
        # the actor thread is the sole waiter and notify() is enough.
        self._block = mailbox.overflow == "block"
        # Every envelope ever offered (accepted or not), for conservation counts.
        self.offered = 0
        # mailbox.durable, read by every deliver (an attribute, not a property call).
        self.durable = mailbox.durable

    @property
    def mailbox(self) -> Mailbox:
        """The settings this inbox enforces."""
        return self._mailbox

    def __len__(self) -> int:
        return len(self._items)

    @property
    def closed(self) -> bool:
        """True once the address stopped for good."""
        return self._closed

    def _wait(self, timeout: float | None = None) -> None:
        # Called with _lock held.
        cond = self._cond
        if cond is None:
            cond = self._cond = threading.Condition(self._lock)
        self._waiting += 1
        try:
            cond.wait(timeout)
        finally:
            self._waiting -= 1

    def _wake(self, everyone: bool) -> None:
        # Called with _lock held and _waiting > 0 (so the Condition exists).
        assert self._cond is not None
        if everyone:
            self._cond.notify_all()
        else:
            self._cond.notify()

    def offer(self, envelope: Envelope) -> tuple[Envelope | None, str | None]:
        """Queue ``envelope`` under the overflow policy.

        Returns ``(spilled, reason)``: ``spilled`` is the envelope that must now
        be dead-lettered with ``reason`` (the new one when refused, the evicted
        oldest one under ``drop_oldest``), or ``(None, None)``.
        """
        with self._lock:
            if self._closed:
                return envelope, CLOSED  # not counted: the cell's totals are final
            self.offered += 1
            items = self._items
            if len(items) >= self._capacity:
                policy = self._mailbox.overflow
                if policy == "drop_oldest":
                    evicted = items.popleft()
                    items.append(envelope)
                    if self._waiting:
                        self._wake(False)
                    return evicted, OVERFLOW
                if policy != "block":
                    return envelope, OVERFLOW
                deadline = time.monotonic() + self._mailbox.block_timeout
                while len(items) >= self._capacity and not self._closed:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        return envelope, OVERFLOW
                    self._wait(remaining)
                if self._closed:
                    return envelope, STOPPED
            items.append(envelope)
            if self._waiting:
                self._wake(self._block)
            return None, None

    def put_head(self, envelope: Envelope) -> None:
        """Queue ``envelope`` first (redelivery after a crash); ignores capacity."""
        with self._lock:
            self._items.appendleft(envelope)
            if self._waiting:
                self._wake(True)

    def append_unbounded(self, envelope: Envelope) -> bool:
        """Queue ``envelope`` last, ignoring capacity (control-plane notes, replays).

        Returns False, queuing nothing, once the inbox is closed.
        """
        with self._lock:
            if self._closed:
                return False
            self._items.append(envelope)
            if self._waiting:
                self._wake(True)
            return True

    def put_control(self, signal: Control) -> None:
        """Queue a control signal ahead of every message."""
        with self._lock:
            self._control.append(signal)
            if self._waiting:
                self._wake(True)

    def get(self) -> Envelope | Control:
        """Block until a control signal or an envelope is available; controls first."""
        with self._lock:
            control = self._control
            items = self._items
            while not control and not items:
                if self._closed:  # stopped for good: no consumer may wait forever
                    return Control("shutdown")
                self._wait()
            if control:
                return control.popleft()
            item = items.popleft()
            if self._block and self._waiting:  # wake blocked senders: a slot is free now
                self._wake(True)
            return item

    @property
    def control_pending(self) -> bool:
        """True while a control signal (stop, kill, shutdown) waits to be taken."""
        return bool(self._control)  # a deque read: no lock needed for a snapshot

    def clear_controls(self) -> None:
        """Drop pending control signals (they belong to the incarnation that ended)."""
        with self._lock:
            self._control.clear()

    def close(self) -> list[Envelope]:
        """Refuse all further offers and return every queued envelope, in order."""
        with self._lock:
            self._closed = True
            items = list(self._items)
            self._items.clear()
            self._control.clear()
            if self._waiting:
                self._wake(True)
            return items

    def snapshot(self, limit: int = 20) -> list[Envelope]:
        """The first ``limit`` queued envelopes, for introspection."""
        with self._lock:
            return [env for _, env in zip(range(limit), self._items, strict=False)]
