"""The paper venue's matching engine: balances, a synthetic book, orders and trades.

Deterministic: prices follow a random walk seeded per symbol, advanced once
per ticker request, order placement or explicit ``step``; the same seed and
request sequence give the same run. All amounts are ``Decimal``.

Accounting model. By default (a documented deviation from Binance) fees are
charged in the quote asset on both sides: a buy debits notional + fee and a
sell credits notional - fee. With ``fee_in_base=True`` a buy pays its fee in
the asset received, as Binance charges an account that does not pay fees in
BNB: buy 0.001 BTC at a 0.1% fee and receive 0.000999 BTC for the notional
(the trade's ``commissionAsset`` is the base); a sell still pays in the
quote. Fees are rounded down to 8 decimals, as Binance reports them.
Invariant: for every account, balance changes equal the fills and fees.
"""

from __future__ import annotations

import itertools
import random
import threading
import time
from dataclasses import dataclass, field
from decimal import ROUND_DOWN, Decimal
from typing import Any

__all__ = ["Market", "MatchingEngine", "VenueError"]

D = Decimal
ZERO = D(0)


class VenueError(Exception):
    """A Binance-style error: ``{"code": code, "msg": msg}`` with an HTTP status."""

    def __init__(self, code: int, msg: str, status: int = 400) -> None:
        super().__init__(msg)
        self.code = code
        self.msg = msg
        self.status = status


@dataclass(frozen=True)
class Market:
    """One spot symbol with its Binance filters."""

    symbol: str  # BTCUSDT
    base: str
    quote: str
    start_price: Decimal
    tick: Decimal
    step: Decimal
    min_qty: Decimal
    max_qty: Decimal
    min_notional: Decimal
    depth: Decimal  # quantity available at each synthetic book level


DEFAULT_MARKETS = (
    Market("BTCUSDT", "BTC", "USDT", D("43000"), D("0.01"), D("0.00001"), D("0.00001"),
           D("100"), D("5"), D("0.05")),
    Market("ETHUSDT", "ETH", "USDT", D("2300"), D("0.01"), D("0.0001"), D("0.0001"),
           D("1000"), D("5"), D("1")),
)  # fmt: skip
MAKER_FEE, TAKER_FEE = D("0.0008"), D("0.001")
DEFAULT_BALANCES = {"USDT": D("100000"), "BTC": D("1"), "ETH": D("10")}


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


def _fmt(value: Decimal) -> str:
    return format(value.normalize(), "f") if value else "0"


