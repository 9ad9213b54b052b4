"""Pure evaluation of alert rules: conditions, ``for_s`` holds, windows and cooldowns.

No I/O and no clock of its own: every call takes ``now`` (monotonic seconds),
so tests drive time by hand.

Invariants:
- a series (a rule's label set) fires at most once per ``cooldown_s``; while
  its condition stays true it fires again as soon as the cooldown has passed;
- ``for_s`` counts from the first evaluation that saw the condition true, and
  restarts when an evaluation sees it false (or the series is gone);
- an event rule is true while at least ``threshold`` matching events (by
  ``op``) arrived within the last ``window_s``; it is one series (one
  cooldown) whichever actor published the events.
"""

from __future__ import annotations

import operator
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from phalanx.runtime._alert_config import AlertRule, FieldTest

__all__ = ["Firing", "RuleEvaluator", "event_matches", "field_matches"]

SeriesKey = tuple[tuple[str, str], ...]
Sample = tuple[str, Mapping[str, str], float]

_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    ">": operator.gt, ">=": operator.ge, "<": operator.lt,
    "<=": operator.le, "==": operator.eq, "!=": operator.ne,
}  # fmt: skip
_FIELD_ORDER: dict[str, Callable[[Any, Any], bool]] = {
    "gt": operator.gt, "ge": operator.ge, "lt": operator.lt, "le": operator.le,
}  # fmt: skip


def field_matches(test: FieldTest, fields: Mapping[str, Any]) -> bool:
    """True if ``fields`` passes ``test``; a missing field passes only ``falsy`` and ``ne``."""
    present = test.field in fields
    value: Any = fields.get(test.field)
    expected: Any = test.value
    if test.op == "truthy":
        return bool(value)
    if test.op == "falsy":
        return not value
    if not present:
        return test.op == "ne"
    if test.op == "eq":
        return bool(value == expected)
    if test.op == "ne":
        return bool(value != expected)
    if test.op == "contains":
        try:
            return expected in value
        except TypeError:
            return False
    if test.op == "in":
        try:
            return value in expected
        except TypeError:
            return False
    try:
        return _FIELD_ORDER[test.op](float(value), float(expected))
    except (TypeError, ValueError):
        return False


def event_matches(rule: AlertRule, kind: str, fields: Mapping[str, Any]) -> bool:
    """True if an event of ``kind`` with ``fields`` counts toward ``rule``."""
    if rule.event is None or kind not in rule.event:
        return False
    if not rule.where:
        return True
    results = (field_matches(test, fields) for test in rule.where)
    return any(results) if rule.where_mode == "any" else all(results)


@dataclass(frozen=True, slots=True)
class Firing:
    """One alert to send: the rule, the series labels, the observed value."""

    rule: AlertRule
    labels: dict[str, str]
    value: float
    message: str

    def as_alert(self) -> dict[str, Any]:
        """The alert dict given to sinks (and the ``alert_fired`` event's fields)."""
        rule = self.rule
        return {
            "alert": rule.name,
            "severity": rule.severity,
            "value": self.value,
            "threshold": rule.threshold,
            "labels": dict(self.labels),
            "message": self.message,
            "description": rule.description,
            "condition": "metric" if rule.metric is not None else "event",
        }


@dataclass(slots=True)
class _Series:
    since: float | None = None
    last_fired: float | None = None
    history: deque[tuple[float, float]] = field(default_factory=deque)


def _matching(rule: AlertRule, samples: Iterable[Sample]) -> dict[SeriesKey, float]:
    names = {rule.metric, f"{rule.metric}_total"}
    series: dict[SeriesKey, float] = {}
    for name, labels, value in samples:
        if name in names and all(labels.get(k) == v for k, v in rule.labels.items()):
            series[tuple(sorted(labels.items()))] = value
    values = list(series.values())
    if rule.aggregate == "sum":  # no series sums to 0: a counter with no labels seen yet
        return {(): float(sum(values))}
    if rule.aggregate is None or not series:
        return series
    return {(): float(max(values) if rule.aggregate == "max" else min(values))}


class RuleEvaluator:
    """The state of one rule: per-series holds, counter history, event times, cooldowns."""

    def __init__(self, rule: AlertRule) -> None:
        self.rule = rule
        self._series: dict[SeriesKey, _Series] = {}
        self._events: deque[float] = deque()

    # --- event rules -----------------------------------------------------------

    def observe_event(self, kind: str, fields: Mapping[str, Any], now: float) -> list[Firing]:
        """Count a matching event, then evaluate the rule (event rules only)."""
        if not event_matches(self.rule, kind, fields):
            return []
        self._events.append(now)
        return self._evaluate_events(now)

    def _evaluate_events(self, now: float) -> list[Firing]:
        rule = self.rule
        while self._events and self._events[0] <= now - rule.window_s:
            self._events.popleft()
        count = len(self._events)
        kinds = "/".join(rule.event or ())
        message = f"{rule.name}: {count} {kinds} event(s) within {rule.window_s:g}s"
        return self._decide(
            (), {}, float(count), _COMPARE[rule.op](count, rule.threshold), now, message
        )

    # --- metric rules ----------------------------------------------------------

    def evaluate(self, samples: Iterable[Sample] | None, now: float) -> list[Firing]:
        """Evaluate on a tick: metric rules read ``samples``; event rules re-check their window."""
        if self.rule.event is not None:
            return self._evaluate_events(now)
        if samples is None:
            return []
        rule = self.rule
        current = _matching(rule, samples)
        for gone in set(self._series) - set(current):
            state = self._series[gone]
            state.since = None
            state.history.clear()
        firings: list[Firing] = []
        for key, value in current.items():
            observed = self._observed(key, value, now)
            if observed is None:
                continue
            true = _COMPARE[rule.op](observed, rule.threshold)
            what = f"increase over {rule.window_s:g}s" if rule.mode == "increase" else "value"
            labels = ",".join(f"{k}={v}" for k, v in key)
            message = (
                f"{rule.name}: {rule.metric}{{{labels}}} {what} {observed:g} "
                f"{rule.op} {rule.threshold:g}" + (f" for {rule.for_s:g}s" if rule.for_s else "")
            )
            firings.extend(self._decide(key, dict(key), observed, true, now, message))
        return firings

    def _observed(self, key: SeriesKey, value: float, now: float) -> float | None:
        if self.rule.mode == "value":
            return value
        history = self._series.setdefault(key, _Series()).history
        while history and history[0][0] < now - self.rule.window_s:
            history.popleft()
        history.append((now, value))
        if len(history) < 2:
            return None  # no baseline yet within the window
        base = history[0][1]
        return value - base if value >= base else value  # a counter reset restarts from 0

    # --- holds and cooldowns ---------------------------------------------------

    def _decide(
        self,
        key: SeriesKey,
        labels: dict[str, str],
        value: float,
        true: bool,
        now: float,
        message: str,
    ) -> list[Firing]:
        state = self._series.setdefault(key, _Series())
        if not true:
            state.since = None
            return []
        if state.since is None:
            state.since = now
        if now - state.since < self.rule.for_s:
            return []
        if state.last_fired is not None and now - state.last_fired < self.rule.cooldown_s:
            return []
        state.last_fired = now
        return [Firing(self.rule, labels, value, message)]
