"""The paper venue's HTTP front end: enough of Binance spot REST for ``ccxt.binance``.

Serves only 127.0.0.1 (stdlib ``ThreadingHTTPServer``). Signed endpoints need
``X-MBX-APIKEY`` (unknown key: -2015) and a valid HMAC-SHA256 ``signature``
over the rest of the query and body (else -1022). The admin API under
``/__venue/`` injects faults, lists every accepted order, shows balances and
the request log, and resets state.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from phalanx.actors.venue._engine import MatchingEngine
from phalanx.actors.venue._market import VenueError, _fmt

__all__ = ["FAULT_KINDS", "Fault", "PaperVenue"]

FAULT_KINDS = (
    "latency",  # delay the response by latency_ms
    "http_500",
    "http_502",
    "http_503",
    "http_429",  # with Retry-After
    "http_418",  # "IP banned until <ms>", with Retry-After
    "nonce",  # -1021 timestamp outside recvWindow
    "timeout",  # hold the request hold_s, then drop it unanswered
    "lost",  # do the real action, then drop the connection: accepted but response lost
    "empty",  # answer 200 with {} (ccxt then parses an order with id=None)
)
_SIGNED = {"/api/v3/account", "/api/v3/order", "/api/v3/openOrders", "/api/v3/myTrades"}


@dataclass
class Fault:
    """An injected fault: ``count`` shots on requests matching ``endpoint``."""

    kind: str
    endpoint: str = "*"  # "*" or "METHOD /path", e.g. "POST /api/v3/order"
    count: int = 1
    when: str = "before"  # before or after the real action
    latency_ms: int = 0
    retry_after_s: int = 1
    hold_s: float = 2.0

    def matches(self, method: str, path: str) -> bool:
        return self.endpoint in ("*", f"{method} {path}", path)


class PaperVenue:
    """Matching engine + HTTP server on 127.0.0.1; a context manager."""

    def __init__(
        self,
        seed: int = 7,
        *,
        port: int = 0,
        keys: Mapping[str, str] | None = None,
        auto_step_s: float | None = None,
        fee_in_base: bool = False,
    ) -> None:
        self.keys = dict(keys or {"paper-key": "paper-secret"})
        # fee_in_base: buys pay the fee in the base asset (Binance without BNB).
        self.engine = MatchingEngine(seed, accounts=tuple(self.keys), fee_in_base=fee_in_base)
        self._faults: list[Fault] = []
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)
        self.requests: list[dict[str, Any]] = []
        self._closing = threading.Event()
        self._server = _Server(("127.0.0.1", port), _handler_for(self))
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None
        self._stepper: threading.Thread | None = None
        self._auto_step_s = auto_step_s

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:8123``."""
        return f"http://127.0.0.1:{self.port}"

    def ccxt_config(self, api_key: str = "paper-key") -> dict[str, Any]:
        """The ``ccxt.binance`` config that points at this venue (NOTES.md overrides)."""
        return {
            "apiKey": api_key,
            "secret": self.keys[api_key],
            "urls": {"api": {"public": f"{self.url}/api/v3", "private": f"{self.url}/api/v3"}},
            "options": {
                "defaultType": "spot",
                "fetchMarkets": {"types": ["spot"]},
                "fetchCurrencies": False,
                "fetchMargins": False,
            },
            "enableRateLimit": False,
        }

    def start(self) -> PaperVenue:
        # poll_interval bounds how long stop() waits for serve_forever to notice.
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"phalanx-venue:{self.port}",
        )
        self._thread.start()
        if self._auto_step_s:
            self._stepper = threading.Thread(target=self._step_loop, name="phalanx-venue-step")
            self._stepper.start()
        return self

    def _step_loop(self) -> None:
        assert self._auto_step_s is not None
        while not self._closing.wait(self._auto_step_s):
            self.engine.step()

    def stop(self) -> None:
        self._closing.set()  # also releases requests held by "timeout" faults
        self._server.shutdown()
        self._server.server_close()
        for thread in (self._thread, self._stepper):
            if thread is not None:
                thread.join(5)

    def __enter__(self) -> PaperVenue:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- faults ------------------------------------------------------------------

    def inject(self, fault: Fault) -> None:
        if fault.kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {fault.kind!r}; valid: {FAULT_KINDS}")
        if fault.when not in ("before", "after"):
            raise ValueError(f"fault 'when' must be before or after, got {fault.when!r}")
        with self._lock:
            self._faults.append(fault)

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def take_fault(self, method: str, path: str, when: str) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.when == when and fault.matches(method, path):
                    fault.count -= 1
                    if fault.count <= 0:
                        self._faults.remove(fault)
                    return fault
        return None

    def wait_requests(self, count: int, timeout: float) -> bool:
        """Block until ``count`` API requests have arrived (tests and chaos tooling)."""
        with self._arrived:
            return self._arrived.wait_for(lambda: len(self.requests) >= count, timeout)

    def reset(self) -> None:
        self.clear_faults()
        self.engine.reset()
        with self._lock:
            self.requests.clear()

    # --- request handling ----------------------------------------------------------

    def authenticate(self, headers: Any, raw: str) -> str:
        key: str | None = headers.get("X-MBX-APIKEY")
        if key is None or key not in self.keys:
            raise VenueError(-2015, "Invalid API-key, IP, or permissions for action.", 401)
        payload, sep, signature = raw.rpartition("&signature=")
        expected = hmac.new(self.keys[key].encode(), payload.encode(), hashlib.sha256).hexdigest()
        if not sep or not hmac.compare_digest(expected, signature):
            raise VenueError(-1022, "Signature for this request is not valid.", 400)
        return key

    def dispatch(self, method: str, path: str, params: dict[str, str], account: str) -> Any:
        e = self.engine
        if (method, path) == ("GET", "/api/v3/exchangeInfo"):
            return _exchange_info(e)
        if (method, path) == ("GET", "/api/v3/ping"):
            return {}
        if (method, path) == ("GET", "/api/v3/time"):
            return {"serverTime": int(time.time() * 1000)}
        if (method, path) == ("GET", "/api/v3/ticker/24hr"):
            return e.ticker(params.get("symbol", ""))
        if (method, path) == ("GET", "/api/v3/account"):
            return e.account(account)
        symbol = params.get("symbol", "")
        if path == "/api/v3/order":
            if method == "POST":
                return e.place(account, params)
            ident = (params.get("orderId"), params.get("origClientOrderId"))
            if method == "GET":
                return e.get_order(account, symbol, *ident)
            if method == "DELETE":
                return e.cancel(account, symbol, *ident)
        if (method, path) == ("GET", "/api/v3/openOrders"):
            return e.open_orders(account, symbol or None)
        if (method, path) == ("GET", "/api/v3/myTrades"):
            return e.my_trades(account, symbol, params.get("orderId"))
        raise VenueError(-1100, f"Unknown endpoint {method} {path}", 404)

    def admin(self, method: str, path: str, body: dict[str, Any]) -> Any:
        if (method, path) == ("POST", "/__venue/faults"):
            self.inject(Fault(**body))
            return {"ok": True}
        if (method, path) == ("DELETE", "/__venue/faults"):
            self.clear_faults()
            return {"ok": True}
        if (method, path) == ("GET", "/__venue/faults"):
            with self._lock:
                return [asdict(f) for f in self._faults]
        if (method, path) == ("GET", "/__venue/orders"):
            return list(self.engine.accepted)
        if (method, path) == ("GET", "/__venue/balances"):
            return {a: self.engine.balances(a) for a in self.keys}
        if (method, path) == ("GET", "/__venue/requests"):
            with self._lock:
                return list(self.requests)
        if (method, path) == ("POST", "/__venue/step"):
            self.engine.step(int(body.get("n", 1)))
            return {"ok": True}
        if (method, path) == ("POST", "/__venue/reset"):
            self.reset()
            return {"ok": True}
        raise VenueError(-1100, f"Unknown admin endpoint {method} {path}", 404)


