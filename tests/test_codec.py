"""The msgpack codec: exact round trips, and CodecError for every bad input."""

from __future__ import annotations

import contextlib
import enum
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from phalanx import CodecError, Message
from phalanx.protocols import PLAIN_TYPE, decode, encode, encode_typed, registry, type_name_of


class Side(str, enum.Enum):  # noqa: UP042 - the str-mixin form users write
    BUY = "buy"
    SELL = "sell"


class Fill(Message):
    type_name = "test.codec.fill"
    trade_id: str
    qty: Decimal
    price: Decimal


class OrderPlaced(Message):
    type_name = "test.codec.order_placed"
    order_req_id: uuid.UUID
    side: Side
    at: datetime
    qty: Decimal
    limit: Decimal | None = None
    tags: list[str] = []
    fills: list[Fill] = []


decimals = st.decimals(allow_nan=False, allow_infinity=False, places=8)
aware_datetimes = st.datetimes(timezones=st.just(UTC))
fills = st.builds(Fill, trade_id=st.text(max_size=20), qty=decimals, price=decimals)
orders = st.builds(
    OrderPlaced,
    order_req_id=st.uuids(),
    side=st.sampled_from(Side),
    at=aware_datetimes,
    qty=decimals,
    limit=st.none() | decimals,
    tags=st.lists(st.text(max_size=10), max_size=5),
    fills=st.lists(fills, max_size=4),
)
scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False)
    | st.text(max_size=30)
    | st.binary(max_size=30)
)
plain = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=8), inner, max_size=5)
    ),
    max_leaves=30,
)


@settings(max_examples=200, deadline=None)
@given(orders)
def test_messages_with_decimal_datetime_uuid_enum_and_nesting_round_trip(msg: OrderPlaced) -> None:
    decoded = decode(encode(msg))
    assert decoded == msg
    assert type(decoded) is OrderPlaced
    assert decoded.side is msg.side


@settings(max_examples=200, deadline=None)
@given(plain)
def test_plain_data_round_trips(value: Any) -> None:
    assert decode(encode(value)) == value
    assert type_name_of(value) == PLAIN_TYPE


def test_tuples_come_back_as_lists() -> None:
    assert decode(encode((1, ("a", b"b")))) == [1, ["a", b"b"]]


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=64))
def test_arbitrary_bytes_decode_or_raise_codec_error_only(data: bytes) -> None:
    with contextlib.suppress(CodecError):
        decode(data)


@settings(max_examples=100, deadline=None)
@given(orders, st.data())
def test_truncated_encodings_raise_codec_error(msg: OrderPlaced, data: st.DataObject) -> None:
    raw = encode(msg)
    cut = data.draw(st.integers(min_value=0, max_value=len(raw) - 1))
    with pytest.raises(CodecError):
        decode(raw[:cut])


def test_unknown_type_name_raises_codec_error_naming_it() -> None:
    raw = msgpack.packb(["no.such.type", {}])
    with pytest.raises(CodecError, match=r"no\.such\.type"):
        decode(raw)


def test_invalid_body_raises_codec_error() -> None:
    raw = msgpack.packb([Fill.type_name, {"trade_id": "t", "qty": "not-a-number", "price": "1"}])
    with pytest.raises(CodecError, match="invalid body"):
        decode(raw)


def test_frames_of_the_wrong_shape_raise_codec_error() -> None:
    for frame in ({"a": 1}, [1, 2], ["plain"], "plain"):
        with pytest.raises(CodecError, match="frame"):
            decode(msgpack.packb(frame))


@pytest.mark.parametrize(
    "value", [object(), {1: "int key"}, {"ok": {2: "nested int key"}}, {1, 2}, 2**70]
)
def test_unencodable_values_raise_codec_error_naming_the_type(value: Any) -> None:
    with pytest.raises(CodecError, match="cannot encode"):
        encode(value)


def test_registry_lookup_and_explicit_type_name() -> None:
    assert registry.lookup("test.codec.fill") is Fill
    assert "test.codec.order_placed" in registry.names()
    assert encode_typed(Fill(trade_id="1", qty=Decimal(1), price=Decimal(2)))[0] == Fill.type_name


def test_default_type_name_is_module_and_qualname() -> None:
    class Unnamed(Message):
        x: int

    assert (
        Unnamed.type_name
        == f"{__name__}.test_default_type_name_is_module_and_qualname.<locals>.Unnamed"
    )
    assert decode(encode(Unnamed(x=1))) == Unnamed(x=1)


def test_a_second_class_on_a_taken_name_is_refused() -> None:
    with pytest.raises(CodecError, match="already used"):

        class Impostor(Message):
            type_name = "test.codec.fill"


def test_messages_are_frozen_and_reject_extra_fields() -> None:
    fill = Fill(trade_id="1", qty=Decimal(1), price=Decimal(2))
    with pytest.raises(Exception, match="frozen"):
        fill.qty = Decimal(3)  # type: ignore[misc]
    with pytest.raises(Exception, match="extra"):
        Fill(trade_id="1", qty=Decimal(1), price=Decimal(2), junk=1)  # type: ignore[call-arg]
