"""The alert engine: rules from ``[[alerts]]`` evaluated on a timer and on events.

A firing goes to every sink; the default sink publishes an ``alert_fired``
event on ``system.events``, which the system writes to the health log. A sink
that raises does not stop the others: the failure is published as
``alert_sink_failed``.

The engine runs on one thread (``phalanx-alerts:<node>``) fed by an event
subscription; it stops by itself when the node publishes ``node_stopped``, and
:meth:`AlertEngine.close` joins it. :meth:`tick` and :meth:`on_event` are also
callable directly (tests drive them under an injected clock without a thread).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from phalanx.actors._alert_rules import Firing, RuleEvaluator
from phalanx.runtime._alert_config import AlertRule, MetricsConfig, default_alert_rules
from phalanx.runtime._events import Event, Subscription
from phalanx.runtime._log_retention import schedule_log_retention
from phalanx.runtime._metrics import SystemMetrics, metrics_for
from phalanx.runtime._metrics_server import MetricsServer, start_metrics_server
from phalanx.runtime._timers import Timer

if TYPE_CHECKING:
    from phalanx.runtime._system import ActorSystem

__all__ = [
    "AlertEngine",
    "AlertSink",
    "EventStreamSink",
    "Observability",
    "start_alerting",
    "start_observability",
]


class AlertSink(Protocol):
    """Where alerts go: ``send`` gets the alert dict (``alert``, ``severity``, ``message``...)."""

    def send(self, alert: dict[str, Any]) -> None:
        """Deliver one alert; may raise (the engine reports it and carries on)."""


class EventStreamSink:
    """The default sink: an ``alert_fired`` event (and so a health log line)."""

    def __init__(self, system: ActorSystem) -> None:
        self._system = system

    def send(self, alert: dict[str, Any]) -> None:
        """Publish ``alert`` as an ``alert_fired`` event; its ``path`` label becomes the path."""
        self._system.events.publish("alert_fired", alert.get("labels", {}).get("path"), **alert)


class AlertEngine:
    """Evaluates alert rules against one system's metrics and events."""

    def __init__(
        self,
        system: ActorSystem,
        rules: Sequence[AlertRule] | None = None,
        *,
        sinks: Sequence[AlertSink] | None = None,
        clock: Callable[[], float] = time.monotonic,
        tick_s: float = 5.0,
        metrics: SystemMetrics | None = None,
        history: int = 100,
    ) -> None:
        self._system = system
        self.rules = list(default_alert_rules() if rules is None else rules)
        names = [r.name for r in self.rules]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"duplicate alert rule names {dupes}")
        self.sinks: list[AlertSink] = (
            list(sinks) if sinks is not None else [EventStreamSink(system)]
        )
        self._clock = clock
        self.tick_s = tick_s
        self._evaluators = [RuleEvaluator(rule) for rule in self.rules]
        self._has_metric_rules = any(r.metric is not None for r in self.rules)
        self._metrics = metrics
        self._kinds = frozenset(k for r in self.rules for k in (r.event or ()))
        self._lock = threading.Lock()
        self.fired: deque[dict[str, Any]] = deque(maxlen=history)
        self._thread: threading.Thread | None = None
        self._sub: Subscription | None = None
        self._stopping = threading.Event()

    # --- evaluation --------------------------------------------------------------

    def tick(self) -> list[dict[str, Any]]:
        """Evaluate every rule now; returns the alerts sent."""
        samples = None
        if self._has_metric_rules:
            metrics = self._metrics or metrics_for(self._system)
            try:
                samples = metrics.samples()
            except Exception as exc:  # a scrape racing shutdown; event rules still run
                self._system.events.publish("alert_eval_failed", None, error=repr(exc))
        with self._lock:
            now = self._clock()
            firings = [f for ev in self._evaluators for f in ev.evaluate(samples, now)]
        return self._send(firings)

    def on_event(self, event: Event) -> list[dict[str, Any]]:
        """Feed one event to the event rules; returns the alerts sent."""
        if event.kind not in self._kinds:
            return []
        with self._lock:
            now = self._clock()
            firings = [
                f
                for ev in self._evaluators
                for f in ev.observe_event(event.kind, event.fields, now)
            ]
        if event.path is not None:
            firings = [
                Firing(
                    f.rule,
                    {**f.labels, "path": f.labels.get("path", event.path)},
                    f.value,
                    f.message,
                )
                for f in firings
            ]
        return self._send(firings)

    def _send(self, firings: Iterable[Firing]) -> list[dict[str, Any]]:
        sent = []
        for firing in firings:
            alert = {**firing.as_alert(), "at": time.time()}
            self.fired.append(alert)
            sent.append(alert)
            for sink in self.sinks:
                try:
                    sink.send(alert)
                except Exception as exc:
                    self._system.events.publish(
                        "alert_sink_failed", None, alert=alert["alert"],
                        sink=type(sink).__name__, error=repr(exc),
                    )  # fmt: skip
        return sent

    # --- thread ------------------------------------------------------------------

    def start(self) -> AlertEngine:
        """Subscribe to the event stream and start evaluating on a thread."""
        if self._thread is not None:
            return self
        self._sub = self._system.events.subscribe(self._kinds | {"node_stopped"})
        self._thread = threading.Thread(
            target=self._run, name=f"phalanx-alerts:{self._system.name}"
        )
        self._thread.start()
        return self

    def _run(self) -> None:
        assert self._sub is not None
        next_tick = time.monotonic() + self.tick_s
        while not self._stopping.is_set():
            event = self._sub.get(timeout=max(0.0, next_tick - time.monotonic()))
            if event is not None:
                if event.kind == "node_stopped":
                    break
                self.on_event(event)
            if time.monotonic() >= next_tick and not self._stopping.is_set():
                self.tick()
                next_tick = time.monotonic() + self.tick_s
        self._sub.close()

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the thread to end (at ``node_stopped`` or :meth:`close`); True if it has."""
        if self._thread is None:
            return True
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def close(self, timeout: float = 5.0) -> None:
        """Stop evaluating and join the thread. Idempotent."""
        self._stopping.set()
        if self._sub is not None:
            self._sub.close()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)


def start_alerting(
    system: ActorSystem,
    rules: Sequence[AlertRule] | None = None,
    *,
    sinks: Sequence[AlertSink] | None = None,
    tick_s: float = 5.0,
) -> AlertEngine:
    """Start an :class:`AlertEngine` on ``system`` (``rules`` None: the defaults)."""
    return AlertEngine(system, rules, sinks=sinks, tick_s=tick_s).start()


class Observability:
    """What :func:`start_observability` started: metrics server, alert engine, prune timer."""

    def __init__(self, server: MetricsServer | None, alerts: AlertEngine, retention: Timer) -> None:
        self.server = server
        self.alerts = alerts
        self.retention = retention

    def close(self) -> None:
        """Stop all three (the node's shutdown also stops them). Idempotent."""
        self.retention.cancel()
        self.alerts.close()
        if self.server is not None:
            self.server.close()


def start_observability(
    system: ActorSystem,
    config: MetricsConfig | None = None,
    rules: Sequence[AlertRule] | None = None,
    *,
    sinks: Sequence[AlertSink] | None = None,
) -> Observability:
    """The node's operator surface from config: metrics (server if enabled), alerts, log pruning.

    Call it right after ``system.start()``, so event counts cover the whole run.
    """
    config = config or MetricsConfig()
    metrics_for(system, top_n=config.top_n, dlq_stats_ttl_s=config.dlq_stats_ttl_s)
    server = start_metrics_server(system, config.host, config.port) if config.enabled else None
    try:
        alerts = start_alerting(system, rules, sinks=sinks, tick_s=config.alert_tick_s)
        retention = schedule_log_retention(system, config.log_prune_interval_s)
    except BaseException:
        if server is not None:
            server.close()
        raise
    return Observability(server, alerts, retention)
