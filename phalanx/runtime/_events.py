"""The event stream: lifecycle, supervision, breaker, DLQ, order and saga events.

Events are observability, not messages: a subscriber that falls behind loses
its oldest events (counted in ``Subscription.dropped``) rather than slowing
the runtime. Messages are never handled this way; they go to the DLQ.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Event", "EventStream", "Subscription"]


@dataclass(frozen=True, slots=True)
class Event:
    """One event: a ``kind`` such as ``actor_restarted``, the actor ``path``, and fields."""

    kind: str
    path: str | None
    at: float
    fields: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """A JSON-safe dict of the event (fields flattened in)."""
        return {"kind": self.kind, "path": self.path, "at": self.at, **self.fields}


class Subscription:
    """A bounded queue of events for one subscriber; iterate or call :meth:`get`."""

    def __init__(self, stream: EventStream, kinds: frozenset[str] | None, maxsize: int) -> None:
        self._stream = stream
        self.kinds = kinds
        self._events: deque[Event] = deque(maxlen=maxsize)
        self._cond = threading.Condition()
        self.dropped = 0
        self.closed = False

    def _offer(self, event: Event) -> None:
        with self._cond:
            if len(self._events) == self._events.maxlen:
                self.dropped += 1
            self._events.append(event)
            self._cond.notify_all()

    def get(self, timeout: float | None = None) -> Event | None:
        """The next event, or None when ``timeout`` passes or the subscription closes."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while not self._events:
                if self.closed:
                    return None
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return None
                self._cond.wait(remaining)
            return self._events.popleft()

    def wait_for(self, predicate: Callable[[Event], bool], timeout: float = 5.0) -> Event | None:
        """The first event matching ``predicate`` within ``timeout`` seconds, else None."""
        deadline = time.monotonic() + timeout
        while (remaining := deadline - time.monotonic()) > 0:
            event = self.get(remaining)
            if event is None:
                return None
            if predicate(event):
                return event
        return None

    def __iter__(self) -> Iterator[Event]:
        while (event := self.get()) is not None:
            yield event

    def close(self) -> None:
        """Stop receiving events; a blocked :meth:`get` returns None."""
        self._stream._unsubscribe(self)
        with self._cond:
            self.closed = True
            self._cond.notify_all()


class EventStream:
    """Publish/subscribe for runtime events, with a ring of recent ones."""

    def __init__(self, history: int = 1000) -> None:
        self._lock = threading.Lock()
        self._subs: tuple[Subscription, ...] = ()
        self._listeners: tuple[Callable[[Event], None], ...] = ()
        self._recent: deque[Event] = deque(maxlen=history)

    def publish(self, kind: str, path: str | None = None, **fields: Any) -> Event:
        """Record and fan out one event. Never raises because of a listener."""
        event = Event(kind, path, time.time(), fields)
        self._recent.append(event)
        for listener in self._listeners:
            try:  # not contextlib.suppress: that builds a context manager per call
                listener(event)
            except Exception:  # a listener never breaks the publisher
                continue
        for sub in self._subs:
            if sub.kinds is None or kind in sub.kinds:
                sub._offer(event)
        return event

    def subscribe(self, kinds: Iterable[str] | None = None, maxsize: int = 10_000) -> Subscription:
        """A new queue-backed subscription, optionally filtered by kind."""
        sub = Subscription(self, frozenset(kinds) if kinds is not None else None, maxsize)
        with self._lock:
            self._subs = (*self._subs, sub)
        return sub

    def add_listener(self, listener: Callable[[Event], None]) -> None:
        """Call ``listener`` synchronously for every event (keep it fast)."""
        with self._lock:
            self._listeners = (*self._listeners, listener)

    def recent(self, limit: int = 100, kind: str | None = None) -> list[Event]:
        """The last ``limit`` events, oldest first, optionally of one kind."""
        events = [e for e in list(self._recent) if kind is None or e.kind == kind]
        return events[-limit:]

    def _unsubscribe(self, sub: Subscription) -> None:
        with self._lock:
            self._subs = tuple(s for s in self._subs if s is not sub)
