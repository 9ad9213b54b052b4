"""Structured logs: one JSON Lines file per taxonomy under ``VAR/logs/`` (DESIGN section 3).

Each :class:`LogManager` owns its own structlog loggers writing through its own
stdlib ``TimedRotatingFileHandler`` objects (no stdlib ``Logger`` registry, no
propagation), and ``structlog.configure`` is never called, so several nodes in
one process (tests) never share files or configuration.

Invariants:
- every line is one JSON object with ``ts`` (ISO-8601 UTC), ``event``, ``level``,
  ``taxonomy``, ``node``, the trace ids of the message being handled (from
  :func:`current_trace`) and ``actor`` (:func:`current_path`); a field the call
  sets itself wins over the trace;
- masking runs after exceptions are rendered (locals never are) and after every
  non-JSON value is turned into text, so nothing reaches the file unmasked;
- a logging call never raises into the caller because of I/O: write and
  rotation errors are reported on stderr (once per distinct error);
- ``order`` and ``audit`` lines (what was sent to a venue, dead letters and
  operator actions: the forensic trail) are written and flushed to the OS by
  the logging call itself, so a SIGKILL loses none (they take the same short
  path as the buffered taxonomies below, rendered in the call by an
  ``ImmediateWriter``); the :data:`BUFFERED`
  taxonomies (tracer, decision, health: the hot-path observability) are
  rendered and written by a writer thread in batches, in order, within
  ``buffer_interval_s``, and all of them by :meth:`LogManager.close` (see
  :class:`~phalanx.runtime._log_writers.BufferedWriter`); a SIGKILL may lose
  their last interval. The state they describe is in LMDB, not in the logs.
  Measured on the buy-saga bench (33 lines per saga): 5 of ~20 ms CPU per saga
  went to logging when every taxonomy was written in the call;
- a buffered line's nested values (lists, dicts, objects) are masked into a
  JSON-ready copy in the call, so a caller that mutates them later cannot
  change the line; top-level strings and scalars are immutable and are masked
  on the writer thread. A buffered call with scalar fields only, no bound
  context, no positional arguments and no exception (every tracer line)
  skips structlog's generic chain: its bound logger (``_buffered_logger_class``,
  a subclass of structlog's filtering bound logger) takes the level, event,
  actor path, a copy of the trace ids, the fields and the time, and the
  writer thread assembles the very dict the processor chain would have made
  (``tests/test_logging_fast_path.py`` compares both, byte for byte).
Measured (2 cores, py3.11, structlog 26, median of 3 x 30k): ~61k lines/s for a
tracer-shaped line (10 fields, 3 trace ids, actor, 1 registered secret); the same
chain through a stdlib ``Logger`` + handler: ~48k lines/s.
"""

from __future__ import annotations

import functools
import json
import logging.handlers
import math
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, date, datetime
from decimal import Decimal
from enum import Enum
from pathlib import Path, PurePath
from typing import Any
from uuid import UUID

import structlog
from structlog.tracebacks import ExceptionDictTransformer
from structlog.typing import EventDict, FilteringBoundLogger

from phalanx.runtime._context import _path as _path_var
from phalanx.runtime._context import _trace as _trace_var
from phalanx.runtime._context import current_path, current_trace
from phalanx.runtime._log_writers import (
    BufferedWriter,
    HandlerWriter,
    ImmediateWriter,
    gz_namer,
    gz_rotator,
)

__all__ = ["BUFFERED", "MASK", "TAXONOMIES", "LogManager", "mask_secrets", "mask_value"]

TAXONOMIES: tuple[str, ...] = ("decision", "order", "tracer", "audit", "health")
#: Taxonomies whose lines are rendered and written by a writer thread (see BufferedWriter).
BUFFERED: tuple[str, ...] = ("tracer", "decision", "health")
MASK = "***"

