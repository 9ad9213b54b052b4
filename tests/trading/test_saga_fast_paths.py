"""The saga's fast paths give what the slow ones give, byte for byte.

- :class:`SnapshotPacker` packs ``msgpack.packb(state.to_dict())`` from cached
  pieces, whatever states it packed before;
- ``to_plain``'s fast pass returns the full pass's result, and leaves every
  error (and its message) to it.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from phalanx.actors.saga import SagaError
from phalanx.actors.saga._plain import _full, to_plain
from phalanx.actors.saga._protocol import Alert, Compensate, DeadLetter, RunStep, ScheduleRetry
from phalanx.actors.saga._snapshot import SnapshotPacker
from phalanx.actors.saga._state import SagaState, StepState, evolve

NAMES = ("validate", "risk_check", "reserve_funds", "place_order")
_text = st.text(max_size=8)
_scalar = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False)
    | _text
)
_plain = st.recursive(
    _scalar,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_text, inner, max_size=3),
    max_leaves=12,
)
_step = st.builds(
    StepState,
    status=st.sampled_from(["pending", "running", "done", "failed", "compensating"]),
    attempt=st.integers(0, 5),
    comp_attempt=st.integers(0, 5),
    deadline=st.none() | st.floats(0, 2e9),
    result=_plain,
    error=st.none() | _text,
    comp_deadline=st.none() | st.floats(0, 2e9),
)
_command = st.one_of(
    st.builds(RunStep, st.sampled_from(NAMES), st.integers(1, 3)),
    st.builds(Compensate, st.sampled_from(NAMES), st.integers(1, 3)),
    st.builds(ScheduleRetry, st.sampled_from(NAMES), st.integers(1, 3),
              st.sampled_from(["action", "compensation"]), st.floats(0, 2e9), st.floats(0, 9)),
    st.builds(DeadLetter, st.just("compensation_failed"), st.sampled_from(NAMES), _text,
              st.none() | _text),
    st.builds(Alert, _text, st.just("critical"), st.sampled_from(NAMES), _text),
)  # fmt: skip
_change = st.one_of(
    st.tuples(st.just("step"), st.sampled_from(NAMES), _step),
    st.tuples(st.just("seq"), st.integers(0, 2**40)),
    st.tuples(st.just("status"), st.sampled_from(["running", "compensating", "completed"])),
    st.tuples(st.just("outbox"), st.lists(_command, max_size=3).map(tuple)),
    st.tuples(st.just("done"), st.lists(st.sampled_from(NAMES), max_size=4).map(tuple)),
    st.tuples(st.just("current"), st.none() | st.sampled_from(NAMES)),
    st.tuples(st.just("error"), st.none() | _text),
    st.tuples(st.just("finalized"), st.booleans()),
    st.tuples(st.just("updated_at"), st.floats(0, 2e9)),
    st.tuples(st.just("input"), st.dictionaries(_text, _plain, max_size=4)),
)


def _packb(state: SagaState) -> bytes:
    packed: bytes = msgpack.packb(state.to_dict(), use_bin_type=True)
    return packed


def _apply(state: SagaState, change: tuple[Any, ...]) -> SagaState:
    if change[0] == "step":
        steps = dict(state.steps)
        steps[change[1]] = change[2]
        return evolve(state, steps=steps)
    return evolve(state, **{change[0]: change[1]})


@settings(max_examples=200, deadline=None)
@given(
    input=st.dictionaries(_text, _plain, max_size=4),
    steps=st.lists(_step, min_size=len(NAMES), max_size=len(NAMES)),
    changes=st.lists(_change, max_size=12),
)
def test_the_snapshot_packer_gives_packb_of_to_dict_for_every_state_in_a_run(
    input: dict[str, Any], steps: list[StepState], changes: list[tuple[Any, ...]]
) -> None:
    state = SagaState(
        saga_id="s-1", kind="buy_order", input=input, status="running",
        steps=dict(zip(NAMES, steps, strict=True)), created_at=1.5, updated_at=1.5,
    )  # fmt: skip
    packer = SnapshotPacker()
    assert packer.pack(state) == _packb(state)
    for change in changes:
        state = _apply(state, change)
        assert packer.pack(state) == _packb(state)
        assert packer.pack(state) == _packb(state)  # from the cache alone


def test_the_snapshot_packer_repacks_an_equal_input_whose_keys_are_ordered_otherwise() -> None:
    steps = {name: StepState() for name in NAMES}
    one = SagaState("s-1", "k", {"a": 1, "b": 2}, "running", steps)
    two = evolve(one, input={"b": 2, "a": 1})  # equal, but packs differently
    packer = SnapshotPacker()
    assert packer.pack(one) == _packb(one)
    assert packer.pack(two) == _packb(two) != _packb(one)


def test_the_snapshot_packer_follows_a_packer_shared_by_two_sagas() -> None:
    steps = {name: StepState() for name in NAMES}
    one = SagaState("s-1", "k", {"a": 1}, "running", steps)
    two = SagaState("s-2", "k", {"a": 1}, "running", steps)
    packer = SnapshotPacker()
    assert [packer.pack(s) for s in (one, two, one)] == [_packb(one), _packb(two), _packb(one)]


class _Fill(BaseModel):
    trade_id: str
    amount: Decimal


class _Str(str):
    """A str subclass: the full pass keeps it (isinstance), the fast one defers."""


_any = st.recursive(
    _scalar | st.decimals(allow_nan=False, allow_infinity=False) | st.builds(_Str, _text)
    | st.builds(_Fill, trade_id=_text, amount=st.decimals(allow_nan=False,
                                                          allow_infinity=False)),
    lambda inner: st.lists(inner, max_size=3) | st.tuples(inner, inner)
    | st.frozensets(_scalar, max_size=3)
    | st.dictionaries(_text | st.integers(), inner, max_size=3),
    max_leaves=12,
)  # fmt: skip


def _outcome(fn: Any, value: Any) -> tuple[str, Any]:
    try:
        return "ok", fn(value, "result")
    except SagaError as exc:
        return "error", str(exc)


@settings(max_examples=300, deadline=None)
@given(value=_any)
def test_to_plain_gives_the_full_pass_result_or_error(value: Any) -> None:
    fast, full = _outcome(to_plain, value), _outcome(_full, value)
    assert fast == full
    if fast[0] == "ok":
        assert [type(x) for x in _leaves(fast[1])] == [type(x) for x in _leaves(full[1])]


def _leaves(value: Any) -> list[Any]:
    if isinstance(value, dict):
        return [leaf for item in value.values() for leaf in _leaves(item)]
    if isinstance(value, list):
        return [leaf for item in value for leaf in _leaves(item)]
    return [value]


def test_to_plain_names_the_path_of_a_value_that_is_not_plain_data() -> None:
    with pytest.raises(SagaError, match=r"result\.fills\[1\]: object is not plain data"):
        to_plain({"fills": [1, object()]})