class MatchingEngine:
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
            self._orders: dict[int, _Order] = {}
            self._by_client: dict[tuple[str, str, str], int] = {}
            self._trades: list[dict[str, Any]] = []
            self._ids = itertools.count(1)
            self._trade_ids = itertools.count(1)
            self.accepted: list[dict[str, Any]] = []  # every order ever accepted

    # --- market data -----------------------------------------------------------

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

    def _move(self, account: str, asset: str, free: Decimal = ZERO, locked: Decimal = ZERO) -> None:
        self._free[account][asset] = self._free[account].get(asset, ZERO) + free
        self._locked[account][asset] = self._locked[account].get(asset, ZERO) + locked

    # --- orders ------------------------------------------------------------------------

    def _levels(self, m: Market, side: str) -> list[Decimal]:
        bid, ask = self._book(m)
        gap = m.tick * 10
        if side == "BUY":
            return [ask + gap * k for k in range(20)]
        return [bid - gap * k for k in range(20) if bid - gap * k > 0]

    def _validate(self, m: Market, qty: Decimal, price: Decimal | None) -> None:
        if qty <= 0 or qty % m.step or not m.min_qty <= qty <= m.max_qty:
            raise VenueError(-1013, "Filter failure: LOT_SIZE")
        if price is not None and (price <= 0 or price % m.tick):
            raise VenueError(-1013, "Filter failure: PRICE_FILTER")
        reference = price if price is not None else self._mid[m.symbol]
        if reference * qty < m.min_notional:
            raise VenueError(-1013, "Filter failure: NOTIONAL")

    def place(self, account: str, params: dict[str, str]) -> dict[str, Any]:
        """POST /api/v3/order: validate, lock funds, match as taker, rest the remainder."""
        with self._lock:
            m = self.market(params.get("symbol", ""))
            side, kind = params.get("side", "").upper(), params.get("type", "").upper()
            if side not in ("BUY", "SELL") or kind not in ("LIMIT", "MARKET"):
                raise VenueError(
                    -1102, "Mandatory parameter 'side'/'type' was not sent or invalid."
                )
            try:
                qty = D(params["quantity"])
                price = D(params["price"]) if kind == "LIMIT" else None
            except (KeyError, ArithmeticError):
                raise VenueError(
                    -1102, "Mandatory parameter 'quantity'/'price' malformed."
                ) from None
            self._validate(m, qty, price)
            client_id = params.get("newClientOrderId") or f"venue-{len(self._orders) + 1}"
            prior = self._by_client.get((account, m.symbol, client_id))
            if prior is not None and self._orders[prior].open:
                raise VenueError(-2010, "Duplicate order sent.")
            levels = self._levels(m, side)
            if side == "BUY":
                worst = price if price is not None else self._cost_estimate(m, qty, levels)
                headroom = 1 if self.fee_in_base else 1 + self.taker_fee  # the fee is in the base
                need, asset = (worst * qty * headroom).quantize(D("1e-8")), m.quote
            else:
                need, asset = qty, m.base
            if self._free[account].get(asset, ZERO) < need:
                raise VenueError(-2010, "Account has insufficient balance for requested action.")
            now = int(time.time() * 1000)
            order = _Order(next(self._ids), client_id, account, m, side, kind,
                           price or ZERO, qty, now, locked=need, update_ms=now)  # fmt: skip
            self._move(account, asset, free=-need, locked=need)
            self._orders[order.order_id] = order
            self._by_client[(account, m.symbol, client_id)] = order.order_id
            self.accepted.append(
                {"orderId": order.order_id, "clientOrderId": client_id, "symbol": m.symbol,
                 "side": side, "type": kind, "qty": _fmt(qty), "account": account, "time": now}
            )  # fmt: skip
            for level in levels:
                remaining = qty - order.executed
                if remaining <= 0 or (price is not None and (
                    (side == "BUY" and level > price) or (side == "SELL" and level < price)
                )):  # fmt: skip
                    break
                self._fill(order, level, min(remaining, m.depth), maker=False)
            if order.open and kind == "MARKET":
                self._close(order, "EXPIRED")  # Binance expires a market order's rest
            response = self._view(order)
            response["transactTime"] = now
            response["fills"] = list(order.fills)
            return response

    def _cost_estimate(self, m: Market, qty: Decimal, levels: list[Decimal]) -> Decimal:
        # The worst price a market buy of qty reaches on the synthetic book.
        left, worst = qty, levels[0]
        for level in levels:
            worst = level
            left -= m.depth
            if left <= 0:
                break
        return worst

    def _fill(self, order: _Order, price: Decimal, qty: Decimal, *, maker: bool) -> None:
        m, account = order.market, order.account
        notional = price * qty
        rate = self.maker_fee if maker else self.taker_fee
        in_base = order.side == "BUY" and self.fee_in_base
        fee = ((qty if in_base else notional) * rate).quantize(D("1e-8"), rounding=ROUND_DOWN)
        fee_asset = m.base if in_base else m.quote
        if in_base:
            self._move(account, m.quote, locked=-notional)
            order.locked -= notional
            self._move(account, m.base, free=qty - fee)
        elif order.side == "BUY":
            cost = notional + fee
            self._move(account, m.quote, locked=-cost)
            order.locked -= cost
            self._move(account, m.base, free=qty)
        else:
            self._move(account, m.base, locked=-qty)
            order.locked -= qty
            self._move(account, m.quote, free=notional - fee)
        order.executed += qty
        order.quote += notional
        order.update_ms = int(time.time() * 1000)
        trade_id = next(self._trade_ids)
        order.fills.append(
            {"price": _fmt(price), "qty": _fmt(qty), "commission": _fmt(fee),
             "commissionAsset": fee_asset, "tradeId": trade_id}
        )  # fmt: skip
        self._trades.append(
            {"symbol": m.symbol, "id": trade_id, "orderId": order.order_id, "orderListId": -1,
             "price": _fmt(price), "qty": _fmt(qty), "quoteQty": _fmt(notional),
             "commission": _fmt(fee), "commissionAsset": fee_asset, "time": order.update_ms,
             "isBuyer": order.side == "BUY", "isMaker": maker, "isBestMatch": True,
             "account": account}
        )  # fmt: skip
        if order.executed >= order.qty:
            self._close(order, "FILLED")
        else:
            order.status = "PARTIALLY_FILLED"

    def _close(self, order: _Order, status: str) -> None:
        # Invariant: a closed order holds no locked funds.
        asset = order.market.quote if order.side == "BUY" else order.market.base
        self._move(order.account, asset, free=order.locked, locked=-order.locked)
        order.locked = ZERO
        order.status = status
        order.update_ms = int(time.time() * 1000)

    def _match_resting(self, m: Market) -> None:
        bid, ask = self._book(m)
        for order in list(self._orders.values()):
            if order.market is not m or not order.open or order.type != "LIMIT":
                continue
            crossed = ask <= order.price if order.side == "BUY" else bid >= order.price
            if crossed:
                self._fill(order, order.price, min(order.qty - order.executed, m.depth), maker=True)

    def _find(
        self, account: str, symbol: str, order_id: str | None, client_id: str | None
    ) -> _Order:
        order = None
        if order_id:
            order = self._orders.get(int(order_id))
        elif client_id:
            found = self._by_client.get((account, symbol, client_id))
            order = self._orders.get(found) if found is not None else None
        if order is None or order.account != account or order.market.symbol != symbol:
            raise VenueError(-2013, "Order does not exist.")
        return order

    def get_order(
        self, account: str, symbol: str, order_id: str | None, client_id: str | None
    ) -> dict[str, Any]:
        """GET /api/v3/order by orderId or origClientOrderId."""
        with self._lock:
            return self._view(self._find(account, symbol, order_id, client_id))

    def cancel(
        self, account: str, symbol: str, order_id: str | None, client_id: str | None
    ) -> dict[str, Any]:
        """DELETE /api/v3/order: only an open order can be canceled (else -2011)."""
        with self._lock:
            try:
                order = self._find(account, symbol, order_id, client_id)
            except VenueError:
                raise VenueError(-2011, "Unknown order sent.") from None
            if not order.open:
                raise VenueError(-2011, "Unknown order sent.")
            self._close(order, "CANCELED")
            view = self._view(order)
            view["origClientOrderId"] = order.client_id
            view["transactTime"] = order.update_ms
            return view

    def open_orders(self, account: str, symbol: str | None) -> list[dict[str, Any]]:
        with self._lock:
            return [
                self._view(o)
                for o in self._orders.values()
                if o.account == account and o.open and (symbol is None or o.market.symbol == symbol)
            ]

    def my_trades(
        self, account: str, symbol: str, order_id: str | None = None
    ) -> list[dict[str, Any]]:
        """The account's trades on ``symbol``; with ``order_id``, that order's only."""
        with self._lock:
            return [
                {k: v for k, v in t.items() if k != "account"}
                for t in self._trades
                if t["account"] == account
                and t["symbol"] == symbol
                and (order_id is None or str(t["orderId"]) == order_id)
            ]

    def _view(self, o: _Order) -> dict[str, Any]:
        return {
            "symbol": o.market.symbol, "orderId": o.order_id, "orderListId": -1,
            "clientOrderId": o.client_id, "price": _fmt(o.price), "origQty": _fmt(o.qty),
            "executedQty": _fmt(o.executed), "cummulativeQuoteQty": _fmt(o.quote),
            "status": o.status, "timeInForce": "GTC", "type": o.type, "side": o.side,
            "stopPrice": "0", "icebergQty": "0", "time": o.time_ms, "updateTime": o.update_ms,
            "isWorking": o.open, "workingTime": o.time_ms, "origQuoteOrderQty": "0",
            "selfTradePreventionMode": "NONE",
        }  # fmt: skip