_SECRET_NAMES = r"api_?key|secret|signature|password|passphrase|token|private_?key"
_SECRET_KEY_PARTS = ("api_key", "apikey", "secret", "signature", "password", "passphrase",
                     "token", "x-mbx-apikey", "private_key")  # fmt: skip
# ``signature=abc`` (URLs, reprs), ``"apiKey": "abc"`` / ``'secret': 'abc'`` (JSON, dict reprs),
# ``X-MBX-APIKEY: abc`` (headers). The name may carry a prefix/suffix (newSecret, api_key_2).
_INLINE_SECRET = re.compile(
    rf"(?i)((?:{_SECRET_NAMES})[\w-]*[\"']?\s*[=:]\s*[\"']?)([^&\s\"',;}}\]]+)"
)
_MIN_SECRET_LEN = 4  # shorter registered values would mask ordinary words everywhere
_MAX_DEPTH = 20  # deeper structures are rendered as (masked) text
_SCALARS = frozenset({int, bool, type(None)})
_MASK_CACHE_SIZE = 4096  # masked str values kept per manager (cleared when full)
_MASK_CACHE_MAX_LEN = 200  # longer values (messages, reprs) are masked every time
_encode = json.JSONEncoder().encode  # the masked dict is JSON-ready: no fallback needed


def _line_encoder() -> Callable[[Any], str]:
    """``_encode`` for a masked dict, without building a C encoder per call (~1 us a line).

    The same C encoder and arguments ``JSONEncoder.encode`` uses, made once;
    without the circular-reference check, as a masked value is a fresh tree.
    """
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:  # no C accelerator: the stdlib's own path
        return _encode
    default = json.JSONEncoder().default
    encoder = make(
        None, default, json.encoder.encode_basestring_ascii, None, ": ", ", ", False, False, True
    )
    join = "".join

    def encode(obj: Any) -> str:
        return join(encoder(obj, 0))

    return encode


_encode_line = _line_encoder()
_encode_str = json.encoder.encode_basestring_ascii  # what the C encoder writes for a str
_MASK_JSON = _encode_str(MASK)


def _dumps(obj: Any, **_kwargs: Any) -> str:
    # JSONRenderer passes default=<fallback>, which makes json.dumps build a new
    # encoder per line; the masked dict never needs it (only JSON types remain),
    # and the fallback is kept only so that a logging call can never raise.
    try:
        return _encode(obj)
    except (TypeError, ValueError):
        return json.dumps(obj, default=repr)


_second: list[tuple[int, str]] = [(-1, "")]  # the last second formatted, swapped whole
_YEAR_10000 = 253402300800  # datetime's limit (its text has four-digit years)


def _iso(timestamp: float) -> str:
    """``datetime.fromtimestamp(ts, UTC).isoformat(timespec="microseconds")`` with a ``Z``.

    The same text (``tests/test_logging_fast_path.py`` pins it), ~3x cheaper:
    the date and time of day are formatted once per second, and the
    microseconds are rounded as datetime rounds them (half to even, carried
    into the second).
    """
    if not 0 <= timestamp < _YEAR_10000:  # datetime's own rounding, or its error
        return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="microseconds")[:-6] + "Z"
    frac, whole = math.modf(timestamp)
    micros = round(frac * 1e6)
    second = int(whole)
    if micros >= 1_000_000:
        second += 1
        micros -= 1_000_000
    cached = _second[0]
    if cached[0] != second:
        cached = _second[0] = (second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)))
    return f"{cached[1]}.{micros:06d}Z"


_Step = Callable[[Any, str, EventDict], EventDict]


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


@functools.lru_cache(maxsize=4096)
def _is_secret_key(key: object) -> bool:
    # Cached: the same few dozen field names come by on every line.
    return isinstance(key, str) and any(part in key.lower() for part in _SECRET_KEY_PARTS)


def _mask_literals(text: str, secrets: Sequence[str]) -> str:
    for secret in secrets:  # longest first, so a secret containing another is masked whole
        if secret in text:
            text = text.replace(secret, MASK)
    return text


