"""The one place every exchange call goes through: breaker gate, bucket, timeout, record.

Functions of :class:`~phalanx.actors.exchange._connection.ExchangeConnection`
taking the actor, bound in its class body as its methods
(``_call = _connection_calls._call``).

Invariants:
- every call is refused before anything is sent while the circuit is open
  (:class:`~phalanx.errors.CircuitOpen`), else takes its weight from the token
  bucket and runs with the adaptive timeout of the latency window;
- every call that ran is recorded exactly once by ``_record``, success or
  error (an interrupted one included): one ``exchange_call`` tracer line (on
  the ``tracer`` logger), one ``exchange_latency`` histogram observation, and
  its outcome for the breaker (``_connection_circuit._after_call``, skipped
  only on a success that changes nothing);
- a timed-out call does not feed the latency window.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from math import floor as _floor
from typing import TYPE_CHECKING, Any

import ccxt

from phalanx.errors import CircuitOpen

if TYPE_CHECKING:
    from phalanx.actors.exchange._connection import ExchangeConnection

__all__: list[str] = []

_perf_counter = time.perf_counter


def _round2(x: float) -> float:
    # Two decimals for the tracer line: round(x, 2) is ~0.7 us (correctly rounded
    # decimal conversion), this ~0.2 us; it may differ from it in the last digit
    # on exact halves, which a latency in a log line does not care about.
    return _floor(x * 100 + 0.5) / 100


def _call(self: ExchangeConnection, endpoint: str, fn: Any, *args: Any) -> Any:
    conn = self.conn
    breaker = conn.breaker
    # A closed circuit admits every call and allow() changes nothing then, so the
    # locked allow() runs only when it may not be closed (a ban opened it, a
    # half-open trial is due). Only this actor moves it out of closed.
    if breaker.last_state != "closed" and not breaker.allow():
        until = breaker.opened_until()
        left = max(0.0, until - conn.clock()) if until is not None else 0.0
        raise CircuitOpen(f"{self.cfg.name} is banned or open for {left:.1f}s more")
    waited, headroom = conn.bucket.acquire(conn.weights.get(endpoint, 1))
    timeout = conn.latency.timeout_ms()
    self.client.timeout = timeout
    started = _perf_counter()
    try:
        result = fn(*args)
    except BaseException as exc:  # an interrupted call (ActorKilled) is no success
        self._record(endpoint, _perf_counter() - started, timeout, waited, headroom, exc)
        raise
    self._record(endpoint, _perf_counter() - started, timeout, waited, headroom, None)
    return result


def _record(
    self: ExchangeConnection,
    endpoint: str,
    elapsed_s: float,
    timeout: int,
    waited: float,
    headroom: float,
    error: BaseException | None,
) -> None:
    """Account for one finished call: latency window, tracer line, histogram, breaker."""
    conn = self.conn
    latency_ms = elapsed_s * 1000
    conn.calls += 1
    if error is None:
        status = "ok"
        conn.latency.add(latency_ms)
    else:
        status = type(error).__name__
        if not isinstance(error, ccxt.RequestTimeout):
            conn.latency.add(latency_ms)
    env = self._envelope  # the envelope property's field, read directly (per call)
    breaker = conn.breaker
    breaker_state = breaker.last_state  # only this actor moves it, below
    # Scalars only: the tracer's writer thread builds, masks and renders the line.
    self._trace_line(
        "exchange_call", exchange=self._exchange_name, endpoint=endpoint,
        latency_ms=_floor(latency_ms * 100 + 0.5) / 100, status=status, timeout_ms=timeout,
        rate_limit_waited_ms=_round2(waited * 1000) if waited else 0.0,
        rate_limit_headroom=_floor(headroom * 100 + 0.5) / 100,
        attempt=env.attempt if env is not None else None,
        message_id=env.message_id if env is not None else None,
        breaker=breaker_state,
    )  # fmt: skip  # _round2 inlined for the two figures every line has
    observe = self._observers.get((endpoint, status))
    if observe is None:
        observe = self._observer(endpoint, status)
    observe(elapsed_s)
    if error is None and not conn.consecutive_errors and breaker_state == "closed":
        # _after_call's success path when it changes nothing but the state check.
        if conn.state != "connected":  # only this actor writes it; re-checked locked
            self._set_state("connected")
        return
    self._after_call(error)


def _observer(self: ExchangeConnection, endpoint: str, status: str) -> Callable[[float], None]:
    # labels() takes a lock and checks the label values: ~5 us of a call's ~10 us
    # histogram update. The child it returns is the same object for the life of
    # the registry (nothing removes exchange series), so it is kept per pair.
    observe: Callable[[float], None] = self._metrics.exchange_latency.labels(
        self.cfg.name, endpoint, status
    ).observe
    self._observers[endpoint, status] = observe
    return observe
