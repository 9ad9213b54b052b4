"""The circuit and the connection state: what each call's outcome does to them.

Functions of :class:`~phalanx.actors.exchange._connection.ExchangeConnection`
taking the actor, bound in its class body as its methods
(``_after_call = _connection_circuit._after_call``).

Invariants:
- the breaker is opened by bans (``open_for`` the venue's Retry-After, else
  1 s), not by ordinary errors (its failure threshold is never reached: they
  go to the supervisor's decider); a failure reopens a half-open circuit;
- the venue answering (a refusal included) counts as a success for the
  breaker; a network or operation failure, or a call interrupted in flight,
  as a failure;
- every call that ``allow()`` let through records an outcome, or a half-open
  trial would stay taken and lock the venue out for good;
- the connection state (``connecting``, ``connected``, ``degraded`` after 3
  consecutive failures, ``banned``) is written by this actor only, under the
  state's lock; each change is published as a ``connection_state`` event. Bad
  credentials fire the critical ``exchange_auth_failed`` alert.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import ccxt

if TYPE_CHECKING:
    from phalanx.actors.exchange._connection import ExchangeConnection

__all__: list[str] = []


def _after_call(self: ExchangeConnection, error: BaseException | None) -> None:
    conn = self.conn
    if error is None:
        # A success changes the breaker only if it is not closed or failures were
        # counted since the last success (consecutive_errors counts exactly those).
        if conn.consecutive_errors or conn.breaker.last_state != "closed":
            conn.breaker.record_success()
        conn.consecutive_errors = 0
        if conn.state != "connected":  # only this actor writes it; re-checked locked
            self._set_state("connected")
        return
    if isinstance(error, ccxt.DDoSProtection | ccxt.RateLimitExceeded):
        retry_after = self._retry_after()
        conn.breaker.open_for(retry_after)
        self._set_state("banned", retry_after_s=retry_after, error=str(error)[:200])
        return
    # Invariant: every call that allow() let through records an outcome, or a
    # half-open trial would stay taken and lock the venue out for good.
    # The venue answering (a refusal included) proves it is reachable; a call
    # interrupted in flight proves nothing.
    failed = isinstance(error, ccxt.NetworkError | ccxt.OperationFailed) or not isinstance(
        error, Exception
    )
    if failed:
        conn.breaker.record_failure()
    else:
        conn.breaker.record_success()
    if isinstance(error, ccxt.AuthenticationError):
        self.system.events.publish(
            "alert_fired", self.path, severity="critical", alert="exchange_auth_failed",
            exchange=self.cfg.name, error=type(error).__name__,
        )  # fmt: skip
    elif failed:
        conn.consecutive_errors += 1
        if conn.consecutive_errors >= 3:
            self._set_state("degraded", errors=conn.consecutive_errors)


def _retry_after(self: ExchangeConnection) -> float:
    headers = getattr(self.client, "last_response_headers", None) or {}
    for name, value in dict(headers).items():
        if name.lower() == "retry-after":
            try:
                return max(0.0, float(value))
            except ValueError:
                break
    return 1.0


def _set_state(self: ExchangeConnection, state: str, **fields: Any) -> None:
    with self.conn.lock:
        if self.conn.state == state:
            return
        old, self.conn.state = self.conn.state, state
    self.system.events.publish("connection_state", self.path, old=old, new=state, **fields)
