"""Per-message trace context.

Invariant: the trace context is bound for exactly one message at a time. The
actor loop binds it with :func:`trace_scope` around each handler call and the
token reset restores the previous value, so nothing leaks from one message
into the next on the same pykka thread.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

__all__ = ["TRACE_KEYS", "current_path", "current_trace", "trace_scope"]

#: The correlation ids an envelope may carry (DESIGN section 3).
TRACE_KEYS: tuple[str, ...] = (
    "session_id",
    "decision_id",
    "order_req_id",
    "client_order_id",
    "exchange_order_id",
    "saga_id",
)

_EMPTY: Mapping[str, str] = {}
_trace: contextvars.ContextVar[Mapping[str, str]] = contextvars.ContextVar(
    "phalanx_trace", default=_EMPTY
)
_path: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "phalanx_actor_path", default=None
)


def current_trace() -> Mapping[str, str]:
    """The trace ids bound for the message being handled (empty outside one)."""
    return _trace.get()


def current_path() -> str | None:
    """The path of the actor whose handler is running on this thread, if any."""
    return _path.get()


@contextmanager
def trace_scope(
    trace: Mapping[str, str] | None = None, *, path: str | None = None, **ids: str
) -> Iterator[Mapping[str, str]]:
    """Bind trace ids (merged over the current ones) for the ``with`` block."""
    merged = dict(_trace.get())
    if trace:
        merged.update(trace)
    if ids:
        merged.update(ids)
    token = _trace.set(merged)
    path_token = _path.set(path) if path is not None else None
    try:
        yield merged
    finally:
        _trace.reset(token)
        if path_token is not None:
            _path.reset(path_token)
