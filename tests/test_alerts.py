"""The alert engine on a live system: cooldowns under a test clock, the default rules, sinks."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest

from phalanx import ActorSystem, Breaker, ChildSpec, Retry
from phalanx.actors._alerting import AlertEngine, start_alerting, start_observability
from phalanx.errors import ConfigError
from phalanx.runtime import Actor, Event
from phalanx.runtime._alert_config import AlertRule, MetricsConfig, default_alert_rules
from phalanx.runtime._config import load_config


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class ListSink:
    def __init__(self) -> None:
        self.alerts: list[dict[str, Any]] = []
        self.got = threading.Event()

    def send(self, alert: dict[str, Any]) -> None:
        self.alerts.append(alert)
        self.got.set()


class Echo(Actor):
    def on_receive(self, message: Any) -> Any:
        if message == "fail":
            raise ConnectionError("venue down")
        return message


def _defaults(*names: str) -> list[AlertRule]:
    return [r for r in default_alert_rules() if r.name in names]


def _engine(
    system: ActorSystem, rules: list[AlertRule], clock: Clock
) -> tuple[AlertEngine, ListSink]:
    sink = ListSink()
    return AlertEngine(system, rules, sinks=[sink], clock=clock), sink


def test_condition_true_continuously_fires_once_per_cooldown_window(system: ActorSystem) -> None:
    rule = AlertRule(name="restarted", metric="phalanx_restarts_total", threshold=1, cooldown_s=60)
    clock = Clock()
    engine = AlertEngine(system, [rule], clock=clock)  # default sink: the event stream
    fired = system.events.subscribe(kinds={"alert_fired"})
    try:
        system.spawn(Echo, "/echo")
        assert not engine.tick()
        system.kill("/echo")
        assert system.ask("/echo", "x") == "x"
        counts = []
        for _ in range(25):  # 125 s of ticks, every 5 s
            counts.append(len(engine.tick()))
            clock.now += 5
        assert counts == [1] + [0] * 11 + [1] + [0] * 11 + [1]  # at 0 s, 60 s and 120 s
        event = fired.get(timeout=1)
    finally:
        fired.close()
    assert event is not None
    assert event.fields["alert"] == "restarted"
    assert event.fields["severity"] == "warning"
    assert "phalanx_restarts_total" in event.fields["message"]
    system.logs.flush()  # health lines are written by a writer thread
    health = (system.var_dir / "logs" / "health.jsonl").read_text().splitlines()
    lines = [json.loads(line) for line in health if '"alert_fired"' in line]
    assert len(lines) == 3
    assert lines[0]["alert"] == "restarted"


def test_dlq_growth_fires_when_dead_letters_grow_past_the_threshold(system: ActorSystem) -> None:
    clock = Clock()
    engine, sink = _engine(system, _defaults("dlq_growth"), clock)
    engine.tick()  # the baseline
    for i in range(10):
        system.tell("/nowhere", i)
    clock.now += 10
    assert not engine.tick()  # 10 is not more than 10
    system.tell("/nowhere", "one more")
    clock.now += 10
    assert [a["alert"] for a in engine.tick()] == ["dlq_growth"]
    assert sink.alerts[0]["value"] == 11


def test_breaker_open_fires_after_30_s_open(system: ActorSystem) -> None:
    clock = Clock()
    engine, _sink = _engine(system, _defaults("breaker_open"), clock)
    events = system.events.subscribe(kinds={"breaker_state"})
    try:
        system.supervise("/s", intensity=1, period=5, children=[
            ChildSpec("venue", Echo, retry=Retry(max_attempts=1, base=0.0, jitter=0.0),
                      breaker=Breaker(reset_timeout=60.0))])  # fmt: skip
        system.tell("/s/venue", "fail")
        system.tell("/s/venue", "fail")
        assert events.wait_for(lambda e: e.fields["new"] == "open", timeout=5) is not None
    finally:
        events.close()
    assert not engine.tick()
    clock.now += 29
    assert not engine.tick()
    clock.now += 1
    (alert,) = engine.tick()
    assert alert["alert"] == "breaker_open"
    assert alert["severity"] == "critical"
    assert alert["labels"] == {"kind": "supervisor", "path": "/s/venue"}


def test_restart_storm_fires_on_the_tenth_restart_in_a_minute(system: ActorSystem) -> None:
    sink = ListSink()
    engine = start_alerting(system, _defaults("restart_storm"), sinks=[sink], tick_s=60)
    try:
        system.spawn(Echo, "/flaky")
        for i in range(10):
            assert not sink.alerts, f"fired after only {i} restarts"
            system.kill("/flaky")
            assert system.ask("/flaky", i) == i  # the restart has happened
        assert sink.got.wait(5)
    finally:
        engine.close()
    assert [a["alert"] for a in sink.alerts] == ["restart_storm"]
    assert sink.alerts[0]["value"] == 10


def _feed(engine: AlertEngine, kind: str, **fields: Any) -> list[str]:
    return [a["alert"] for a in engine.on_event(Event(kind, "/x", 0.0, fields))]


def test_reconciliation_drift_fires_on_not_ok_or_drift(system: ActorSystem) -> None:
    clock = Clock()
    engine, _ = _engine(system, _defaults("reconciliation_drift"), clock)
    assert _feed(engine, "reconciliation_result", ok=True, drift={}) == []
    assert _feed(engine, "reconciliation_result", ok=False) == ["reconciliation_drift"]
    clock.now += 301
    assert _feed(engine, "reconciliation_result", ok=True, drift={"BTC": "0.1"}) == [
        "reconciliation_drift"
    ]


def test_daily_drawdown_fires_on_a_risk_drawdown_event(system: ActorSystem) -> None:
    engine, _ = _engine(system, _defaults("daily_drawdown"), Clock())
    assert _feed(engine, "risk_limits_eval", allowed=False, failed=["max_exposure"]) == []
    assert _feed(engine, "risk_limits_eval", allowed=False, failed=["daily_drawdown"]) == [
        "daily_drawdown"
    ]


def test_rate_limited_fires_when_a_connection_is_banned(system: ActorSystem) -> None:
    engine, sink = _engine(system, _defaults("rate_limited"), Clock())
    assert _feed(engine, "connection_state", old="connected", new="degraded") == []
    assert _feed(engine, "connection_state", old="connected", new="banned") == ["rate_limited"]
    assert sink.alerts[0]["labels"] == {"path": "/x"}


def test_a_failing_sink_is_reported_and_the_others_still_get_the_alert(system: ActorSystem) -> None:
    class Broken:
        def send(self, alert: dict[str, Any]) -> None:
            raise OSError("pager unreachable")

    good = ListSink()
    rule = AlertRule(name="banned", event=["connection_state"])
    engine = AlertEngine(system, [rule], sinks=[Broken(), good], clock=Clock())
    failed = system.events.subscribe(kinds={"alert_sink_failed"})
    try:
        assert _feed(engine, "connection_state", new="banned") == ["banned"]
        event = failed.get(timeout=1)
    finally:
        failed.close()
    assert [a["alert"] for a in good.alerts] == ["banned"]
    assert event is not None
    assert "pager unreachable" in event.fields["error"]


def test_engine_and_server_end_with_the_node_without_close(tmp_path: Path) -> None:
    with ActorSystem(var_dir=tmp_path / "v", sync=False) as system:
        engine = start_alerting(system, tick_s=0.05)
        observability = start_observability(system, MetricsConfig(port=0, alert_tick_s=0.05))
        assert observability.server is not None
    assert engine.join(5)
    assert observability.alerts.join(5)
    assert observability.server.closed
    assert not [t for t in threading.enumerate() if t.name.startswith("phalanx-metrics")]


def test_alerts_from_config_and_bad_rules_name_the_field(tmp_path: Path) -> None:
    config = tmp_path / "node.toml"
    config.write_text(
        '[[alerts]]\nname = "banned"\nevent = "connection_state"\n'
        'where = [{field = "new", op = "eq", value = "banned"}]\nseverity = "critical"\n'
        "cooldown_s = 30\n"
    )
    (rule,) = load_config(config).alerts or []
    assert rule.event == ["connection_state"]
    assert rule.cooldown_s == 30
    config.write_text('[[alerts]]\nname = "x"\nmetric = "m"\nseverity = "loud"\n')
    with pytest.raises(ConfigError, match=r"alerts\.0\.severity"):
        load_config(config)
    config.write_text('[[alerts]]\nname = "x"\nevent = "alert_fired"\n')
    with pytest.raises(ConfigError, match="cannot watch alert_fired"):
        load_config(config)
    config.write_text("")
    assert load_config(config).alerts is None  # the engine then uses default_alert_rules()


def test_duplicate_rule_names_are_refused(system: ActorSystem) -> None:
    rule = AlertRule(name="same", event=["x"])
    with pytest.raises(ValueError, match="duplicate alert rule names"):
        AlertEngine(system, [rule, rule])
