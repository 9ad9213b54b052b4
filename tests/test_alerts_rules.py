"""Pure alert-rule evaluation: field tests, holds, increases, windows and cooldowns."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from phalanx.actors._alert_rules import RuleEvaluator, event_matches, field_matches
from phalanx.runtime._alert_config import AlertRule, FieldTest


def _rule(**kw: Any) -> AlertRule:
    return AlertRule.model_validate({"name": "r", **kw})


@pytest.mark.parametrize(
    ("op", "value", "fields", "expected"),
    [
        ("eq", "banned", {"f": "banned"}, True),
        ("eq", "banned", {"f": "connected"}, False),
        ("eq", "banned", {}, False),
        ("ne", "banned", {}, True),
        ("truthy", None, {"f": {"BTC": 1}}, True),
        ("truthy", None, {"f": {}}, False),
        ("falsy", None, {}, True),
        ("gt", 5, {"f": "7.5"}, True),
        ("le", 5, {"f": 7}, False),
        ("gt", 5, {"f": "not a number"}, False),
        ("contains", "daily_drawdown", {"f": ["max_exposure", "daily_drawdown"]}, True),
        ("contains", "x", {"f": 3}, False),
        ("in", [418, 429], {"f": 429}, True),
    ],
)
def test_field_test_ops(op: str, value: Any, fields: dict[str, Any], expected: bool) -> None:
    assert field_matches(FieldTest(field="f", op=op, value=value), fields) is expected  # type: ignore[arg-type]


def test_event_match_needs_the_kind_and_all_or_any_tests() -> None:
    both = [{"field": "a", "value": 1}, {"field": "b", "value": 2}]
    all_rule = _rule(event="k", where=both)
    any_rule = _rule(event="k", where=both, where_mode="any")
    assert event_matches(all_rule, "k", {"a": 1, "b": 2})
    assert not event_matches(all_rule, "k", {"a": 1})
    assert event_matches(any_rule, "k", {"a": 1})
    assert not event_matches(any_rule, "other", {"a": 1, "b": 2})


def test_a_rule_needs_exactly_one_condition_and_cannot_watch_alert_fired() -> None:
    with pytest.raises(ValueError, match="exactly one of metric or event"):
        _rule()
    with pytest.raises(ValueError, match="exactly one of metric or event"):
        _rule(metric="m", event="k")
    with pytest.raises(ValueError, match="cannot watch alert_fired"):
        _rule(event=["alert_fired"])


def test_condition_held_continuously_fires_once_per_cooldown() -> None:
    ev = RuleEvaluator(_rule(metric="m", threshold=1, cooldown_s=10))
    fired_at = [t for t in range(0, 35) if ev.evaluate([("m", {}, 5.0)], float(t))]
    assert fired_at == [0, 10, 20, 30]


def test_for_s_restarts_when_the_condition_goes_false() -> None:
    ev = RuleEvaluator(_rule(metric="m", op="==", threshold=2, for_s=30, cooldown_s=0))
    assert not ev.evaluate([("m", {}, 2.0)], 0.0)
    assert not ev.evaluate([("m", {}, 2.0)], 29.0)
    assert not ev.evaluate([("m", {}, 0.0)], 29.5)  # closed: the hold restarts
    assert not ev.evaluate([("m", {}, 2.0)], 30.0)
    assert not ev.evaluate([("m", {}, 2.0)], 59.0)
    assert ev.evaluate([("m", {}, 2.0)], 60.0)


def test_series_are_held_and_cooled_down_independently() -> None:
    ev = RuleEvaluator(_rule(metric="m", threshold=1, cooldown_s=100))
    a, b = ("m", {"path": "/a"}, 1.0), ("m", {"path": "/b"}, 1.0)
    first = ev.evaluate([a], 0.0)
    assert [f.labels for f in first] == [{"path": "/a"}]
    second = ev.evaluate([a, b], 1.0)
    assert [f.labels for f in second] == [{"path": "/b"}]


def test_increase_mode_compares_growth_within_the_window_and_survives_a_reset() -> None:
    ev = RuleEvaluator(
        _rule(metric="dl", aggregate="sum", mode="increase", op=">", threshold=10, window_s=60)
    )
    assert not ev.evaluate([("dl_total", {"reason": "x"}, 100.0)], 0.0)  # baseline only
    assert not ev.evaluate([("dl_total", {"reason": "x"}, 105.0)], 30.0)
    fired = ev.evaluate(
        [("dl_total", {"reason": "x"}, 106.0), ("dl_total", {"reason": "y"}, 5.0)], 50.0
    )
    assert [f.value for f in fired] == [11.0]
    ev2 = RuleEvaluator(_rule(metric="c", mode="increase", op=">", threshold=3, cooldown_s=0))
    ev2.evaluate([("c", {}, 50.0)], 0.0)
    assert ev2.evaluate([("c", {}, 4.0)], 1.0)  # a counter reset counts from zero


def test_event_rule_counts_events_within_the_window() -> None:
    ev = RuleEvaluator(_rule(event="actor_restarted", threshold=3, window_s=10, cooldown_s=0))
    assert not ev.observe_event("actor_restarted", {}, 0.0)
    assert not ev.observe_event("actor_restarted", {}, 1.0)
    assert not ev.observe_event("actor_crashed", {}, 2.0)
    assert ev.observe_event("actor_restarted", {}, 3.0)
    assert not ev.observe_event("actor_restarted", {}, 12.0)  # the first two left the window
    assert not ev.evaluate(None, 30.0)


@given(
    gaps=st.lists(st.floats(min_value=0.01, max_value=50.0), min_size=1, max_size=60),
    cooldown=st.floats(min_value=0.0, max_value=100.0),
)
def test_always_true_fires_exactly_when_cooldown_has_passed(
    gaps: list[float], cooldown: float
) -> None:
    ev = RuleEvaluator(_rule(metric="m", threshold=0, cooldown_s=cooldown))
    now, last, expected, got = 0.0, None, [], []
    for gap in gaps:
        now += gap
        if last is None or now - last >= cooldown:
            expected.append(now)
            last = now
        if ev.evaluate([("m", {}, 1.0)], now):
            got.append(now)
    assert got == expected
