"""``freeze_startup_heap``: startup garbage is freed, survivors frozen, gen0 only ever raised."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from phalanx.runtime import freeze_startup_heap


@pytest.fixture(autouse=True)
def _restore_gc() -> Iterator[None]:
    """The collector as it was: the rest of the suite must not run frozen."""
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


class _Node:
    def __init__(self) -> None:
        self.other: _Node | None = None


def test_garbage_cycles_from_startup_are_collected_not_frozen() -> None:
    freed: list[str] = []
    a, b = _Node(), _Node()
    a.other, b.other = b, a  # a cycle only the collector can free
    weakref.finalize(a, freed.append, "a")
    del a, b
    tuning = freeze_startup_heap()
    assert freed == ["a"]
    assert tuning.collected >= 2
    # Frozen objects still die by refcount (the count only falls after the call).
    assert 0 < gc.get_freeze_count() <= tuning.frozen


def test_survivors_are_frozen_and_later_garbage_is_still_collected() -> None:
    kept = [_Node() for _ in range(100)]
    freeze_startup_heap()
    assert gc.get_freeze_count() > 0
    assert all(not any(o is n for o in gc.get_objects()) for n in kept[:3])  # frozen: not tracked
    freed: list[str] = []
    c, d = _Node(), _Node()
    c.other, d.other = d, c
    weakref.finalize(c, freed.append, "c")
    del c, d
    gc.collect()
    assert freed == ["c"]


def test_the_young_threshold_is_raised_never_lowered() -> None:
    gc.set_threshold(700, 10, 10)
    assert freeze_startup_heap(5_000).thresholds == (5_000, 10, 10)
    gc.set_threshold(50_000, 10, 10)
    assert freeze_startup_heap(5_000).thresholds == (50_000, 10, 10)


def test_a_threshold_below_one_is_refused_with_the_value_named() -> None:
    with pytest.raises(ValueError, match="gen0_threshold must be >= 1, got 0"):
        freeze_startup_heap(0)
