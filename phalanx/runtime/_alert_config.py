"""Config models of the ``[metrics]`` section and the ``[[alerts]]`` rules (issue 6).

An alert rule has one condition, either on a metric sample of the node's own
registry (``metric = "phalanx_breaker_state"``) or on an event kind of the
event stream (``event = "connection_state"``), a severity and a cooldown::

    [[alerts]]
    name = "breaker_open"
    metric = "phalanx_breaker_state"
    op = "=="
    threshold = 2
    for_s = 30          # held that long, per series (here: per breaker)
    severity = "critical"
    cooldown_s = 300

    [[alerts]]
    name = "rate_limited"
    event = ["connection_state"]
    where = [{field = "new", op = "eq", value = "banned"}]
    threshold = 1       # matching events within window_s
    window_s = 60

Invariant: a rule never conditions on ``alert_fired`` (the engine's own output),
so no rule can feed itself.
"""

from __future__ import annotations

import ipaddress
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = [
    "AlertRule",
    "FieldTest",
    "MetricsConfig",
    "check_loopback",
    "default_alert_rules",
]

Severity = Literal["info", "warning", "critical"]
CompareOp = Literal[">", ">=", "<", "<=", "==", "!="]
FieldOp = Literal["eq", "ne", "gt", "ge", "lt", "le", "truthy", "falsy", "contains", "in"]


def check_loopback(host: str) -> str:
    """``host`` if it is a loopback address (``localhost`` means 127.0.0.1); else ValueError."""
    if host == "localhost":
        return "127.0.0.1"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"metrics host must be a loopback IP address, got {host!r}") from None
    if not address.is_loopback:
        raise ValueError(f"metrics host must be loopback (127.0.0.0/8 or ::1), got {host!r}")
    return host


class MetricsConfig(BaseModel):
    """The Prometheus exposition: loopback only; ``port = 0`` picks a free port."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(0, ge=0, le=65535)
    # Per-path series (mailbox depth, restarts) are kept to the top N actors;
    # every actor is still in the aggregate series.
    top_n: int = Field(20, ge=0, le=1000)
    dlq_stats_ttl_s: float = Field(5.0, ge=0)  # DeadLetterStore.stats() scans every record
    alert_tick_s: float = Field(5.0, gt=0)
    log_prune_interval_s: float = Field(3600.0, gt=0)

    @field_validator("host")
    @classmethod
    def _loopback(cls, value: str) -> str:
        return check_loopback(value)


class FieldTest(BaseModel):
    """One test on an event field; ``truthy``/``falsy`` ignore ``value``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    field: str
    op: FieldOp = "eq"
    value: Any = None


class AlertRule(BaseModel):
    """One ``[[alerts]]`` rule: a metric or event condition, a severity and a cooldown."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1)
    severity: Severity = "warning"
    cooldown_s: float = Field(300.0, ge=0)
    description: str = ""
    # metric condition: per series matching `labels`, or one series with `aggregate`
    metric: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    aggregate: Literal["sum", "max", "min"] | None = None
    mode: Literal["value", "increase"] = "value"  # increase: growth over window_s
    op: CompareOp = ">="
    threshold: float = 1.0
    for_s: float = Field(0.0, ge=0)  # the condition must hold this long
    window_s: float = Field(60.0, gt=0)
    # event condition: at least `threshold` matching events within `window_s`
    event: list[str] | None = None
    where: list[FieldTest] = Field(default_factory=list)
    where_mode: Literal["all", "any"] = "all"

    @field_validator("event", mode="before")
    @classmethod
    def _event_list(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @model_validator(mode="after")
    def _one_condition(self) -> AlertRule:
        if (self.metric is None) == (self.event is None):
            raise ValueError(f"alert {self.name!r}: give exactly one of metric or event")
        if self.event is not None:
            if not self.event:
                raise ValueError(f"alert {self.name!r}: event needs at least one kind")
            if "alert_fired" in self.event:
                raise ValueError(f"alert {self.name!r}: a rule cannot watch alert_fired")
        return self


def default_alert_rules() -> list[AlertRule]:
    """The rules used when the config has no ``[[alerts]]``: the six issue-6 defaults."""
    data: list[dict[str, Any]] = [
        {
            "name": "dlq_growth",
            "description": "more than 10 new dead letters within 60 s",
            "metric": "phalanx_dead_letters_total",
            "aggregate": "sum",
            "mode": "increase",
            "op": ">",
            "threshold": 10,
            "window_s": 60,
        },
        {
            "name": "breaker_open",
            "description": "a circuit breaker open for 30 s or more",
            "metric": "phalanx_breaker_state",
            "op": "==",
            "threshold": 2,
            "for_s": 30,
            "severity": "critical",
        },
        {
            "name": "restart_storm",
            "description": "10 or more restarts within 60 s",
            "event": ["actor_restarted"],
            "threshold": 10,
            "window_s": 60,
            "severity": "critical",
        },
        {
            "name": "reconciliation_drift",
            "description": "reconciliation found differences with the venue",
            "event": ["reconciliation_result"],
            "where": [
                {"field": "ok", "op": "eq", "value": False},
                {"field": "drift", "op": "truthy"},
            ],
            "where_mode": "any",
            "severity": "critical",
        },
        {
            "name": "daily_drawdown",
            "description": "the risk daily drawdown limit was hit",
            "event": ["risk_limits_eval", "risk_blocked", "risk_halted"],
            "where": [
                {"field": "limit", "op": "eq", "value": "daily_drawdown"},
                {"field": "failed", "op": "contains", "value": "daily_drawdown"},
                {"field": "violations", "op": "contains", "value": "daily_drawdown"},
            ],
            "where_mode": "any",
            "severity": "critical",
        },
        {
            "name": "rate_limited",
            "description": "an exchange connection was banned or rate limited (418/429)",
            "event": ["connection_state"],  # the connection goes `banned` on a 418/429
            "where": [{"field": "new", "op": "eq", "value": "banned"}],
            "severity": "warning",
        },
    ]
    return [AlertRule.model_validate(d) for d in data]
