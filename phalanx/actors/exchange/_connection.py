"""The ExchangeConnection actor: one ccxt client, rate-limited, timed, traced, classified.

The actor holds the client's lifecycle, the messages and the ticker poller.
Every ccxt call goes through ``_call`` (``_connection_calls``: breaker gate,
token bucket, timeout, the per-call record); what its outcome does to the
breaker and the connection state is ``_connection_circuit``'s. Both are
functions of the actor bound in its class body as its methods. State that must
outlive a restart lives in ``ConnectionState`` (``_connection_spec``).

A create translates ccxt errors at this boundary: a refusal is re-raised as
the answer (nothing was placed); anything else may have placed the order and
is an :class:`~phalanx.errors.UnknownOutcome`, never redelivered.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import ccxt

from phalanx.actors.exchange import _connection_calls, _connection_circuit
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
from phalanx.runtime._metrics import metrics_for

if TYPE_CHECKING:
    from phalanx.actors.exchange._connection_spec import ConnectionState

__all__ = ["ExchangeConnection"]

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


class _Poll:
    """Timer tick for the ticker poller (internal)."""


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

    # --- the one place every call goes through (_connection_calls, _connection_circuit)

    _call = _connection_calls._call
    _record = _connection_calls._record
    _observer = _connection_calls._observer

    _after_call = _connection_circuit._after_call
    _retry_after = _connection_circuit._retry_after
    _set_state = _connection_circuit._set_state
