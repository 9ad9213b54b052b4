"""Typed messages to and from an ``ExchangeConnection`` (each request has a typed reply)."""

from __future__ import annotations

from decimal import Decimal
from typing import Literal

from phalanx.protocols._message import Message

__all__ = [
    "Balance",
    "CancelOrder",
    "CreateOrder",
    "FetchBalance",
    "FetchMyTrades",
    "FetchOpenOrders",
    "FetchOrder",
    "FetchTicker",
    "OpenOrders",
    "OrderReply",
    "SubscribeTicker",
    "Ticker",
    "Trade",
    "Trades",
]


class FetchTicker(Message):
    """Ask for one ticker; replies :class:`Ticker`."""

    type_name = "exchange.fetch_ticker"
    symbol: str


class Ticker(Message):
    """A ticker; also what the poller tells subscribers."""

    type_name = "exchange.ticker"
    exchange: str
    symbol: str
    bid: Decimal | None
    ask: Decimal | None
    last: Decimal | None
    timestamp: int | None


class SubscribeTicker(Message):
    """Tell the connection to poll ``symbol`` and tell each Ticker to ``subscriber`` (a path)."""

    type_name = "exchange.subscribe_ticker"
    symbol: str
    subscriber: str


class FetchBalance(Message):
    """Ask for balances; replies :class:`Balance`."""

    type_name = "exchange.fetch_balance"


class Balance(Message):
    """Free, used and total per asset."""

    type_name = "exchange.balance"
    free: dict[str, Decimal]
    used: dict[str, Decimal]
    total: dict[str, Decimal]


class CreateOrder(Message):
    """Place one order with a caller-chosen client order id; replies :class:`OrderReply`."""

    type_name = "exchange.create_order"
    symbol: str
    side: Literal["buy", "sell"]
    type: Literal["limit", "market"]
    amount: Decimal
    price: Decimal | None = None
    client_order_id: str


class FetchOrder(Message):
    """Look an order up by exchange id or client order id; replies :class:`OrderReply`."""

    type_name = "exchange.fetch_order"
    symbol: str
    id: str | None = None
    client_order_id: str | None = None


class CancelOrder(Message):
    """Cancel by exchange id or client order id; replies :class:`OrderReply`."""

    type_name = "exchange.cancel_order"
    symbol: str
    id: str | None = None
    client_order_id: str | None = None


class Trade(Message):
    """One fill."""

    type_name = "exchange.trade"
    id: str
    order_id: str | None
    symbol: str
    side: str | None
    price: Decimal
    amount: Decimal
    cost: Decimal
    fee_cost: Decimal | None
    fee_currency: str | None
    taker_or_maker: str | None
    timestamp: int | None


class OrderReply(Message):
    """A validated order: it always has an id and a status (else UnknownOutcome is raised)."""

    type_name = "exchange.order"
    id: str
    client_order_id: str | None
    symbol: str
    status: Literal["open", "closed", "canceled", "expired", "rejected"]
    side: str | None
    type: str | None
    amount: Decimal | None
    filled: Decimal | None
    remaining: Decimal | None
    price: Decimal | None
    average: Decimal | None
    cost: Decimal | None
    fee_cost: Decimal | None
    fee_currency: str | None
    trades: list[Trade] = []


class FetchOpenOrders(Message):
    """Ask for open orders; replies :class:`OpenOrders`."""

    type_name = "exchange.fetch_open_orders"
    symbol: str | None = None


class OpenOrders(Message):
    """The open orders."""

    type_name = "exchange.open_orders"
    orders: list[OrderReply]


class FetchMyTrades(Message):
    """Ask for this account's trades; replies :class:`Trades`.

    With ``order_id``, only that venue order's trades (Binance ``orderId``):
    a lookup by ``since`` alone sees one 24-hour window of at most 500 trades,
    so an order that rests longer, or a busy account, would hide fills.
    """

    type_name = "exchange.fetch_my_trades"
    symbol: str
    since: int | None = None
    order_id: str | None = None


class Trades(Message):
    """This account's fills."""

    type_name = "exchange.trades"
    trades: list[Trade]