def _exchange_info(engine: MatchingEngine) -> dict[str, Any]:
    symbols = []
    for m in engine.markets():
        symbols.append(
            {
                "symbol": m.symbol, "status": "TRADING", "baseAsset": m.base, "quoteAsset": m.quote,
                "baseAssetPrecision": 8, "quotePrecision": 8, "quoteAssetPrecision": 8,
                "orderTypes": ["LIMIT", "MARKET"], "isSpotTradingAllowed": True,
                "isMarginTradingAllowed": False, "permissions": ["SPOT"],
                "filters": [
                    {"filterType": "PRICE_FILTER", "minPrice": _fmt(m.tick),
                     "maxPrice": "1000000", "tickSize": _fmt(m.tick)},
                    {"filterType": "LOT_SIZE", "minQty": _fmt(m.min_qty),
                     "maxQty": _fmt(m.max_qty), "stepSize": _fmt(m.step)},
                    {"filterType": "NOTIONAL", "minNotional": _fmt(m.min_notional),
                     "maxNotional": "10000000", "applyMinToMarket": True},
                ],
            }
        )  # fmt: skip
    return {
        "timezone": "UTC",
        "serverTime": int(time.time() * 1000),
        "rateLimits": [],
        "symbols": symbols,
    }


class _Server(ThreadingHTTPServer):
    """The stdlib server, quiet about clients that hang up mid-reply."""

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that closed its connection (a timed-out ccxt call, a node
        # shutting down) is not the venue's error: the stdlib would print a
        # traceback for each. Anything else keeps the stdlib's report.
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


def _handler_for(venue: PaperVenue) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # Without TCP_NODELAY, Nagle plus the client's delayed ACK stalled every
        # keep-alive response whose headers and body left in two writes ~40 ms.
        disable_nagle_algorithm = True
        # Buffered: a response's status line, headers and body leave in one send,
        # at the flush that ends handle_one_request (and finish()). Unbuffered they
        # were two sends, and the client a poll and a recv more per reply (strace,
        # 200 create_order: 4.0 -> 3.0 sendto, 5.0 -> 4.2 poll, 3.8 -> 2.9 recvfrom
        # per request, both sides).
        wbufsize = -1

        def handle_expect_100(self) -> bool:
            # The interim 100 must reach the client before it sends the body.
            answered = super().handle_expect_100()
            self.wfile.flush()
            return answered

        def send_response(self, code: int, message: str | None = None) -> None:
            # BaseHTTPRequestHandler.send_response without its Server header
            # ("BaseHTTP/0.6 Python/3.11"), which no client reads: one header less
            # to write here and for the client to parse (callgrind, per create_order:
            # ~1% of the client's and the venue's instructions). Date stays (RFC 9110).
            self.log_request(code)
            self.send_response_only(code, message)
            self.send_header("Date", self.date_time_string())

        def log_message(self, format: str, *args: Any) -> None:
            pass  # the venue's request log is /__venue/requests

        def do_GET(self) -> None:
            self._serve("GET")

        def do_POST(self) -> None:
            self._serve("POST")

        def do_DELETE(self) -> None:
            self._serve("DELETE")

        def _reply(self, status: int, payload: Any, headers: Mapping[str, str] = {}) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

        def _drop(self) -> None:
            self.close_connection = True
            self.connection.close()

        def _serve(self, method: str) -> None:
            parts = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length).decode() if length else ""
            try:
                if parts.path.startswith("/__venue/"):
                    self._reply(200, venue.admin(method, parts.path, json.loads(body or "{}")))
                    return
                self._serve_api(method, parts.path, parts.query, body)
            except VenueError as exc:
                self._reply(exc.status, {"code": exc.code, "msg": exc.msg})
            except (ValueError, TypeError) as exc:
                self._reply(400, {"code": -1100, "msg": f"Illegal characters or values: {exc}"})

        def _serve_api(self, method: str, path: str, query: str, body: str) -> None:
            with venue._arrived:
                venue.requests.append(
                    {"t": time.monotonic(), "method": method, "path": path, "query": query}
                )
                venue._arrived.notify_all()
            fault = venue.take_fault(method, path, "before")
            if fault is not None and self._apply(fault):
                return
            raw = "&".join(p for p in (query, body) if p)
            account = ""
            if path in _SIGNED:
                account = venue.authenticate(self.headers, raw)
            params = dict(parse_qsl(raw, keep_blank_values=True))
            result = venue.dispatch(method, path, params, account)
            fault = venue.take_fault(method, path, "after")
            if fault is not None and self._apply(fault):
                return
            self._reply(200, result)

        def _apply(self, fault: Fault) -> bool:
            """Apply a fault; True when it replaced the response."""
            kind = fault.kind
            if kind == "latency":
                venue._closing.wait(fault.latency_ms / 1000)
                return False
            if kind == "timeout":
                venue._closing.wait(fault.hold_s)
                self._drop()
                return True
            if kind == "lost":
                self._drop()
                return True
            if kind == "empty":
                self._reply(200, {})
                return True
            if kind == "nonce":
                self._reply(
                    400,
                    {
                        "code": -1021,
                        "msg": "Timestamp for this request is outside of the recvWindow.",
                    },
                )
                return True
            status = int(kind.split("_")[1])
            headers = {"Retry-After": str(fault.retry_after_s)} if status in (418, 429) else {}
            if status == 418:
                until = int((time.time() + fault.retry_after_s) * 1000)
                payload: dict[str, Any] = {
                    "code": -1003,
                    "msg": f"Way too much request weight used; IP banned until {until}.",
                }
            elif status == 429:
                payload = {
                    "code": -1003,
                    "msg": "Too much request weight used; please use the websocket.",
                }
            else:
                payload = {}
            self._reply(status, payload, headers)
            return True

    return Handler
