"""The ExchangeConnection actor: one ccxt client, rate-limited, timed, traced, classified.

State that must outlive a restart (the ban breaker, the token bucket, the
latency window, ticker subscribers) lives in :class:`ConnectionState`, which
the child spec passes to every incarnation.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from decimal import Decimal
from math import floor as _floor
from typing import Any

import ccxt

from phalanx.actors.exchange._limits import LatencyWindow, TokenBucket
from phalanx.actors.exchange._replies import _dec, _trade, order_reply
from phalanx.errors import CircuitOpen, UnknownOutcome
from phalanx.protocols.exchange import (
    Balance,
    CancelOrder,
    CreateOrder,
    FetchBalance,
    FetchMyTrades,
    FetchOpenOrders,
    FetchOrder,
    FetchTicker,
    OpenOrders,
    SubscribeTicker,
    Ticker,
    Trades,
)
from phalanx.runtime import Actor, Timer
from phalanx.runtime._config import ExchangeConfig
from phalanx.runtime._metrics import metrics_for
from phalanx.supervision import (
    Breaker,
    ChildSpec,
    CircuitBreaker,
    Directive,
    Retry,
    default_decider,
)

__all__ = [
    "ConnectionState",
    "ExchangeConnection",
    "connection_decider",
    "connection_spec",
]

# ccxt errors that mean the venue refused a create: it placed nothing, so the
# error is the answer. Every other error on a create is an unknown outcome.
_REJECTED = (
    ccxt.InsufficientFunds,
    ccxt.AuthenticationError,
    ccxt.BadRequest,
    ccxt.OperationRejected,
    ccxt.NotSupported,
    ccxt.ArgumentsRequired,
)

# Request weights (Binance spot, simplified).
_WEIGHTS = {
    "load_markets": 20,
    "fetch_ticker": 2,
    "fetch_balance": 20,
    "create_order": 1,
    "fetch_order": 4,
    "cancel_order": 1,
    "fetch_open_orders": 6,
    "fetch_my_trades": 20,
}


def connection_decider(exc: BaseException) -> Directive:
    """Bad credentials stop the connection (no retry can fix them); else the default."""
    if isinstance(exc, ccxt.AuthenticationError):
        return Directive.STOP
    return default_decider(exc)


class _Poll:
    """Timer tick for the ticker poller (internal)."""


class ConnectionState:
    """What survives the connection's restarts."""

    def __init__(
        self,
        config: ExchangeConfig,
        *,
        weights: dict[str, float] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.bucket = TokenBucket(config.rate_limit_per_s, config.burst)
        self.latency = LatencyWindow(
            config.timeout_min_ms, config.timeout_max_ms, config.timeout_default_ms
        )
        # Opened only by bans (open_for Retry-After); ordinary errors go to the decider.
        self.breaker = CircuitBreaker(
            Breaker(reset_timeout=1.0, max_reset_timeout=600.0),
            name=f"exchange:{config.name}",
            failure_threshold=10**9,
            clock=clock,
        )
        self.clock = clock
        self.weights = {**_WEIGHTS, **config.weights, **(weights or {})}
        self.subscribers: dict[str, set[str]] = {}
        self.markets: dict[str, Any] | None = None
        self.state = "connecting"
        self.consecutive_errors = 0
        self.calls = 0
        self.lock = threading.Lock()


_perf_counter = time.perf_counter


def _round2(x: float) -> float:
    # Two decimals for the tracer line: round(x, 2) is ~0.7 us (correctly rounded
    # decimal conversion), this ~0.2 us; it may differ from it in the last digit
    # on exact halves, which a latency in a log line does not care about.
    return _floor(x * 100 + 0.5) / 100


class ExchangeConnection(Actor):
    """Owns one sync ccxt client; every call is rate-limited, timed, traced and classified."""

    def __init__(self, state: ConnectionState, client_config: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.conn = state
        self.cfg = state.config
        self._client_config = client_config or {}
        self._poll_timer: Timer | None = None
        self._observers: dict[tuple[str, str], Callable[[float], None]] = {}

    # --- lifecycle -----------------------------------------------------------

    def on_start(self) -> None:
        self._tracer = self.system.logs.logger("tracer")
        self._trace_line = self._tracer.info  # bound once: one line per exchange call
        self._exchange_name = self.cfg.name
        self._metrics = metrics_for(self.system)  # the exchange latency histogram
        key, secret = self.cfg.credentials()
        params: dict[str, Any] = {
            "urls": self.cfg.urls,
            "options": self.cfg.options,
            "enableRateLimit": False,  # our own weighted bucket does it
            "rateLimit": int(1000 / self.cfg.rate_limit_per_s),  # constructor only (NOTES)
            "timeout": self.conn.latency.timeout_ms(),
            **self._client_config,
        }
        key = key or params.pop("apiKey", None)
        secret = secret or params.pop("secret", None)
        params.pop("apiKey", None)
        params.pop("secret", None)
        for value in (key, secret):
            if value:
                self.system.logs.add_secret(value)
        self.client = getattr(ccxt, self.cfg.exchange)({**params, "apiKey": key, "secret": secret})
        self.client.options["maxRetriesOnFailure"] = 0  # never let ccxt resend (DESIGN 6)
        if self.conn.markets is None:
            self._call("load_markets", self.client.load_markets)
            self.conn.markets = self.client.markets
            self._set_state("connected")
        else:
            # A restart must not depend on the venue (it may be banning us):
            # markets are kept in the state that survives incarnations.
            self.client.set_markets(self.conn.markets)
        if self.conn.subscribers or self.cfg.poll_symbols:
            self._poll_timer = self.send_every(self.cfg.poll_interval_s, _Poll())

    def on_stop(self) -> None:
        if self._poll_timer is not None:
            self._poll_timer.cancel()

    def pre_restart(self, exc: BaseException) -> None:
        if self._poll_timer is not None:
            self._poll_timer.cancel()

    def introspect(self) -> dict[str, Any]:
        return {
            "class": "ExchangeConnection",
            "exchange": self.cfg.exchange,
            "state": self.conn.state,
            "breaker": self.conn.breaker.snapshot(),
            "rate_limit_headroom": round(self.conn.bucket.headroom(), 3),
            "timeout_ms": self.conn.latency.timeout_ms(),
            "calls": self.conn.calls,
            "subscribers": {s: sorted(p) for s, p in self.conn.subscribers.items()},
        }

    # --- messages --------------------------------------------------------------

    def on_receive(self, message: Any) -> Any:
        c = self.client
        kind = type(message)
        # The order path first, by exact type: an isinstance on a pydantic model class
        # that fails is an ABC check (a CancelOrder tested against CreateOrder).
        if kind is CreateOrder or (kind is not CancelOrder and isinstance(message, CreateOrder)):
            try:
                placed = self._call(
                    "create_order", c.create_order, message.symbol, message.type, message.side,
                    float(message.amount), float(message.price) if message.price else None,
                    {"clientOrderId": message.client_order_id},
                )  # fmt: skip
            except CircuitOpen:
                raise  # refused before anything was sent
            except ccxt.InvalidOrder as exc:
                if isinstance(exc, ccxt.DuplicateOrderId) or "Duplicate order sent" in str(exc):
                    raise UnknownOutcome(
                        f"create_order {message.client_order_id}: duplicate id at the venue"
                    ) from exc
                raise
            except _REJECTED:
                raise  # the venue answered no: nothing was placed
            except Exception as exc:
                # Invariant: a CreateOrder is never redelivered. Anything but a rejection
                # (a timeout, a 5xx, a lost response, and equally an error parsing a
                # reply the venue sent after accepting) may have placed the order: the
                # caller resolves it by client id (DESIGN 6). A crash here would have
                # the supervisor redeliver it, sending the same id again.
                raise UnknownOutcome(
                    f"create_order {message.client_order_id}: outcome unknown ({exc!r})"
                ) from exc
            try:
                return order_reply(placed)
            except UnknownOutcome:
                raise
            except Exception as exc:  # a reply it cannot read: placed or not, unknown
                raise UnknownOutcome(
                    f"create_order {message.client_order_id}: unreadable reply ({exc!r})"
                ) from exc
        if kind is CancelOrder or isinstance(message, CancelOrder):
            params = {} if message.id else {"clientOrderId": message.client_order_id}
            return order_reply(
                self._call("cancel_order", c.cancel_order, message.id, message.symbol, params)
            )
        if isinstance(message, FetchTicker):
            return self._ticker(message.symbol)
        if isinstance(message, FetchBalance):
            b = self._call("fetch_balance", c.fetch_balance)
            assets = [a for a in b.get("total", {}) if b["total"][a] is not None]
            return Balance(
                free={a: Decimal(str(b["free"][a] or 0)) for a in assets},
                used={a: Decimal(str(b["used"][a] or 0)) for a in assets},
                total={a: Decimal(str(b["total"][a] or 0)) for a in assets},
            )
        if isinstance(message, FetchOrder):
            params = {} if message.id else {"clientOrderId": message.client_order_id}
            return order_reply(
                self._call("fetch_order", c.fetch_order, message.id, message.symbol, params)
            )
        if isinstance(message, FetchOpenOrders):
            orders = self._call("fetch_open_orders", c.fetch_open_orders, message.symbol)
            return OpenOrders(orders=[order_reply(o) for o in orders])
        if isinstance(message, FetchMyTrades):
            params = {} if message.order_id is None else {"orderId": message.order_id}
            trades = self._call(
                "fetch_my_trades", c.fetch_my_trades, message.symbol, message.since, None, params
            )
            return Trades(trades=[_trade(t) for t in trades])
        if isinstance(message, SubscribeTicker):
            with self.conn.lock:
                self.conn.subscribers.setdefault(message.symbol, set()).add(message.subscriber)
            if self._poll_timer is None:
                self._poll_timer = self.send_every(self.cfg.poll_interval_s, _Poll())
            return None
        if isinstance(message, _Poll):
            self._poll()
            return None
        return super().on_receive(message)

    def _ticker(self, symbol: str) -> Ticker:
        t = self._call("fetch_ticker", self.client.fetch_ticker, symbol)
        return Ticker(
            exchange=self.cfg.name, symbol=symbol, bid=_dec(t.get("bid")), ask=_dec(t.get("ask")),
            last=_dec(t.get("last")), timestamp=t.get("timestamp"),
        )  # fmt: skip

    def _poll(self) -> None:
        with self.conn.lock:
            symbols = {s: set(p) for s, p in self.conn.subscribers.items()}
        for symbol in self.cfg.poll_symbols:
            symbols.setdefault(symbol, set())
        for symbol, subscribers in symbols.items():
            ticker = self._ticker(symbol)
            self.system.events.publish("ticker", self.path, symbol=symbol, last=str(ticker.last))
            for path in subscribers:
                self.system.tell(path, ticker)

    # --- the one place every call goes through -----------------------------------

    def _call(self, endpoint: str, fn: Any, *args: Any) -> Any:
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
        self,
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

    def _observer(self, endpoint: str, status: str) -> Callable[[float], None]:
        # labels() takes a lock and checks the label values: ~5 us of a call's ~10 us
        # histogram update. The child it returns is the same object for the life of
        # the registry (nothing removes exchange series), so it is kept per pair.
        observe: Callable[[float], None] = self._metrics.exchange_latency.labels(
            self.cfg.name, endpoint, status
        ).observe
        self._observers[endpoint, status] = observe
        return observe

    def _after_call(self, error: BaseException | None) -> None:
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

    def _retry_after(self) -> float:
        headers = getattr(self.client, "last_response_headers", None) or {}
        for name, value in dict(headers).items():
            if name.lower() == "retry-after":
                try:
                    return max(0.0, float(value))
                except ValueError:
                    break
        return 1.0

    def _set_state(self, state: str, **fields: Any) -> None:
        with self.conn.lock:
            if self.conn.state == state:
                return
            old, self.conn.state = self.conn.state, state
        self.system.events.publish("connection_state", self.path, old=old, new=state, **fields)


def connection_spec(
    config: ExchangeConfig,
    *,
    client_config: dict[str, Any] | None = None,
    retry: Retry | None = None,
    state: ConnectionState | None = None,
) -> ChildSpec:
    """The child spec of one connection: its state survives restarts; bad keys stop it."""
    return ChildSpec(
        config.name,
        ExchangeConnection,
        kwargs={"state": state or ConnectionState(config), "client_config": client_config},
        retry=retry or Retry(max_attempts=4, backoff="exponential", base=0.05, max=2.0),
        decider=connection_decider,
        shutdown=5.0,
    )
