"""The paper venue's matching engine: balances, a synthetic book, orders and trades.

Deterministic: prices follow a random walk seeded per symbol, advanced once
per ticker request, order placement or explicit ``step``; the same seed and
request sequence give the same run. All amounts are ``Decimal``.

``MatchingEngine`` here owns the state (``_engine_state.py``), the price walk
and the account views; its order parts are mixins: placement
(``_placement.py``), settlement and the accounting model (``_fills.py``),
lookups and cancels (``_order_queries.py``).
"""

from __future__ import annotations

import itertools
import random
import threading
import time
from decimal import Decimal
from typing import Any

from phalanx.actors.venue._market import (
    DEFAULT_BALANCES,
    DEFAULT_MARKETS,
    MAKER_FEE,
    TAKER_FEE,
    ZERO,
    D,
    Market,
    _fmt,
)
from phalanx.actors.venue._order_queries import _Queries
from phalanx.actors.venue._placement import _Placement

__all__ = ["MatchingEngine"]


class MatchingEngine(_Placement, _Queries):
    """Thread-safe engine; every public method takes the lock once."""

    def __init__(
        self,
        seed: int = 7,
        *,
        markets: tuple[Market, ...] = DEFAULT_MARKETS,
        accounts: tuple[str, ...] = ("paper",),
        balances: dict[str, Decimal] | None = None,
        maker_fee: Decimal = MAKER_FEE,
        taker_fee: Decimal = TAKER_FEE,
        fee_in_base: bool = False,
    ) -> None:
        self.seed = seed
        self.maker_fee = maker_fee
        self.taker_fee = taker_fee
        #: Buys pay their fee in the base asset (Binance without BNB); may be set
        #: before trading (``venue.engine.fee_in_base = True``).
        self.fee_in_base = fee_in_base
        self._markets = {m.symbol: m for m in markets}
        self._initial = dict(balances or DEFAULT_BALANCES)
        self._account_names = accounts
        self._lock = threading.RLock()
        self.reset()

    def reset(self) -> None:
        """Back to the initial balances, prices and no orders."""
        with self._lock:
            self._rngs = {
                s: random.Random(self.seed * 1009 + i) for i, s in enumerate(self._markets)
            }
            self._mid = {s: m.start_price for s, m in self._markets.items()}
            self._free = {a: dict(self._initial) for a in self._account_names}
            self._locked = {a: dict.fromkeys(self._initial, ZERO) for a in self._account_names}
            self._orders = {}
            self._by_client = {}
            self._trades = []
            self._ids = itertools.count(1)
            self._trade_ids = itertools.count(1)
            self.accepted = []  # every order ever accepted

    # --- market data -----------------------------------------------------------

    def _walk(self, m: Market) -> None:
        rng = self._rngs[m.symbol]
        move = D(rng.choice((-2, -1, 0, 1, 2))) * D("0.0005")
        self._mid[m.symbol] = max(m.tick, (self._mid[m.symbol] * (1 + move)).quantize(m.tick))
        self._match_resting(m)

    def step(self, n: int = 1) -> None:
        """Advance every price ``n`` steps (and fill resting orders it crosses)."""
        with self._lock:
            for _ in range(n):
                for m in self._markets.values():
                    self._walk(m)

    def best_prices(self, symbol: str) -> tuple[Decimal, Decimal]:
        """The best bid and ask now, without advancing the walk (tests and benches)."""
        with self._lock:
            return self._book(self.market(symbol))

    def ticker(self, symbol: str) -> dict[str, Any]:
        with self._lock:
            m = self.market(symbol)
            self._walk(m)
            bid, ask = self._book(m)
            last = self._mid[symbol]
            now = int(time.time() * 1000)
            return {
                "symbol": symbol, "priceChange": "0", "priceChangePercent": "0",
                "weightedAvgPrice": _fmt(last), "prevClosePrice": _fmt(m.start_price),
                "lastPrice": _fmt(last), "lastQty": "0", "bidPrice": _fmt(bid),
                "bidQty": _fmt(m.depth), "askPrice": _fmt(ask), "askQty": _fmt(m.depth),
                "openPrice": _fmt(m.start_price), "highPrice": _fmt(max(last, m.start_price)),
                "lowPrice": _fmt(min(last, m.start_price)), "volume": "0", "quoteVolume": "0",
                "openTime": now - 86_400_000, "closeTime": now, "firstId": 0, "lastId": 0,
                "count": len(self._trades),
            }  # fmt: skip

    # --- accounts --------------------------------------------------------------------

    def account(self, account: str) -> dict[str, Any]:
        with self._lock:
            free, locked = self._free[account], self._locked[account]
            return {
                "makerCommission": int(self.maker_fee * 10000),
                "takerCommission": int(self.taker_fee * 10000),
                "buyerCommission": 0, "sellerCommission": 0, "canTrade": True,
                "canWithdraw": False, "canDeposit": False, "updateTime": int(time.time() * 1000),
                "accountType": "SPOT", "permissions": ["SPOT"],
                "balances": [
                    {"asset": a, "free": _fmt(free[a]), "locked": _fmt(locked[a])}
                    for a in sorted(free)
                ],
            }  # fmt: skip

    def balances(self, account: str) -> dict[str, dict[str, str]]:
        """``{asset: {free, locked}}`` for the admin API and tests."""
        with self._lock:
            return {
                a: {"free": _fmt(self._free[account][a]), "locked": _fmt(self._locked[account][a])}
                for a in self._free[account]
            }
