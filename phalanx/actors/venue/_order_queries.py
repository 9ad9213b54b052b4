"""The matching engine's order lookups and cancels, as Binance answers them.

An order is found by ``orderId`` or by the account's client order id on the
symbol; another account's order, or one on another symbol, does not exist
(-2013). Only an open order can be canceled; any other cancel is -2011, as on
Binance. Trades are listed per account without the engine's ``account`` key.
"""

from __future__ import annotations

from typing import Any

from phalanx.actors.venue._engine_state import _Order, _view
from phalanx.actors.venue._fills import _Fills
from phalanx.actors.venue._market import VenueError


class _Queries(_Fills):
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
            return _view(self._find(account, symbol, order_id, client_id))

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
            view = _view(order)
            view["origClientOrderId"] = order.client_id
            view["transactTime"] = order.update_ms
            return view

    def open_orders(self, account: str, symbol: str | None) -> list[dict[str, Any]]:
        with self._lock:
            return [
                _view(o)
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
