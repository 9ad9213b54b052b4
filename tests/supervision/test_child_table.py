"""A supervisor's child table: start order, O(1) lookups, list-like removal."""

from __future__ import annotations

import pytest

from phalanx import Actor
from phalanx.supervision import ChildSpec
from phalanx.supervision._children import _Child, _ChildTable


class Idle(Actor):
    """Never started here: the table only holds specs and paths."""


def _child(child_id: str) -> _Child:
    return _Child(ChildSpec(child_id, Idle), f"/sup/{child_id}")


def test_children_keep_start_order_and_are_found_by_id_and_path() -> None:
    table = _ChildTable()
    a, b, c = (_child(x) for x in "abc")
    for child in (a, b, c):
        table.append(child)
    assert list(table) == [a, b, c]
    assert list(reversed(table)) == [c, b, a]
    assert table.by_id("b") is b
    assert table.by_path("/sup/c") is c
    assert table.by_id("/sup/c") is None
    assert table.from_child(b) == [b, c]
    assert len(table) == 3


def test_removing_a_child_while_iterating_is_safe_and_forgets_both_keys() -> None:
    table = _ChildTable()
    children = [_child(f"o-{i}") for i in range(5)]
    for child in children:
        table.append(child)
    for child in table:  # a snapshot: removal during the walk is allowed
        if child.spec.id in ("o-1", "o-3"):
            table.remove(child)
    assert [c.spec.id for c in table] == ["o-0", "o-2", "o-4"]
    assert table.by_id("o-1") is None
    assert table.by_path("/sup/o-3") is None


def test_a_duplicate_id_or_a_missing_child_is_refused_like_a_list() -> None:
    table = _ChildTable()
    first = _child("a")
    table.append(first)
    with pytest.raises(ValueError, match="already"):
        table.append(_child("a"))
    with pytest.raises(ValueError, match="not in the table"):
        table.remove(_child("b"))
    with pytest.raises(ValueError, match="not in the table"):
        table.remove(_child("a"))  # same id, another object: not this table's child
    assert table.by_id("a") is first
