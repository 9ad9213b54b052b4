"""The order record's fast paths give what the generic ones give (codec, memo, evolve)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from phalanx.protocols.trading import OrderFill
from phalanx.storage import Storage
from phalanx.storage._order_record import _fill_wire, decode, encode, evolve
from phalanx.storage._orders import IDEMPOTENCY, OrderRecord, OrderStore, add_fills

decimals = st.decimals(
    allow_nan=False, allow_infinity=False, places=8, min_value=0
) | st.sampled_from(
    [Decimal("1E+3"), Decimal("5.000"), Decimal("0.00001"), Decimal("1E-9"), Decimal("-0")]
)
texts = st.text(min_size=1, max_size=12)


@st.composite
def fills(draw: st.DrawFn, req: str = "r1") -> OrderFill:
    return OrderFill(
        trade_id=draw(texts), order_req_id=req, exchange_order_id=draw(st.none() | texts),
        symbol="BTC/USDT", side=draw(st.sampled_from(["buy", "sell"])), price=draw(decimals),
        amount=draw(decimals), fee=draw(decimals), fee_currency=draw(st.none() | texts),
        timestamp=draw(st.none() | st.integers(min_value=0, max_value=2**53)),
    )  # fmt: skip


@st.composite
def records(draw: st.DrawFn) -> OrderRecord:
    base = OrderRecord(
        order_req_id="r1", client_order_id=draw(texts), generation=draw(st.integers(0, 9)),
        status=draw(st.sampled_from(["submitting", "unknown", "open", "filled", "canceled"])),
        symbol="BTC/USDT", side="buy", type=draw(st.sampled_from(["limit", "market"])),
        amount=draw(decimals), price=draw(st.none() | decimals),
        exchange_order_id=draw(st.none() | texts), saga_id=draw(st.none() | texts),
        created_at=draw(st.floats(0, 2e9)), updated_at=draw(st.floats(0, 2e9)),
        external=draw(st.booleans()), notify=draw(st.none() | texts),
        cancel_requested=draw(st.booleans()), version=draw(st.integers(0, 99)),
    )  # fmt: skip
    record = add_fills(base, draw(st.lists(fills(), max_size=4)))
    return evolve(record, sunk=tuple(draw(st.lists(texts, max_size=3))))


def _generic_to_wire(record: OrderRecord) -> dict[str, Any]:
    """The record codec as it was: a walk over the dataclass fields, fills via pydantic."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(record):
        value = getattr(record, f.name)
        if f.name == "fills":
            value = {k: v.model_dump(mode="json") for k, v in value.items()}
        elif isinstance(value, Decimal):
            value = str(value)
        elif isinstance(value, tuple):
            value = list(value)
        out[f.name] = value
    return out


@settings(max_examples=150, deadline=None)
@given(records())
def test_to_wire_and_encode_give_the_generic_walks_dict_and_bytes(record: OrderRecord) -> None:
    wire = _generic_to_wire(record)
    assert record.to_wire() == wire
    assert list(record.to_wire()) == list(wire)  # key order: the stored bytes do not change
    assert encode(b"r1", record) == msgpack.packb(wire, use_bin_type=True)


@settings(max_examples=150, deadline=None)
@given(fills())
def test_the_fill_fast_dump_is_pydantics_json_dump(fill: OrderFill) -> None:
    assert _fill_wire(fill) == fill.model_dump(mode="json")
    assert list(_fill_wire(fill)) == list(fill.model_dump(mode="json"))


@settings(max_examples=100, deadline=None)
@given(records())
def test_decode_gives_the_record_whether_or_not_the_memo_holds_it(record: OrderRecord) -> None:
    raw = encode(b"r1", record)
    assert decode(b"r1", raw) is record  # the memo: these very bytes were packed from it
    fresh = decode(b"other-key", raw)  # no memo entry: decoded from the bytes
    assert fresh == record
    assert fresh is not record
    assert decode(b"r1", None) is None


def test_decode_of_bytes_the_memo_did_not_pack_decodes_them() -> None:
    record = OrderRecord(
        order_req_id="r1", client_order_id="px-r1-0", generation=0, status="open",
        symbol="BTC/USDT", side="buy", type="limit", amount=Decimal("0.01"),
    )  # fmt: skip
    encode(b"r1", record)
    other = evolve(record, status="filled", version=3)
    raw = msgpack.packb(_generic_to_wire(other), use_bin_type=True)  # another writer's bytes
    assert decode(b"r1", raw) == other


@settings(max_examples=100, deadline=None)
@given(records(), st.sampled_from(["open", "filled"]), st.none() | texts, st.integers(0, 9))
def test_evolve_is_dataclasses_replace(
    record: OrderRecord, status: str, eid: str | None, gen: int
) -> None:
    changes: dict[str, Any] = {"status": status, "exchange_order_id": eid, "generation": gen}
    before = dataclasses.astuple(record)
    new = evolve(record, **changes)
    assert new == dataclasses.replace(record, **changes)
    assert type(new) is OrderRecord
    assert dataclasses.astuple(record) == before
    assert evolve(record) == record
    assert evolve(record) is not record


def test_evolve_refuses_an_unknown_field_like_replace() -> None:
    record = OrderRecord(
        order_req_id="r1", client_order_id="c", generation=0, status="open",
        symbol="BTC/USDT", side="buy", type="limit", amount=Decimal(1),
    )  # fmt: skip
    with pytest.raises(TypeError, match="statuz"):
        evolve(record, statuz="open")
    with pytest.raises(TypeError):
        dataclasses.replace(record, statuz="open")  # type: ignore[call-arg]


@pytest.fixture
def storage(tmp_path: Path) -> Iterator[Storage]:
    with Storage(tmp_path / "state.lmdb", sync=False) as s:
        yield s


def test_an_update_after_another_writer_changed_the_record_applies_to_the_stored_one(
    storage: Storage,
) -> None:
    store = OrderStore(storage)
    record = OrderRecord(
        order_req_id="w1", client_order_id="px-w1-0", generation=0, status="submitting",
        symbol="BTC/USDT", side="buy", type="limit", amount=Decimal("0.01"),
    )  # fmt: skip
    assert store.register(record)
    # Another writer (another process, an older phalanx) stores its own bytes.
    theirs = evolve(record, status="open", exchange_order_id="77", version=4)
    raw = msgpack.packb(_generic_to_wire(theirs), use_bin_type=True)
    db = storage.db(IDEMPOTENCY)
    storage.write_now(lambda txn: txn.put(b"w1", raw, db=db))
    new = store.update("w1", lambda r: evolve(r, cancel_requested=True), "cancel_requested")
    assert (new.status, new.exchange_order_id, new.version) == ("open", "77", 5)
    assert new.cancel_requested
    assert store.get("w1") == new
    assert store.by_exchange_id("paper", "BTC/USDT", "77") == new
