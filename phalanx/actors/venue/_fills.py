"""The matching engine's settlement: fills, closes and resting-order matches.

Accounting model. By default (a documented deviation from Binance) fees are
charged in the quote asset on both sides: a buy debits notional + fee and a
sell credits notional - fee. With ``fee_in_base=True`` a buy pays its fee in
the asset received, as Binance charges an account that does not pay fees in
BNB: buy 0.001 BTC at a 0.1% fee and receive 0.000999 BTC for the notional
(the trade's ``commissionAsset`` is the base); a sell still pays in the
quote. Fees are rounded down to 8 decimals, as Binance reports them.
Invariant: for every account, balance changes equal the fills and fees.
Callers hold the engine's lock.
"""

from __future__ import annotations

import time
from decimal import ROUND_DOWN, Decimal

from phalanx.actors.venue._engine_state import _EngineState, _Order
from phalanx.actors.venue._market import ZERO, D, Market, _fmt


class _Fills(_EngineState):
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
