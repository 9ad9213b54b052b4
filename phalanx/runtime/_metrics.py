"""Prometheus metrics of one node, read from live state at scrape time (DESIGN 3, issue 6).

Each :class:`ActorSystem` gets its own ``CollectorRegistry`` (never the global
default one: several systems live in one test process). A custom collector
(:mod:`phalanx.runtime._metrics_collector`) walks the cells once per scrape;
the only pushed values are event counts (an event-stream listener) and
exchange call latencies (:func:`observe_exchange_call`, called from the
connection's tracer path). The exposition server lives in
:mod:`phalanx.runtime._metrics_server`.

``DeadLetterStore.stats()`` scans every record, so the pending-DLQ gauges are
cached for ``dlq_stats_ttl_s``; ``phalanx_dead_letters_total{reason}`` comes
from the post office's in-memory counts and is exact at every scrape.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Histogram, generate_latest

from phalanx.runtime._events import Event
from phalanx.runtime._metrics_collector import _RuntimeCollector

if TYPE_CHECKING:
    from phalanx.runtime._system import ActorSystem

__all__ = [
    "Sample",
    "SystemMetrics",
    "metrics_for",
    "observe_exchange_call",
    "render_metrics",
]

Sample = tuple[str, dict[str, str], float]
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class SystemMetrics:
    """The metrics of one system: its registry, event counts and exchange latencies."""

    def __init__(
        self,
        system: ActorSystem,
        *,
        top_n: int = 20,
        dlq_stats_ttl_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._system = weakref.proxy(system)
        self.top_n = top_n
        self.dlq_stats_ttl_s = dlq_stats_ttl_s
        self._clock = clock
        self._lock = threading.Lock()
        self._events: dict[str, int] = {}
        self._dlq_cache: tuple[float, dict[str, Any]] | None = None
        self.registry = CollectorRegistry(auto_describe=False)
        self.exchange_latency = Histogram(
            "phalanx_exchange_latency_seconds",
            "Latency of exchange calls, by exchange, ccxt endpoint and outcome.",
            ("exchange", "endpoint", "status"),
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.registry.register(_RuntimeCollector(self))
        system.events.add_listener(self._on_event)

    def _on_event(self, event: Event) -> None:
        with self._lock:
            self._events[event.kind] = self._events.get(event.kind, 0) + 1

    def event_counts(self) -> dict[str, int]:
        """Events seen since these metrics were created, by kind."""
        with self._lock:
            return dict(self._events)

    def observe_exchange_call(
        self, exchange: str, endpoint: str, latency_ms: float, status: str
    ) -> None:
        """Record one exchange call (``status``: ``ok`` or the error type name)."""
        self.exchange_latency.labels(exchange, endpoint, status).observe(latency_ms / 1000.0)

    def dlq_stats(self) -> dict[str, Any] | None:
        """``dead_letters.stats()``, cached for ``dlq_stats_ttl_s``; None if storage is closed."""
        now = self._clock()
        cached = self._dlq_cache
        if cached is not None and now - cached[0] < self.dlq_stats_ttl_s:
            return cached[1]
        try:
            stats: dict[str, Any] = self._system.dead_letters.stats()
        except Exception:  # storage closed (shutdown) or not started: no pending gauges
            return None
        self._dlq_cache = (now, stats)
        return stats

    def render(self) -> str:
        """The Prometheus text exposition of this node."""
        return generate_latest(self.registry).decode("utf-8")

    def samples(self) -> list[Sample]:
        """Every sample now, as ``(name, labels, value)`` (what alert rules read)."""
        return [
            (s.name, dict(s.labels), s.value) for m in self.registry.collect() for s in m.samples
        ]


_BY_SYSTEM: weakref.WeakKeyDictionary[ActorSystem, SystemMetrics] = weakref.WeakKeyDictionary()
_BY_SYSTEM_LOCK = threading.Lock()


def metrics_for(system: ActorSystem, **options: Any) -> SystemMetrics:
    """The system's :class:`SystemMetrics`, created on first use (``options`` apply then only)."""
    with _BY_SYSTEM_LOCK:
        metrics = _BY_SYSTEM.get(system)
        if metrics is None:
            metrics = _BY_SYSTEM[system] = SystemMetrics(system, **options)
        return metrics


def render_metrics(system: ActorSystem) -> str:
    """The Prometheus text exposition of ``system`` (the control ``metrics`` command)."""
    return metrics_for(system).render()


def observe_exchange_call(
    system: ActorSystem, exchange: str, endpoint: str, latency_ms: float, status: str
) -> None:
    """Record one exchange call in ``system``'s latency histogram (the tracer path calls it)."""
    metrics_for(system).observe_exchange_call(exchange, endpoint, latency_ms, status)
