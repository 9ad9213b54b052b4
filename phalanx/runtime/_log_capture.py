"""The calling thread's side of a log line: context, exceptions, and the short path.

Every taxonomy's bound logger has one processor, :class:`_Capture`: the
context (``_add_context``: ``ts`` placeholder, level, event, taxonomy, node,
``actor``, trace ids, then the call's fields, which win) and an exception
belong to the calling thread (contextvars, ``sys.exc_info()``), so they are
taken in the call; masking and rendering happen later, on the writer.

Invariants:
- a buffered line's nested values (lists, dicts, objects) are masked into a
  JSON-ready copy in the call, so a caller that mutates them later cannot
  change the line; top-level strings and scalars are immutable and are masked
  on the writer thread;
- a buffered call with scalar fields only, no bound context, no positional
  arguments and no exception (every tracer line) skips structlog's generic
  chain: its bound logger (``_buffered_logger_class``, a subclass of
  structlog's filtering bound logger) takes the level, event, actor path, a
  copy of the trace ids, the fields and the time, and the writer thread
  assembles the very dict the processor chain would have made
  (``tests/test_logging_fast_path.py`` compares both, byte for byte).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import structlog
from structlog.typing import EventDict, FilteringBoundLogger

from phalanx.runtime._context import _path as _path_var
from phalanx.runtime._context import _trace as _trace_var
from phalanx.runtime._context import current_path, current_trace
from phalanx.runtime._log_masking import mask_value

_Step = Callable[[Any, str, EventDict], EventDict]

_LEVEL_NAMES = {"warn": "warning", "exception": "error"}


def _add_context(taxonomy: str, node: str) -> _Step:
    def add_context(logger: Any, method_name: str, event_dict: EventDict) -> EventDict:
        # A new dict in reading order: ts (a placeholder, stamped last), level, event,
        # taxonomy, node, actor, trace ids, then the call's fields, which win over
        # any of these (a later key keeps the earlier key's position).
        out = {
            "ts": None,
            "level": _LEVEL_NAMES.get(method_name, method_name),
            "event": None,
            "taxonomy": taxonomy,
            "node": node,
        }
        path = current_path()
        if path is not None:
            out["actor"] = path
        out.update(current_trace())
        out.update(event_dict)
        return out

    return add_context


_IMMUTABLE = frozenset({str, int, bool, float, type(None)})


class _Capture:
    """The only processor of a buffered taxonomy, on the logging thread.

    The context and an exception belong to the calling thread (contextvars,
    ``sys.exc_info()``); the call's time goes in ``ts`` (stamped as text later)
    and the dict itself to ``BufferedWriter.msg``. The exception renderer runs
    only when asked for. :meth:`line` is the same step for a call with no
    exception, made by the taxonomy's bound logger without structlog's
    generic chain (see :func:`_buffered_logger_class`).
    """

    def __init__(
        self,
        taxonomy: str,
        node: str,
        context: _Step,
        exceptions: _Step,
        secrets: Callable[[], Sequence[str]],
    ) -> None:
        self.taxonomy = taxonomy
        self.node = node
        self._context = context
        self._exceptions = exceptions
        self._secrets = secrets

    def __call__(self, logger: Any, method_name: str, event_dict: EventDict) -> Any:
        out = self._context(logger, method_name, event_dict)
        if "exc_info" in out:
            out = self._exceptions(logger, method_name, out)
        self._snapshot(out)
        out["ts"] = time.time()
        return (out,), {}

    def _snapshot(self, out: EventDict) -> None:
        for key, value in out.items():
            if type(value) not in _IMMUTABLE:  # snapshot now: the caller may mutate it
                out[key] = mask_value(value, self._secrets(), 1)

    def line(self, level: str, event: str, bound: Mapping[str, Any], kw: EventDict) -> EventDict:
        """The dict ``__call__`` makes for ``event`` with no exception, in the same key order.

        Equal to ``_add_context`` over structlog's event dict (the bound context,
        then the call's fields, then ``event``), snapshot and stamped.
        """
        trace = _trace_var.get()
        out = self._assemble(level, event, _path_var.get(), trace, bound, kw)
        self._snapshot(out)
        out["ts"] = time.time()
        return out

    def _assemble(
        self,
        level: str,
        event: str,
        path: str | None,
        trace: Mapping[str, str],
        bound: Mapping[str, Any],
        kw: EventDict,
    ) -> EventDict:
        out: EventDict = {
            "ts": None,
            "level": level,
            "event": event,
            "taxonomy": self.taxonomy,
            "node": self.node,
        }
        if path is not None:
            out["actor"] = path
        if trace:
            out.update(trace)
        if bound:
            out.update(bound)
        out.update(kw)
        out["event"] = event  # structlog sets it last: it wins over a bound "event"
        return out

    def deferred(self, level: str, event: str, kw: EventDict) -> _Deferred:
        """What :meth:`line` needs, taken now; :meth:`expand` makes the line on the writer thread.

        Only for a call whose fields are all immutable scalars and whose logger
        has no bound context (a tracer line): nothing in it can change later.
        The trace mapping is copied (it is the caller's contextvar value).
        """
        trace = _trace_var.get()
        return (
            self, level, event, _path_var.get(), dict(trace) if trace else _NO_TRACE, kw,
            time.time(),
        )  # fmt: skip

    def expand(self, item: _Deferred) -> EventDict:
        """The line :meth:`line` would have made at the call (on the writer thread)."""
        _, level, event, path, trace, kw, ts = item
        out = self._assemble(level, event, path, trace, _NO_TRACE, kw)
        out["ts"] = ts
        return out


_NO_TRACE: Mapping[str, Any] = {}


#: (capture, level, event, actor path, trace, fields, ts): a plain tuple, as a
#: NamedTuple's Python-level __new__ would cost the calling thread ~0.5 us more.
_Deferred = tuple[_Capture, str, str, str | None, Mapping[str, str], EventDict, float]


def _buffered_logger_class(level: int | str) -> type[FilteringBoundLogger]:
    """structlog's filtering bound logger for ``level``, with a shorter enabled-level method.

    A call with no positional arguments and no ``exc_info`` (every hot-path
    line) hands the writer what the line is made of (:meth:`_Capture.deferred`,
    scalar fields and no bound context) or the line itself (:meth:`_Capture.line`);
    any other call takes the base class's method and the processor chain
    (``_Capture``), which gives the same line. Measured on a tracer
    line (11 fields, 2 trace ids, tight loop): structlog's path ~9 us on the
    calling thread, this one ~4 us.
    """
    base: Any = structlog.make_filtering_bound_logger(level)
    namespace: dict[str, Any] = {}
    for name in ("debug", "info", "warning", "error", "critical"):
        if base.is_enabled_for(None, getattr(logging, name.upper())):
            namespace[name] = _fast_method(name, getattr(base, name))
    for alias, name in (("warn", "warning"), ("msg", "info"), ("fatal", "critical")):
        if name in namespace:
            namespace[alias] = namespace[name]
    cls: type[FilteringBoundLogger] = type(f"Buffered{base.__name__}", (base,), namespace)
    return cls


def _fast_method(name: str, slow: Callable[..., Any]) -> Callable[..., Any]:
    level = _LEVEL_NAMES.get(name, name)

    def meth(self: Any, event: str, *args: Any, **kw: Any) -> Any:
        context = self._context
        if args or "exc_info" in kw or "exc_info" in context:
            return slow(self, event, *args, **kw)
        capture: _Capture = self._processors[0]
        # Scalars only (every tracer line; one C-level pass over the field types):
        # the writer thread builds the dict.
        if not context and _IMMUTABLE.issuperset(map(type, kw.values())):
            self._logger.msg(capture.deferred(level, event, kw))
            return None
        self._logger.msg(capture.line(level, event, context, kw))
        return None

    meth.__name__ = name
    return meth
