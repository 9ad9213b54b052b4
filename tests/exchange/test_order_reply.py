"""order_reply builds replies without a second validation pass: pinned to what validation gives."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from phalanx.actors.exchange import order_reply
from phalanx.actors.exchange._replies import _dec, _trade
from phalanx.errors import UnknownOutcome
from phalanx.protocols._codec import decode, encode
from phalanx.protocols.exchange import OrderReply

_STATUSES = frozenset(("open", "closed", "canceled", "expired", "rejected"))


def _validated(o: dict[str, Any]) -> OrderReply:
    """The oracle: order_reply as it was, validating the reply model (same conversions)."""
    if not o.get("id") or o.get("status") not in _STATUSES:
        raise UnknownOutcome("no id/status")
    try:
        fee = o.get("fee") or {}
        trades = o.get("trades")
        return OrderReply(
            id=str(o["id"]), client_order_id=o.get("clientOrderId"), symbol=o["symbol"],
            status=o["status"], side=o.get("side"), type=o.get("type"),
            amount=_dec(o.get("amount")), filled=_dec(o.get("filled")),
            remaining=_dec(o.get("remaining")), price=_dec(o.get("price")),
            average=_dec(o.get("average")), cost=_dec(o.get("cost")),
            fee_cost=_dec(fee.get("cost")), fee_currency=fee.get("currency"),
            trades=[_trade(t) for t in trades if t.get("id") is not None] if trades else [],
        )  # fmt: skip
    except (ValidationError, KeyError, TypeError, AttributeError, ArithmeticError) as exc:
        raise UnknownOutcome("unreadable") from exc


_any = st.one_of(
    st.none(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(-(10**20), 10**20),
    st.text(max_size=8),
    st.sampled_from(["n/a", "1.5", "NaN", "-Infinity", "", "1e3", "open"]),
    st.booleans(),
)
_number = st.one_of(st.none(), st.floats(-1e12, 1e12), st.integers(0, 10**9))
_text = st.one_of(st.none(), st.text(max_size=8))
_trade_dicts = st.lists(
    st.fixed_dictionaries(
        {
            "id": st.one_of(st.none(), st.just("t1")),
            "symbol": st.just("BTC/USDT"),
            "price": st.one_of(_number, _any),
            "amount": st.sampled_from([0.01, 1, "x"]),
        }
    ),
    max_size=2,
)
# A well-formed ccxt order; the test then spoils none, one or two of its fields.
_orders = st.fixed_dictionaries(
    {
        "id": st.one_of(st.just("7"), st.integers(1, 99)),
        "status": st.sampled_from(sorted(_STATUSES)),
        "symbol": st.just("BTC/USDT"),
        "clientOrderId": _text,
        "side": _text,
        "type": _text,
        "amount": _number,
        "filled": _number,
        "remaining": _number,
        "price": _number,
        "average": _number,
        "cost": _number,
        "fee": st.one_of(st.none(), st.fixed_dictionaries({"cost": _number, "currency": _text})),
        "trades": st.one_of(st.none(), st.just([]), _trade_dicts),
    }
)
_SPOILABLE = ("id", "status", "symbol", "clientOrderId", "side", "type", "amount", "filled",
              "remaining", "price", "average", "cost", "fee.cost", "fee.currency")  # fmt: skip
_spoils = st.lists(st.tuples(st.sampled_from(_SPOILABLE), _any), max_size=2)


@settings(max_examples=400, deadline=None)
@given(_orders, _spoils)
def test_a_reply_built_without_revalidation_equals_the_validated_one_or_both_are_unknown(
    o: dict[str, Any], spoils: list[tuple[str, Any]]
) -> None:
    for key, value in spoils:
        if key.startswith("fee."):
            o["fee"] = {**(o["fee"] or {}), key[4:]: value}
        else:
            o[key] = value
    try:
        expected = _validated(o)
    except UnknownOutcome:
        with pytest.raises(UnknownOutcome):
            order_reply(o)
        return
    got = order_reply(o)
    assert type(got) is OrderReply
    assert got == expected
    assert list(got.__dict__) == list(expected.__dict__)
    assert got.__pydantic_fields_set__ == expected.__pydantic_fields_set__
    assert got.model_dump(mode="json") == expected.model_dump(mode="json")
    assert repr(got) == repr(expected)
    assert decode(encode(got)) == expected


def test_a_ccxt_shaped_reply_is_frozen_typed_and_round_trips_through_the_codec() -> None:
    o = {"id": "1", "clientOrderId": "c-1", "symbol": "BTC/USDT", "status": "open",
         "side": "buy", "type": "limit", "amount": 0.001, "filled": 0.0, "remaining": 0.001,
         "price": 30000.0, "average": None, "cost": 0.0, "fee": None, "trades": []}  # fmt: skip
    reply = order_reply(o)
    assert reply == _validated(o)
    assert (reply.price, reply.remaining, reply.trades) == (
        Decimal("30000.0"),
        Decimal("0.001"),
        [],
    )
    with pytest.raises(ValidationError):
        reply.status = "closed"  # type: ignore[misc]
    assert OrderReply.model_validate(reply.model_dump()) == reply
    assert decode(encode(reply)) == reply


@pytest.mark.parametrize(
    ("field", "value"),
    [("clientOrderId", 7), ("side", 1.5), ("symbol", None), ("price", float("nan")),
     ("amount", float("inf")), ("filled", "n/a")],
)  # fmt: skip
def test_a_field_validation_would_refuse_makes_the_reply_an_unknown_outcome(
    field: str, value: Any
) -> None:
    o = {"id": "1", "symbol": "BTC/USDT", "status": "open", field: value}
    with pytest.raises(UnknownOutcome):
        order_reply(o)
