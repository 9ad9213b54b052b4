"""The msgpack codec: exact round trips, and CodecError for every bad input."""

from __future__ import annotations

import collections
import contextlib
import enum
import uuid
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any, ClassVar

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from phalanx.protocols import (
    PLAIN_TYPE,
    CodecError,
    Message,
    decode,
    encode,
    encode_typed,
    registry,
    type_name_of,
)


class Side(str, enum.Enum):  # noqa: UP042 - the str-mixin form users write
    BUY = "buy"
    SELL = "sell"


class Venue(enum.Enum):
    """A plain Enum: msgpack cannot pack its members, JSON-mode dump must carry them."""

    PAPER = 1
    BINANCE = 2


class Fill(Message):
    type_name = "test.codec.fill"
    trade_id: str
    qty: Decimal
    price: Decimal


class OrderPlaced(Message):
    type_name = "test.codec.order_placed"
    order_req_id: uuid.UUID
    side: Side
    venue: Venue
    at: datetime
    qty: Decimal
    limit: Decimal | None = None
    expires_at: datetime | None = None
    tags: list[str] = []
    fees: dict[str, Decimal] = {}
    fills: list[Fill] = []
    last_fill: Fill | None = None


class Unnamed(Message):
    x: int


class RawBytes(Message):
    """JSON mode dumps bytes as UTF-8 text, so non-UTF-8 bytes cannot be encoded."""

    type_name: ClassVar[str] = "test.codec.raw_bytes"
    blob: bytes


class UnnamedChild(Fill):
    """Subclass of a named message: it gets its own default name, not its parent's."""


