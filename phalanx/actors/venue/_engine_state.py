"""The matching engine's state, its order record, and the primitives every part uses.

``_EngineState`` declares what a ``MatchingEngine`` holds (assigned in its
``__init__`` and ``reset``) so that the engine's parts, mixins split by
concept, type-check on their own: ``_Fills`` (``_fills.py``), ``_Placement``
(``_placement.py``), ``_Queries`` (``_order_queries.py``). Invariants: the
markets are fixed at construction; every other read or write happens under
``_lock``, which each public method takes once; ``_free`` and ``_locked``
change only through ``_move`` (and ``reset``).

``_Order`` is the engine's mutable record of one order: ``executed`` and
``quote`` only grow, ``locked`` is what the order still holds of the
account's funds (zero once it is closed), and ``fills`` are its trades in the
shape of a ``POST /api/v3/order`` reply. ``_view`` renders it as Binance's
order object.
"""

from __future__ import annotations

import itertools
import random
import threading
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from phalanx.actors.venue._market import ZERO, D, Market, VenueError, _fmt


@dataclass
class _Order:
    order_id: int
    client_id: str
    account: str
    market: Market
    side: str  # BUY | SELL
    type: str  # LIMIT | MARKET
    price: Decimal
    qty: Decimal
    time_ms: int
    executed: Decimal = ZERO
    quote: Decimal = ZERO  # cumulative quote quantity
    status: str = "NEW"
    locked: Decimal = ZERO  # funds still locked for the rest of the order
    fills: list[dict[str, Any]] = field(default_factory=list)
    update_ms: int = 0

    @property
    def open(self) -> bool:
        return self.status in ("NEW", "PARTIALLY_FILLED")


def _view(o: _Order) -> dict[str, Any]:
    return {
        "symbol": o.market.symbol, "orderId": o.order_id, "orderListId": -1,
        "clientOrderId": o.client_id, "price": _fmt(o.price), "origQty": _fmt(o.qty),
        "executedQty": _fmt(o.executed), "cummulativeQuoteQty": _fmt(o.quote),
        "status": o.status, "timeInForce": "GTC", "type": o.type, "side": o.side,
        "stopPrice": "0", "icebergQty": "0", "time": o.time_ms, "updateTime": o.update_ms,
        "isWorking": o.open, "workingTime": o.time_ms, "origQuoteOrderQty": "0",
        "selfTradePreventionMode": "NONE",
    }  # fmt: skip


class _EngineState:
    seed: int
    maker_fee: Decimal
    taker_fee: Decimal
    fee_in_base: bool
    _markets: dict[str, Market]
    _initial: dict[str, Decimal]
    _account_names: tuple[str, ...]
    _lock: threading.RLock
    _rngs: dict[str, random.Random]
    _mid: dict[str, Decimal]
    _free: dict[str, dict[str, Decimal]]
    _locked: dict[str, dict[str, Decimal]]
    _orders: dict[int, _Order]
    _by_client: dict[tuple[str, str, str], int]
    _trades: list[dict[str, Any]]
    _ids: itertools.count[int]
    _trade_ids: itertools.count[int]
    accepted: list[dict[str, Any]]  # every order ever accepted

    def market(self, symbol: str) -> Market:
        try:
            return self._markets[symbol]
        except KeyError:
            raise VenueError(-1121, "Invalid symbol.") from None

    def markets(self) -> list[Market]:
        return list(self._markets.values())

    def _book(self, m: Market) -> tuple[Decimal, Decimal]:
        mid = self._mid[m.symbol]
        half = (mid * D("0.0001")).quantize(m.tick) or m.tick
        return mid - half, mid + half  # best bid, best ask

    def _move(self, account: str, asset: str, free: Decimal = ZERO, locked: Decimal = ZERO) -> None:
        self._free[account][asset] = self._free[account].get(asset, ZERO) + free
        self._locked[account][asset] = self._locked[account].get(asset, ZERO) + locked
