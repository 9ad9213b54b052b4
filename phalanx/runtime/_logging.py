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
- a buffered line's nested values are snapshot in the call, and a tracer line
  skips structlog's generic chain, with the same bytes in the file (see
  :mod:`phalanx.runtime._log_capture`); masking is
  :mod:`phalanx.runtime._log_masking`, rendering :mod:`phalanx.runtime._log_render`.
Measured (2 cores, py3.11, structlog 26, median of 3 x 30k): ~61k lines/s for a
tracer-shaped line (10 fields, 3 trace ids, actor, 1 registered secret); the same
chain through a stdlib ``Logger`` + handler: ~48k lines/s.
"""

from __future__ import annotations

import logging.handlers
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import structlog
from structlog.tracebacks import ExceptionDictTransformer
from structlog.typing import FilteringBoundLogger

from phalanx.runtime._log_capture import _add_context, _buffered_logger_class, _Capture
from phalanx.runtime._log_masking import _MIN_SECRET_LEN, mask_value
from phalanx.runtime._log_render import _LineRenderer
from phalanx.runtime._log_writers import (
    BufferedWriter,
    HandlerWriter,
    ImmediateWriter,
    gz_namer,
    gz_rotator,
)

__all__ = ["BUFFERED", "TAXONOMIES", "LogManager"]

TAXONOMIES: tuple[str, ...] = ("decision", "order", "tracer", "audit", "health")
#: Taxonomies whose lines are rendered and written by a writer thread (see BufferedWriter).
BUFFERED: tuple[str, ...] = ("tracer", "decision", "health")


class LogManager(_LineRenderer):
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