def _mask_text(text: str, secrets: Sequence[str]) -> str:
    text = _mask_literals(text, secrets)
    if "=" in text or ":" in text:  # cheap pre-check; the regex is ~1 us per string
        text = _INLINE_SECRET.sub(rf"\g<1>{MASK}", text)
    return text


def _mask_dict(items: Iterable[tuple[Any, Any]], secrets: Sequence[str], depth: int) -> EventDict:
    # Keys of nested data are text too (an account map keyed by api key), so literals
    # are masked in them; top-level keys are kwarg names written in code (~10% faster).
    return {
        (_mask_literals(k if type(k) is str else str(k), secrets) if depth else k): (
            MASK if _is_secret_key(k) else mask_value(v, secrets, depth)
        )
        for k, v in items
    }


def mask_value(value: Any, secrets: Sequence[str] = (), _depth: int = 0) -> Any:
    """A JSON-ready copy of ``value`` with secret-named keys, ``secrets`` and inline secrets masked.

    Values JSON cannot hold are turned into text first (``repr`` for arbitrary
    objects), so a secret inside an object's repr is masked too.
    """
    kind = type(value)
    if kind is str:
        return _mask_text(value, secrets)
    if kind in _SCALARS:
        return value
    if kind is float:
        return value if math.isfinite(value) else repr(value)  # NaN/Infinity are not JSON
    if _depth < _MAX_DEPTH:
        if kind is dict or isinstance(value, Mapping):
            return _mask_dict(value.items(), secrets, _depth + 1)
        if kind is list or isinstance(value, list | tuple | set | frozenset):
            return [mask_value(v, secrets, _depth + 1) for v in value]
    if isinstance(value, Enum):
        return mask_value(value.value, secrets, _depth + 1)
    if isinstance(value, datetime | date):
        return value.isoformat()
    text = str(value) if isinstance(value, str | Decimal | UUID | PurePath) else repr(value)
    return _mask_text(text, secrets)


def mask_secrets(
    logger: Any, method_name: str, event_dict: EventDict, *, secrets: Sequence[str] = ()
) -> EventDict:
    """structlog processor: mask secret-named fields, literal ``secrets`` and inline secrets.

    Put it after exception rendering and before the renderer. It returns a
    JSON-ready copy. Without ``secrets`` it masks by name and pattern only; a
    :class:`LogManager` passes its node's registered values (see :meth:`LogManager.mask`).
    """
    return _mask_dict(event_dict.items(), secrets, 0)


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


