"""Where rendered log lines go: a rotating file, directly or through a batching writer thread.

:class:`HandlerWriter` writes each line as it is logged and flushes it to the
OS, so a killed process loses no line it logged. :class:`BufferedWriter`
(the ``tracer`` taxonomy, on the exchange call path) takes the event dict
instead and leaves masking, rendering and writing to one writer thread that
works in batches.

Measured in place on the exchange round trip (2 cores, py3.11, one core
pinned): a tracer line cost ~110 us on the actor thread when rendered there
(mask 32, JSON 21, write 17, structlog and context the rest; the same line in
a tight loop costs ~28 us: the exchange call in between evicts the caches).
Handed off, the actor thread pays ~20 us and the writer renders a batch at
tight-loop speed. A tracer line (scalar fields only) is not even a dict on
the actor thread any more: the call hands over what the line is made of and
the writer assembles it (``_log_capture._Capture.deferred``); in a tight loop
the call went from ~7 to ~4 us, in place from ~21 to ~16 us.
"""

from __future__ import annotations

import contextlib
import gzip
import logging.handlers
import os
import shutil
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["BufferedWriter", "HandlerWriter", "gz_namer", "gz_rotator"]

_ROLLOVER_RETRY_S = 60  # after a failed rotation (disk full...), not on every line
_BATCH = 256  # a batch this long wakes the writer before its interval is up


def gz_namer(name: str) -> str:
    """The rotated file's name: ``NAME.gz``, numbered if that day already has one."""
    # A second rollover of the same UTC day (manual, then midnight) must not
    # replace the first one's file, as doRollover would: number it instead.
    candidate, n = f"{name}.gz", 0
    while os.path.exists(candidate):
        n += 1
        candidate = f"{name}.{n}.gz"
    return candidate


def gz_rotator(source: str, dest: str) -> None:
    """Gzip ``source`` into ``dest``; the source is removed only once the .gz is complete."""
    # On failure the source stays and later lines are appended to it (the next
    # write retries the rollover).
    part = dest + ".part"
    try:
        with open(source, "rb") as src, gzip.open(part, "wb") as dst:
            shutil.copyfileobj(src, dst)
        os.replace(part, dest)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(part)
        raise
    os.remove(source)


class _Reporter:
    """Write and render errors go to stderr once per distinct error, never to the caller."""

    def __init__(self, filename: str) -> None:
        self.filename = filename
        self._last_error = ""

    def report(self, what: str, exc: BaseException) -> None:
        text = f"phalanx: cannot {what} {self.filename}: {exc!r}"
        if text != self._last_error:  # once per distinct error, not once per line
            self._last_error = text
            print(text, file=sys.stderr)


class HandlerWriter:
    """structlog's wrapped logger: writes rendered lines through a rotating handler.

    Rotation is the stdlib's (``shouldRollover``/``doRollover``) under the
    handler's lock; what is skipped is building a ``LogRecord`` and walking a
    ``Logger``'s handler chain per line (~20% of the cost of a line, measured).
    Every line is flushed to the OS, so a killed process loses no written line.
    """

    def __init__(self, handler: logging.handlers.TimedRotatingFileHandler) -> None:
        self.handler = handler
        self.closed = False
        self.errors = _Reporter(handler.baseFilename)

    def msg(self, line: str) -> None:
        """Write one rendered line."""
        self.write_lines((line,))

    debug = info = warning = warn = error = critical = exception = fatal = log = msg

    def write_lines(self, lines: Sequence[str]) -> None:
        """Write ``lines`` in order with one write and one flush; never raises."""
        handler = self.handler
        handler.acquire()
        try:
            if self.closed:
                return  # late lines after close are dropped (the node is shutting down)
            if handler.shouldRollover(None):  # type: ignore[arg-type]  # record is unused
                try:
                    handler.doRollover()
                except Exception as exc:  # the lines still go to the current file
                    handler.rolloverAt = int(time.time()) + _ROLLOVER_RETRY_S
                    self.errors.report("rotate", exc)
            if handler.stream is None:  # a failed rollover left it closed
                handler.stream = handler._open()
            handler.stream.write("\n".join(lines) + "\n")
            handler.stream.flush()
        except Exception as exc:  # logging must never break the caller
            self.errors.report("write", exc)
        finally:
            handler.release()

    def rollover(self) -> None:
        """Rotate now, unless the file is empty (it would only use up a retention slot)."""
        self.handler.acquire()
        try:
            if not self.closed and os.path.getsize(self.handler.baseFilename) > 0:
                self.handler.doRollover()
        finally:
            self.handler.release()

    def close(self) -> None:
        """Close the file; later lines are dropped."""
        self.handler.acquire()
        try:
            self.closed = True
            self.handler.close()
        finally:
            self.handler.release()


