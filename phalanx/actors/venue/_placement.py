"""The matching engine's order placement: validate, lock funds, match as taker.

A new order is checked against its market's filters (LOT_SIZE, PRICE_FILTER,
NOTIONAL), then the worst price it may pay is locked (a buy locks notional
plus the taker fee unless the fee is in the base; a sell locks its quantity),
then it takes the synthetic book level by level, ``depth`` at each, up to its
limit. A limit order's rest stays on the book (filled as maker when the walk
crosses it, ``_fills.py``); a market order's rest expires, as on Binance. A
client order id may be reused only once its order is closed (-2010 while open).
"""

from __future__ import annotations

import time
from decimal import Decimal
from typing import Any

from phalanx.actors.venue._engine_state import _Order, _view
from phalanx.actors.venue._fills import _Fills
from phalanx.actors.venue._market import ZERO, D, Market, VenueError, _fmt


class _Placement(_Fills):
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
            response = _view(order)
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