class LogManager:
    """One node's taxonomy loggers: JSON Lines, daily gzip rotation, retention, masking."""

    def __init__(
        self,
        log_dir: Path,
        *,
        retention_days: Mapping[str, int] | None = None,
        default_retention_days: int = 14,
        secrets: Iterable[str] = (),
        node: str = "phalanx",
        level: int | str = "info",
        buffered: Iterable[str] = BUFFERED,
        buffer_interval_s: float = 0.05,
    ) -> None:
        buffered = frozenset(buffered)
        retention = dict(retention_days or {})
        unknown = sorted((set(retention) | buffered) - set(TAXONOMIES))
        if unknown:
            raise ValueError(f"unknown log taxonomies {unknown}; valid: {', '.join(TAXONOMIES)}")
        if min([default_retention_days, *retention.values()]) < 1:
            # backupCount=0 would mean "keep forever" to the stdlib, not "keep none".
            raise ValueError("log retention must be at least 1 day")
        self.log_dir = Path(log_dir)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self._secrets: tuple[str, ...] = ()
        # (secrets, masked text by str value, line fragment by (key, str value))
        self._mask_state: tuple[tuple[str, ...], dict[str, str], dict[Any, str]] = ((), {}, {})
        self._secrets_lock = threading.Lock()
        for value in secrets:
            self.add_secret(value)
        self._closed = False
        self.handlers: dict[str, logging.handlers.TimedRotatingFileHandler] = {}
        self._writers: dict[str, ImmediateWriter | BufferedWriter] = {}
        self._loggers: dict[str, FilteringBoundLogger] = {}
        buffered_wrapper = _buffered_logger_class(level)
        exceptions = structlog.processors.ExceptionRenderer(
            ExceptionDictTransformer(show_locals=False, use_rich=False)  # locals hold keys
        )
        for taxonomy in TAXONOMIES:
            handler = logging.handlers.TimedRotatingFileHandler(
                self.log_dir / f"{taxonomy}.jsonl",
                when="midnight",
                utc=True,
                backupCount=retention.get(taxonomy, default_retention_days),
                encoding="utf-8",
            )
            handler.namer = gz_namer
            handler.rotator = gz_rotator
            self.handlers[taxonomy] = handler
            direct = HandlerWriter(handler)
            # Context and exceptions always on the logging thread (contextvars and
            # sys.exc_info() belong to it); masking after exception rendering, so
            # exception text is masked too. Every taxonomy takes the short path
            # (_Capture + the fragment renderer): the buffered ones render on their
            # writer thread, order and audit in the call (ImmediateWriter).
            context = _add_context(taxonomy, node)
            capture = _Capture(taxonomy, node, context, exceptions, lambda: self._secrets)
            writer: ImmediateWriter | BufferedWriter
            if taxonomy in buffered:
                writer = BufferedWriter(
                    direct,
                    self._render,
                    interval=buffer_interval_s,
                    name=f"phalanx-log:{node}:{taxonomy}",
                )
            else:
                writer = ImmediateWriter(direct, self._render)
            processors: list[Any] = [capture]
            wrapper_class = buffered_wrapper
            self._writers[taxonomy] = writer
            # A concrete bound logger, not wrap_logger's lazy proxy (which
            # rebuilds a logger on every call and consults global config).
            self._loggers[taxonomy] = wrapper_class(writer, processors, {})  # type: ignore[call-arg]

    def logger(self, taxonomy: str) -> FilteringBoundLogger:
        """The bound logger of ``taxonomy``: ``.info(event, **fields)``, ``.exception(...)``."""
        try:
            return self._loggers[taxonomy]
        except KeyError:
            valid = ", ".join(TAXONOMIES)
            raise ValueError(f"unknown log taxonomy {taxonomy!r}; valid: {valid}") from None

    def add_secret(self, value: str) -> None:
        """Mask every later occurrence of this literal value in any string field."""
        with self._secrets_lock:
            if value and len(value) >= _MIN_SECRET_LEN and value not in self._secrets:
                # Replaced whole, never mutated: a concurrent log call sees old or new.
                secrets = tuple(sorted((*self._secrets, value), key=len, reverse=True))
                self._secrets = secrets
                # A new cache with the new secrets, swapped in as one pair: a call that
                # read the old pair fills only the old cache, which is dropped here.
                self._mask_state = (secrets, {}, {})

    def mask(self, value: Any) -> Any:
        """``value`` masked as a log line would be, for output that bypasses the logs."""
        return mask_value(value, self._secrets)

    def _render(self, item: EventDict | _Deferred) -> str:
        # A buffered line, on the writer thread: ts holds the logging call's time.
        event_dict = item[0].expand(item) if isinstance(item, tuple) else item
        try:
            return self._line_text(event_dict)
        except TypeError:  # a key that is not text: the general path below
            return self._line_text_general(event_dict)

    def _line_text_general(self, event_dict: EventDict) -> str:
        masked = self._mask(event_dict)
        masked["ts"] = _iso(event_dict["ts"])
        return _encode_line(masked)  # what structlog's JSONRenderer(serializer=_dumps) does

    def _line_text(self, event_dict: EventDict) -> str:
        """:meth:`_line_text_general`'s text, made from cached ``"key": "value"`` fragments.

        Masking and JSON encoding in one pass, key by key, in order: a str
        value's fragment (masked, then encoded as the C encoder encodes it) is
        kept per (key, value), so the names, endpoints and states every line
        repeats cost one lookup; scalars are written as the encoder writes
        them (``null``, ``true``, ``int.__repr__``, ``float.__repr__``) and
        anything else is masked and encoded as before. Raises TypeError for a
        key that is not a str (the general path handles it).
        ``tests/test_logging_fast_path.py`` checks it against the general path.
        """
        secrets, cache, fragments = self._mask_state
        ts_text = '"ts": "' + _iso(event_dict["ts"]) + '"'  # digits, "-", ":", "T", ".", "Z"
        parts: list[str] = []
        append = parts.append
        for key, value in event_dict.items():
            if key == "ts":
                append(ts_text)
                continue
            kind = type(value)
            if kind is str:
                fragment = fragments.get((key, value))
                if fragment is None:
                    fragment = self._fragment(key, value, secrets, cache, fragments)
                append(fragment)
                continue
            head = _encode_str(key) + ": "  # TypeError unless key is a str
            if _is_secret_key(key):
                append(head + _MASK_JSON)
            elif value is None:
                append(head + "null")
            elif kind is bool:
                append(head + ("true" if value else "false"))
            elif kind is int:
                append(head + int.__repr__(value))
            elif kind is float and math.isfinite(value):
                append(head + float.__repr__(value))
            else:
                append(head + _encode_line(mask_value(value, secrets, 1)))
        return "{" + ", ".join(parts) + "}"

    def _fragment(
        self,
        key: str,
        value: str,
        secrets: Sequence[str],
        cache: dict[str, str],
        fragments: dict[Any, str],
    ) -> str:
        text = MASK if _is_secret_key(key) else cache.get(value) or _mask_text(value, secrets)
        fragment = _encode_str(key) + ": " + _encode_str(text)  # TypeError unless key is a str
        if len(value) <= _MASK_CACHE_MAX_LEN:
            if len(fragments) >= _MASK_CACHE_SIZE:
                fragments.clear()  # unique ids would fill it: start over
            fragments[key, value] = fragment
        return fragment

    def _mask(self, event_dict: EventDict) -> EventDict:
        # mask_secrets, unrolled for the top level (what every line is made of):
        # str values go through a per-manager cache, since the same names, paths,
        # endpoints and states recur on every line. Measured on a tracer line:
        # 24 us -> 7 us for this step.
        secrets, cache, _ = self._mask_state
        masked: EventDict = {}
        for key, value in event_dict.items():
            kind = type(value)
            if _is_secret_key(key):
                masked[key] = MASK
            elif kind is str:
                text = cache.get(value)
                if text is None:
                    text = _mask_text(value, secrets)
                    if len(value) <= _MASK_CACHE_MAX_LEN:
                        if len(cache) >= _MASK_CACHE_SIZE:
                            cache.clear()  # unique ids would fill it: start over
                        cache[value] = text
                masked[key] = text
            elif kind in _SCALARS:
                masked[key] = value
            elif kind is float:  # mask_value's float case, inlined (latencies on every line)
                masked[key] = value if math.isfinite(value) else repr(value)
            else:
                masked[key] = mask_value(value, secrets, 1)
        return masked

    def flush(self) -> None:
        """Write every buffered line now (tests, the shell); otherwise within the interval."""
        for writer in self._writers.values():
            if isinstance(writer, BufferedWriter):
                writer.flush()

    def rollover_all(self) -> None:
        """Rotate every non-empty taxonomy file now (ops, tests); otherwise at midnight UTC."""
        for writer in self._writers.values():
            writer.rollover()

    @property
    def closed(self) -> bool:
        """True once :meth:`close` ran."""
        return self._closed

    def close(self) -> None:
        """Write every buffered line, then close every file. Idempotent; later calls are dropped."""
        if self._closed:
            return
        self._closed = True
        for writer in self._writers.values():
            writer.close()

    def __enter__(self) -> LogManager:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