class ImmediateWriter:
    """structlog's wrapped logger for a synchronous taxonomy: renders and writes in the call.

    It takes what :class:`BufferedWriter` takes (an event dict, or what
    ``render`` expands into one) but renders it and writes it through
    ``writer`` (one write and one flush) before the logging call returns, so
    a SIGKILL loses no line. Its point is the logger in front of it: the
    short path of the buffered taxonomies, instead of structlog's processor
    chain (measured on the Order actor's four lines per order: ~0.5 ms of
    ~1.8 ms CPU per order went to logging through the chain).
    """

    def __init__(self, writer: HandlerWriter, render: Callable[[Any], str]) -> None:
        self.writer = writer
        self._render = render

    def msg(self, event_dict: Any) -> None:
        """Render one line and write it now (never raises: errors go to stderr)."""
        try:
            line = self._render(event_dict)
        except Exception as exc:  # logging must never break anyone
            self.writer.errors.report("render a line for", exc)
            return
        self.writer.write_lines((line,))

    debug = info = warning = warn = error = critical = exception = fatal = log = msg

    def flush(self) -> None:
        """Nothing is queued: every line was written by its call."""

    def rollover(self) -> None:
        """Rotate now (see :meth:`HandlerWriter.rollover`)."""
        self.writer.rollover()

    def close(self) -> None:
        """Close the file; later lines are dropped."""
        self.writer.close()


class BufferedWriter:
    """structlog's wrapped logger for a buffered taxonomy: queues event dicts for a writer thread.

    The calling thread has already bound the trace context, rendered any
    exception and taken the timestamp; ``render`` (masking, then JSON) runs on
    the writer thread, which writes what has gathered every ``interval``
    seconds while lines come (at once when ``_BATCH`` lines wait), with one
    write per batch, and sleeps without a timer after an interval with none.

    Invariants:
    - lines reach the file in the order they were logged: batches are taken
      and written under one lock, by the writer thread or by :meth:`flush`;
    - nothing queued is lost on :meth:`close`, which drains the queue before
      the file closes; :meth:`rollover` drains first too, so a line logged
      before a rotation lands in the rotated file;
    - a line is masked before it reaches the file (``render`` masks);
    - values are rendered later, so callers pass values they do not mutate
      afterwards (the tracer passes only scalars);
    - a killed process loses at most the last ``interval`` of lines.
    """

    def __init__(
        self,
        writer: HandlerWriter,
        render: Callable[[Any], str],
        *,
        interval: float,
        name: str,
    ) -> None:
        self.writer = writer
        self._render = render
        self._interval = interval
        self._name = name
        self._items: list[Any] = []  # event dicts, or what render expands into one
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._write_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._idle = False  # the writer is waiting for a first line (no timer)
        self._closed = False

    def msg(self, event_dict: Any) -> None:
        """Queue one event dict, or what ``render`` takes for one (called on the logging thread)."""
        with self._lock:  # the Condition's own lock: holding it is holding the Condition
            if self._closed:
                return  # late lines after close are dropped, as HandlerWriter does
            items = self._items
            items.append(event_dict)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
                self._thread.start()
            # The only wake-ups the logging thread causes: the writer was idle, or a
            # batch is full. Under steady traffic the writer wakes on its own timer
            # (a notify hands the core to the writer: ~2 context switches each).
            if self._idle:
                self._idle = False
                self._cond.notify()
            elif len(items) == _BATCH:
                self._cond.notify()

    debug = info = warning = warn = error = critical = exception = fatal = log = msg

    def _run(self) -> None:
        cond = self._cond
        while True:
            with cond:
                if not self._closed and len(self._items) < _BATCH:
                    cond.wait(self._interval)  # let a batch gather
                if not self._items and not self._closed:
                    # A whole interval without a line: sleep until one comes.
                    self._idle = True
                    while self._idle and not self._closed:
                        cond.wait()
                    continue
                closing = self._closed
            self.flush()
            if closing:
                return

    def flush(self) -> None:
        """Write every queued line now (the caller's thread does the work)."""
        with self._write_lock:
            with self._cond:
                items, self._items = self._items, []
            if not items:
                return
            lines: list[str] = []
            for event_dict in items:
                try:
                    lines.append(self._render(event_dict))
                except Exception as exc:  # logging must never break anyone
                    self.writer.errors.report("render a line for", exc)
            if lines:
                self.writer.write_lines(lines)

    def rollover(self) -> None:
        """Write what is queued, then rotate."""
        self.flush()
        self.writer.rollover()

    def close(self) -> None:
        """Stop taking lines, write every queued one, stop the thread, close the file."""
        with self._cond:
            self._closed = True
            thread = self._thread
            self._cond.notify_all()
        if thread is not None:
            thread.join(timeout=10.0)
        self.flush()  # whatever the thread did not get to (it drains before it ends)
        self.writer.close()
