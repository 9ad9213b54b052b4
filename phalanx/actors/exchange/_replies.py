"""Order, trade and number replies from ccxt dicts: typed, or an unknown outcome."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from pydantic import ValidationError

from phalanx.errors import UnknownOutcome
from phalanx.protocols.exchange import OrderReply, Trade

__all__ = ["order_reply"]

_DECIMALS: dict[Any, Decimal] = {}  # ccxt number -> Decimal; the same sizes and prices recur


def _dec(value: Any) -> Decimal | None:
    # Decimal(str(x)) then a Decimal field: 14 us per order reply, measured side by
    # side with handing pydantic the floats (it makes the same Decimal) at 18 us.
    # Keys equal as numbers (1 and 1.0, 0.0 and -0.0) map to equal Decimals.
    if value is None:
        return None
    number = _DECIMALS.get(value)
    if number is None:
        number = Decimal(str(value))
        if len(_DECIMALS) >= 4096:
            _DECIMALS.clear()
        _DECIMALS[value] = number
    return number


def _trade(t: dict[str, Any]) -> Trade:
    fee = t.get("fee") or {}
    return Trade(
        id=str(t["id"]), order_id=t.get("order"), symbol=t["symbol"], side=t.get("side"),
        price=Decimal(str(t["price"])), amount=Decimal(str(t["amount"])),
        cost=Decimal(str(t.get("cost") or 0)), fee_cost=_dec(fee.get("cost")),
        fee_currency=fee.get("currency"),
        taker_or_maker=t.get("takerOrMaker"), timestamp=t.get("timestamp"),
    )  # fmt: skip


_STATUSES = frozenset(("open", "closed", "canceled", "expired", "rejected"))
_ORDER_FIELDS = tuple(OrderReply.model_fields)
_ALL_FIELDS = set(_ORDER_FIELDS)  # copied per reply: each model owns its fields-set
_ORDER_DECIMALS = ("amount", "filled", "remaining", "price", "average", "cost", "fee_cost")
_ORDER_TEXTS = ("client_order_id", "side", "type", "fee_currency")  # str | None
_new = object.__new__
_set = object.__setattr__


def _order_fields(o: dict[str, Any]) -> dict[str, Any]:
    """The OrderReply fields of a ccxt order, typed here (in model field order)."""
    get = o.get
    fee = get("fee") or {}
    trades = get("trades")
    # ``cached(x) or _dec(x)``: a cache hit without a call; a miss, None or a zero
    # Decimal (falsy) goes through _dec, which gives the same cached value.
    cached = _DECIMALS.get
    amount, filled, remaining = get("amount"), get("filled"), get("remaining")
    price, average, cost, fee_cost = get("price"), get("average"), get("cost"), fee.get("cost")
    return {
        "id": str(o["id"]), "client_order_id": get("clientOrderId"), "symbol": o["symbol"],
        "status": o["status"], "side": get("side"), "type": get("type"),
        "amount": cached(amount) or _dec(amount), "filled": cached(filled) or _dec(filled),
        "remaining": cached(remaining) or _dec(remaining),
        "price": cached(price) or _dec(price), "average": cached(average) or _dec(average),
        "cost": cached(cost) or _dec(cost), "fee_cost": cached(fee_cost) or _dec(fee_cost),
        "fee_currency": fee.get("currency"),
        "trades": [_trade(t) for t in trades if t.get("id") is not None] if trades else [],
    }  # fmt: skip


def _plain(f: dict[str, Any]) -> bool:
    """True if validation would keep every field as it is (exact str/None, finite Decimal)."""
    if type(f["symbol"]) is not str or type(f["status"]) is not str:
        return False
    for value in (f["client_order_id"], f["side"], f["type"], f["fee_currency"]):  # _ORDER_TEXTS
        if value is not None and type(value) is not str:
            return False
    for value in (
        f["amount"], f["filled"], f["remaining"], f["price"], f["average"], f["cost"],
        f["fee_cost"],
    ):  # fmt: skip  # _ORDER_DECIMALS
        if value is not None and not value.is_finite():  # pydantic refuses NaN and infinity
            return False
    return True


def order_reply(o: dict[str, Any]) -> OrderReply:
    """Validate a ccxt order: no id or no status is an unknown outcome, never success.

    The fields are typed here (the id as text, numbers as Decimals, trades by
    their validated model). When each one is already what validation would
    keep (exact str or None, a finite Decimal: every reply ccxt parses), the
    reply is built without a second validation pass, which was ~30 us of a
    ~40 us reply on the exchange round trip (thread CPU, measured in place);
    anything else goes through pydantic. ``tests/exchange/test_order_reply.py``
    pins both paths to what validation gives.
    """
    status = o.get("status")
    if not o.get("id") or not isinstance(status, str) or status not in _STATUSES:
        raise UnknownOutcome(
            f"order reply without id/status (id={o.get('id')!r}, status={status!r})"
        )
    try:
        fields = _order_fields(o)
        if not _plain(fields):
            return OrderReply(**fields)
    except (ValidationError, KeyError, TypeError, AttributeError, ArithmeticError) as exc:
        # The venue answered for this order but the answer cannot be read: what
        # happened to the order is not known (never a rejection the caller may retry).
        raise UnknownOutcome(f"order reply {o.get('id')!r} unreadable: {exc}") from exc
    # What model_construct does, without its per-field Python loop (~13 us): every
    # field set, in model order; the frozen model's __setattr__ still refuses changes.
    reply: OrderReply = _new(OrderReply)
    _set(reply, "__dict__", fields)
    _set(reply, "__pydantic_fields_set__", _ALL_FIELDS.copy())
    _set(reply, "__pydantic_extra__", None)
    _set(reply, "__pydantic_private__", None)
    return reply
