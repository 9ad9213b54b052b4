"""``phalanx._evolve``: dataclasses.replace without __init__, for the classes it fits."""

from __future__ import annotations

import dataclasses
from dataclasses import InitVar, dataclass, field

import pytest
from hypothesis import given
from hypothesis import strategies as st

from phalanx._evolve import evolve, evolve_validated


@dataclass(frozen=True)
class Plain:
    a: int
    b: str = "x"
    c: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class Slotted:
    a: int
    b: str = "x"


@dataclass(frozen=True)
class Checked:
    a: int

    def __post_init__(self) -> None:
        if self.a < 0:
            raise ValueError("a must be >= 0")


@dataclass(frozen=True)
class WithInitVar:
    a: int
    scale: InitVar[int] = 1


@dataclass(frozen=True)
class WithDerived:
    a: int
    b: int = field(init=False, default=0)


@given(a=st.integers(), b=st.text(), c=st.lists(st.integers()).map(tuple))
def test_the_copy_is_what_replace_builds_with_or_without_slots(
    a: int, b: str, c: tuple[int, ...]
) -> None:
    plain = Plain(1)
    assert evolve(plain, a=a, c=c) == dataclasses.replace(plain, a=a, c=c)
    assert type(evolve(plain, b=b)) is Plain
    slotted = Slotted(1)
    assert evolve(slotted, b=b) == dataclasses.replace(slotted, b=b)
    assert evolve(slotted) is not slotted


def test_an_unknown_field_raises_type_error_naming_it() -> None:
    with pytest.raises(TypeError, match="Plain has no field bogus"):
        evolve(Plain(1), bogus=2)
    with pytest.raises(TypeError, match="Slotted has no field bogus"):
        evolve(Slotted(1), bogus=2)


def test_a_post_init_class_needs_evolve_validated_which_trusts_the_caller() -> None:
    with pytest.raises(TypeError, match="__post_init__"):
        evolve(Checked(1), a=2)
    assert evolve_validated(Checked(1), a=2) == Checked(2)


@pytest.mark.parametrize("record", [WithInitVar(1), WithDerived(1)])
def test_a_class_whose_init_does_more_than_assign_its_fields_is_refused(record: object) -> None:
    with pytest.raises(TypeError, match="does not take exactly its fields"):
        evolve_validated(record, a=2)