decimals = st.decimals(allow_nan=False, allow_infinity=False)
# Fixed offsets at minute granularity (what ISO 8601 carries), plus UTC itself.
offsets = st.just(UTC) | st.builds(
    timezone,
    st.integers(min_value=-(23 * 60 + 59), max_value=23 * 60 + 59).map(
        lambda m: timedelta(minutes=m)
    ),
)
aware_datetimes = st.datetimes(timezones=offsets)
fills = st.builds(Fill, trade_id=st.text(max_size=20), qty=decimals, price=decimals)
orders = st.builds(
    OrderPlaced,
    order_req_id=st.uuids(),
    side=st.sampled_from(Side),
    venue=st.sampled_from(Venue),
    at=aware_datetimes,
    qty=decimals,
    limit=st.none() | decimals,
    expires_at=st.none() | aware_datetimes,
    tags=st.lists(st.text(max_size=10), max_size=5),
    fees=st.dictionaries(st.text(max_size=6), decimals, max_size=3),
    fills=st.lists(fills, max_size=4),
    last_fill=st.none() | fills,
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


def _assert_exact(decoded: OrderPlaced, msg: OrderPlaced) -> None:
    """Beyond ==: the representation survives, not just the value."""
    assert str(decoded.qty) == str(msg.qty)  # Decimal exponent kept: 1.50 stays 1.50
    assert decoded.at.utcoffset() == msg.at.utcoffset()
    assert decoded.side is msg.side
    assert decoded.venue is msg.venue
    assert isinstance(decoded.order_req_id, uuid.UUID)
    assert all(type(f) is Fill for f in decoded.fills)


# --- round trips -----------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(orders)
def test_messages_with_decimal_datetime_uuid_enums_optionals_and_nesting_round_trip(
    msg: OrderPlaced,
) -> None:
    decoded = decode(encode(msg))
    assert type(decoded) is OrderPlaced
    assert decoded == msg
    _assert_exact(decoded, msg)


@settings(max_examples=200, deadline=None)
@given(orders)
def test_the_wire_frame_is_a_type_name_and_json_mode_body(msg: OrderPlaced) -> None:
    name, raw = encode_typed(msg)
    assert name == type_name_of(msg) == "test.codec.order_placed"
    assert raw == encode(msg)
    assert msgpack.unpackb(raw, raw=False) == [name, msg.model_dump(mode="json")]


@settings(max_examples=200, deadline=None)
@given(plain)
def test_plain_data_round_trips(value: Any) -> None:
    assert type_name_of(value) == PLAIN_TYPE
    assert decode(encode(value)) == value


def test_bytes_stay_bytes_and_str_stays_str() -> None:
    decoded = decode(encode({"b": b"\x00\xff", "s": "é"}))
    assert type(decoded["b"]) is bytes
    assert type(decoded["s"]) is str


def test_tuples_come_back_as_lists() -> None:
    assert decode(encode((1, ("a", b"b")))) == [1, ["a", b"b"]]


def test_64_bit_int_extremes_round_trip() -> None:
    assert decode(encode([-(2**63), 2**64 - 1])) == [-(2**63), 2**64 - 1]


def test_str_enum_and_dict_subclasses_travel_as_their_base_value() -> None:
    ordered = collections.OrderedDict([("side", Side.BUY)])
    assert decode(encode(ordered)) == {"side": "buy"}
    assert decode(encode({Side.SELL: 1})) == {"sell": 1}


def test_decode_accepts_memoryview_and_bytearray() -> None:
    raw = encode(Fill(trade_id="t", qty=Decimal("1.50"), price=Decimal(2)))
    assert decode(memoryview(raw)) == decode(bytearray(raw)) == decode(raw)


# --- bad input on decode -----------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=64))
def test_arbitrary_bytes_decode_or_raise_codec_error_only(data: bytes) -> None:
    with contextlib.suppress(CodecError):
        decode(data)


@settings(max_examples=200, deadline=None)
@given(orders, st.data())
def test_corrupted_encodings_decode_or_raise_codec_error_only(
    msg: OrderPlaced, data: st.DataObject
) -> None:
    raw = bytearray(encode(msg))
    index = data.draw(st.integers(min_value=0, max_value=len(raw) - 1))
    raw[index] = data.draw(st.integers(min_value=0, max_value=255))
    with contextlib.suppress(CodecError):
        decode(bytes(raw))


@settings(max_examples=200, deadline=None)
@given(orders, st.data())
def test_truncated_encodings_raise_codec_error(msg: OrderPlaced, data: st.DataObject) -> None:
    raw = encode(msg)
    cut = data.draw(st.integers(min_value=0, max_value=len(raw) - 1))
    with pytest.raises(CodecError):
        decode(raw[:cut])


def test_trailing_bytes_raise_codec_error() -> None:
    with pytest.raises(CodecError, match="corrupt"):
        decode(encode("x") + b"\x00")


def test_unknown_type_name_raises_codec_error_naming_it() -> None:
    raw = msgpack.packb(["no.such.type", {}])
    with pytest.raises(CodecError, match=r"unknown message type 'no\.such\.type'"):
        decode(raw)


@pytest.mark.parametrize(
    "body",
    [
        {"trade_id": "t", "qty": "not-a-number", "price": "1"},
        {"trade_id": "t", "qty": "1"},
        {"trade_id": "t", "qty": "1", "price": "1", "junk": 1},
        ["t", "1", "1"],
        None,
    ],
)
def test_invalid_body_raises_codec_error_naming_the_type(body: Any) -> None:
    raw = msgpack.packb([Fill.type_name, body])
    with pytest.raises(CodecError, match=r"invalid body for message type 'test\.codec\.fill'"):
        decode(raw)


@pytest.mark.parametrize("frame", [{"a": 1}, [1, 2], ["plain"], ["plain", 1, 2], "plain", None])
def test_frames_of_the_wrong_shape_raise_codec_error(frame: Any) -> None:
    with pytest.raises(CodecError, match="frame"):
        decode(msgpack.packb(frame))


@pytest.mark.parametrize(
    "body",
    [
        msgpack.ExtType(5, b"x"),
        [msgpack.Timestamp(1, 0)],
        {b"bin key": 1},
        {"k": {"nested": msgpack.Timestamp(2, 0)}},
    ],
)
def test_plain_bodies_holding_non_plain_msgpack_values_raise_codec_error(body: Any) -> None:
    with pytest.raises(CodecError, match="corrupt"):
        decode(msgpack.packb([PLAIN_TYPE, body], use_bin_type=True))


def test_integer_map_keys_in_the_input_raise_codec_error() -> None:
    with pytest.raises(CodecError, match="corrupt"):
        decode(msgpack.packb([PLAIN_TYPE, {1: "x"}]))


@pytest.mark.parametrize("value", ["text", 1, None])
def test_decoding_a_non_bytes_object_raises_codec_error(value: Any) -> None:
    with pytest.raises(CodecError, match="cannot decode"):
        decode(value)


# --- bad input on encode -----------------------------------------------------------


class Opaque:
    pass


@pytest.mark.parametrize(
    ("value", "named"),
    [
        (object(), "'object'"),
        (Opaque(), "'Opaque'"),
        ({1, 2}, "'set'"),
        (frozenset(), "'frozenset'"),
        (Venue.PAPER, "'Venue'"),
        (1j, "'complex'"),
        (bytearray(b"x"), "'bytearray'"),
        ([1, {"a": [object()]}], "'object'"),
        ({1: "int key"}, "dict key of type 'int'"),
        ({"ok": {2: "nested int key"}}, "dict key of type 'int'"),
        ({(1, 2): "tuple key"}, "dict key of type 'tuple'"),
        ({b"k": "bytes key"}, "dict key of type 'bytes'"),
        (2**64, "outside 64 bits"),
        (-(2**63) - 1, "outside 64 bits"),
    ],
)
def test_unencodable_values_raise_codec_error_naming_the_type(value: Any, named: str) -> None:
    with pytest.raises(CodecError, match=f"cannot encode .*{named}"):
        encode(value)
    with pytest.raises(CodecError, match=f"cannot encode .*{named}"):
        type_name_of(value)


def test_messages_nested_in_plain_data_are_refused() -> None:
    fill = Fill(trade_id="t", qty=Decimal(1), price=Decimal(1))
    with pytest.raises(CodecError, match="'Fill'"):
        encode([fill])


def test_self_referencing_and_too_deep_plain_data_raise_codec_error() -> None:
    loop: list[Any] = []
    loop.append(loop)
    with pytest.raises(CodecError, match="nested deeper"):
        encode(loop)
    deep: list[Any] = []
    for _ in range(200):
        deep = [deep]
    with pytest.raises(CodecError, match="nested deeper"):
        encode(deep)


def test_a_message_whose_json_dump_fails_raises_codec_error() -> None:
    with pytest.raises(CodecError, match=r"cannot serialise 'test\.codec\.raw_bytes'"):
        encode(RawBytes(blob=b"\xff"))


def test_the_unregistered_message_base_cannot_be_encoded() -> None:
    with pytest.raises(CodecError, match="not registered"):
        encode(Message())


# --- registry ----------------------------------------------------------------------


def test_registry_lookup_contains_and_sorted_names() -> None:
    assert registry.lookup("test.codec.fill") is Fill
    assert "test.codec.order_placed" in registry
    assert "no.such.type" not in registry
    names = registry.names()
    assert names == sorted(names)
    assert {"test.codec.fill", "test.codec.order_placed"} <= set(names)


def test_lookup_of_an_unknown_name_raises_codec_error_naming_it() -> None:
    with pytest.raises(CodecError, match=r"unknown message type 'nope'"):
        registry.lookup("nope")


def test_type_name_override_is_used_for_registry_and_wire() -> None:
    fill = Fill(trade_id="1", qty=Decimal(1), price=Decimal(2))
    assert Fill.type_name == "test.codec.fill"
    assert type_name_of(fill) == "test.codec.fill"
    assert encode_typed(fill)[0] == "test.codec.fill"


def test_default_type_name_is_module_and_qualname() -> None:
    assert Unnamed.type_name == f"{__name__}.Unnamed"
    assert registry.lookup(f"{__name__}.Unnamed") is Unnamed
    assert decode(encode(Unnamed(x=1))) == Unnamed(x=1)


def test_a_subclass_of_a_named_message_gets_its_own_default_name() -> None:
    assert UnnamedChild.type_name == f"{__name__}.UnnamedChild"
    child = UnnamedChild(trade_id="1", qty=Decimal(1), price=Decimal(2))
    assert type(decode(encode(child))) is UnnamedChild
    assert registry.lookup("test.codec.fill") is Fill


def test_re_registering_the_same_class_is_a_no_op() -> None:
    registry.register(Fill)
    assert registry.lookup("test.codec.fill") is Fill


def test_a_second_class_on_a_taken_name_is_refused_naming_both() -> None:
    with pytest.raises(CodecError, match="already used") as info:

        class Impostor(Message):
            type_name = "test.codec.fill"

    assert f"{__name__}.Fill" in str(info.value)
    assert "Impostor" in str(info.value)
    assert registry.lookup("test.codec.fill") is Fill


def test_the_plain_type_name_is_reserved() -> None:
    with pytest.raises(CodecError, match="reserved"):

        class Sneaky(Message):
            type_name = PLAIN_TYPE

    assert PLAIN_TYPE not in registry


def test_messages_are_frozen_and_reject_extra_fields() -> None:
    fill = Fill(trade_id="1", qty=Decimal(1), price=Decimal(2))
    with pytest.raises(Exception, match="frozen"):
        fill.qty = Decimal(3)  # type: ignore[misc]
    with pytest.raises(Exception, match="extra"):
        Fill(trade_id="1", qty=Decimal(1), price=Decimal(2), junk=1)  # type: ignore[call-arg]
