"""The paper venue: matching engine + Binance spot REST on 127.0.0.1 for ``ccxt.binance``.

``PaperVenue`` owns the engine, the HTTP server (``_http.py``), the queued
faults (``_faults.py``) and the request log, and routes requests: signed
endpoints need ``X-MBX-APIKEY`` (unknown key: -2015) and a valid HMAC-SHA256
``signature`` over the rest of the query and body (else -1022). The admin
API under ``/__venue/`` injects faults, lists every accepted order, shows
balances and the request log, and resets state. Invariant: ``_lock`` guards
the faults and the request log (``_arrived`` waits on it).
"""

from __future__ import annotations

import hashlib
import hmac
import threading
import time
from collections.abc import Mapping
from dataclasses import asdict
from typing import Any

from phalanx.actors.venue._engine import MatchingEngine
from phalanx.actors.venue._faults import FAULT_KINDS, Fault
from phalanx.actors.venue._http import _handler_for, _Server
from phalanx.actors.venue._market import VenueError, _fmt

__all__ = ["PaperVenue", "venue_ccxt_config"]


def venue_ccxt_config(url: str, api_key: str, secret: str) -> dict[str, Any]:
    """The ``ccxt.binance`` config for a paper venue at ``url`` (NOTES.md overrides).

    For the embedded venue (:meth:`PaperVenue.ccxt_config`) and for one in
    another process (``phalanx venue``): spot only, no currency or margin
    endpoints (the venue has none), no client-side rate limit (phalanx's
    connection has its own).
    """
    base = url.rstrip("/")
    return {
        "apiKey": api_key,
        "secret": secret,
        "urls": {"api": {"public": f"{base}/api/v3", "private": f"{base}/api/v3"}},
        "options": {
            "defaultType": "spot",
            "fetchMarkets": {"types": ["spot"]},
            "fetchCurrencies": False,
            "fetchMargins": False,
        },
        "enableRateLimit": False,
    }


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
        """The ``ccxt.binance`` config that points at this venue (:func:`venue_ccxt_config`)."""
        return venue_ccxt_config(self.url, api_key, self.keys[api_key])

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
