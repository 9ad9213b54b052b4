"""Prometheus metrics of one node, read from live state at scrape time (DESIGN 3, issue 6).

Each :class:`ActorSystem` gets its own ``CollectorRegistry`` (never the global
default one: several systems live in one test process). A custom collector
walks the cells once per scrape; the only pushed values are event counts (an
event-stream listener) and exchange call latencies
(:func:`observe_exchange_call`, called from the connection's tracer path).

Cardinality: per-path series are bounded. ``phalanx_mailbox_depth{path}`` and
``phalanx_actor_restarts_total{path}`` cover the ``top_n`` actors by that value
(non-zero ones only); every actor still counts in the node-wide series
(``phalanx_mailbox_depth_sum``/``_max``, ``phalanx_restarts_total``,
``phalanx_actors{status}``). Breakers are few (one per child spec with a
breaker, one per exchange connection), so each gets its own series.

``DeadLetterStore.stats()`` scans every record, so the pending-DLQ gauges are
cached for ``dlq_stats_ttl_s``; ``phalanx_dead_letters_total{reason}`` comes
from the post office's in-memory counts and is exact at every scrape.
"""

from __future__ import annotations

import heapq
import socket
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, Histogram, generate_latest, make_wsgi_app
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from phalanx.errors import ConfigError
from phalanx.runtime._alert_config import check_loopback
from phalanx.runtime._events import Event

if TYPE_CHECKING:
    from phalanx.runtime._system import ActorSystem

__all__ = [
    "BREAKER_STATE_VALUES",
    "MetricsServer",
    "Sample",
    "SystemMetrics",
    "metrics_for",
    "observe_exchange_call",
    "render_metrics",
    "start_metrics_server",
]

BREAKER_STATE_VALUES: dict[str, int] = {"closed": 0, "half_open": 1, "open": 2}
Sample = tuple[str, dict[str, str], float]
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_INTROSPECTED_KINDS = frozenset({"ExchangeConnection"})  # cheap introspect(), few of them


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


class _RuntimeCollector(Collector):
    """Reads the live system on each scrape: one pass over the cells."""

    def __init__(self, metrics: SystemMetrics) -> None:
        self._m = metrics

    def collect(self) -> Iterator[Metric]:
        m = self._m
        system = m._system
        yield from self._messages(system)
        yield from self._cells(system)
        yield from self._dead_letters(system)
        yield from self._events(m.event_counts())

    def _messages(self, system: Any) -> Iterator[Metric]:
        counters = system.counters()
        for key in ("sent", "handled", "dead_lettered"):
            yield CounterMetricFamily(
                f"phalanx_messages_{key}", f"Messages {key.replace('_', ' ')}.", counters[key]
            )
        yield GaugeMetricFamily(
            "phalanx_messages_queued", "Messages in mailboxes.", counters["queued"]
        )
        yield GaugeMetricFamily(
            "phalanx_messages_journaled",
            "Durable messages left for the next boot.",
            counters["journaled"],
        )
        yield CounterMetricFamily(
            "phalanx_restarts", "Restarts on this node, all actors.", system.totals()["restarts"]
        )

    def _cells(self, system: Any) -> Iterator[Metric]:
        with system._lock:
            cells = list(system._cells.values())
        statuses: dict[str, int] = {}
        depths: list[tuple[int, str]] = []
        restarts: list[tuple[int, str]] = []
        breakers = GaugeMetricFamily(
            "phalanx_breaker_state",
            "Circuit breaker state: 0 closed, 1 half_open, 2 open.",
            labels=("path", "kind"),
        )
        headroom = GaugeMetricFamily(
            "phalanx_rate_limit_headroom",
            "Rate-limit tokens available now (negative while in debt).",
            labels=("path",),
        )
        depth_sum = depth_max = 0
        for cell in cells:
            statuses[cell.status] = statuses.get(cell.status, 0) + 1
            depth = len(cell.inbox)
            depth_sum += depth
            depth_max = max(depth_max, depth)
            if depth:
                depths.append((depth, cell.path))
            if cell.restarts:
                restarts.append((cell.restarts, cell.path))
            if cell.breaker_state is not None:
                value = BREAKER_STATE_VALUES.get(cell.breaker_state, 2)
                breakers.add_metric([cell.path, "supervisor"], value)
            if cell.kind in _INTROSPECTED_KINDS and cell.actor is not None:
                self._introspected(cell, breakers, headroom)
        actors = GaugeMetricFamily("phalanx_actors", "Actors by status.", labels=("status",))
        for status, count in sorted(statuses.items()):
            actors.add_metric([status], count)
        yield actors
        yield GaugeMetricFamily(
            "phalanx_mailbox_depth_sum", "Messages queued, all actors.", depth_sum
        )
        yield GaugeMetricFamily("phalanx_mailbox_depth_max", "The deepest mailbox.", depth_max)
        top = GaugeMetricFamily(
            "phalanx_mailbox_depth",
            f"Mailbox depth of the {self._m.top_n} deepest non-empty mailboxes.",
            labels=("path",),
        )
        for depth, path in heapq.nlargest(self._m.top_n, depths):
            top.add_metric([path], depth)
        yield top
        per_actor = CounterMetricFamily(
            "phalanx_actor_restarts",
            f"Restarts of the {self._m.top_n} most restarted live actors.",
            labels=("path",),
        )
        for count, path in heapq.nlargest(self._m.top_n, restarts):
            per_actor.add_metric([path], count)
        yield per_actor
        yield breakers
        yield headroom

    @staticmethod
    def _introspected(cell: Any, breakers: GaugeMetricFamily, headroom: GaugeMetricFamily) -> None:
        try:
            view = cell.actor.introspect()
        except Exception:  # an incarnation ending under us: skip it this scrape
            return
        if isinstance(view.get("rate_limit_headroom"), int | float):
            headroom.add_metric([cell.path], float(view["rate_limit_headroom"]))
        breaker = view.get("breaker")
        if isinstance(breaker, dict) and breaker.get("state") in BREAKER_STATE_VALUES:
            breakers.add_metric([cell.path, "call"], BREAKER_STATE_VALUES[breaker["state"]])

    def _dead_letters(self, system: Any) -> Iterator[Metric]:
        by_reason = CounterMetricFamily(
            "phalanx_dead_letters", "Dead letters on this node, by reason.", labels=("reason",)
        )
        for reason, count in sorted(system.post.counts()[2].items()):
            by_reason.add_metric([reason], count)
        yield by_reason
        stats = self._m.dlq_stats()
        if stats is None:
            return
        yield GaugeMetricFamily(
            "phalanx_dead_letters_pending", "Pending records in the DLQ store.", stats["depth"]
        )
        pending = GaugeMetricFamily(
            "phalanx_dead_letters_pending_by_reason",
            "Pending DLQ records by reason.",
            labels=("reason",),
        )
        for reason, count in sorted(stats["by_reason"].items()):
            pending.add_metric([reason], count)
        yield pending
        if stats["oldest_age_s"] is not None:
            yield GaugeMetricFamily(
                "phalanx_dead_letters_oldest_age_seconds", "Age of the oldest pending record.",
                stats["oldest_age_s"],
            )  # fmt: skip

    @staticmethod
    def _events(counts: dict[str, int]) -> Iterator[Metric]:
        events = CounterMetricFamily(
            "phalanx_events", "Events published, by kind.", labels=("kind",)
        )
        orders = CounterMetricFamily(
            "phalanx_order_events", "Order lifecycle events, by kind.", labels=("kind",)
        )
        sagas = CounterMetricFamily(
            "phalanx_saga_events", "Saga outcomes and steps, by kind.", labels=("kind",)
        )
        for kind, count in sorted(counts.items()):
            events.add_metric([kind], count)
            if kind.startswith("order_"):
                orders.add_metric([kind], count)
            elif kind.startswith("saga_"):
                sagas.add_metric([kind], count)
        yield events
        yield orders
        yield sagas


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


class _QuietHandler(WSGIRequestHandler):
    timeout = 5.0  # a stalled scraper cannot hold the single serving thread for long

    def log_message(self, format: str, *args: Any) -> None:
        """Scrapes are not logged."""


class _Server4(WSGIServer):
    address_family = socket.AF_INET


class _Server6(WSGIServer):
    address_family = socket.AF_INET6


class MetricsServer:
    """A running exposition server (``.host``, ``.port``, ``.url``); :meth:`close` joins it."""

    def __init__(self, system: ActorSystem, metrics: SystemMetrics, host: str, port: int) -> None:
        server_class = _Server6 if ":" in host else _Server4
        try:
            self._server = make_server(
                host, port, make_wsgi_app(metrics.registry),
                server_class=server_class, handler_class=_QuietHandler,
            )  # fmt: skip
        except OSError as exc:
            raise ConfigError(
                f"cannot serve metrics on {host}:{port}: {exc.strerror or exc}"
            ) from exc
        self.host = host
        self.port: int = self._server.server_address[1]
        self.url = f"http://{'[' + host + ']' if ':' in host else host}:{self.port}/metrics"
        self._closed = False
        self._close_lock = threading.Lock()
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.1},
            name=f"phalanx-metrics:{system.name}:{self.port}",
        )
        self._thread.start()

    def close(self) -> None:
        """Stop serving and join the thread. Idempotent."""
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5.0)

    @property
    def closed(self) -> bool:
        """True once :meth:`close` ran."""
        return self._closed


def start_metrics_server(
    system: ActorSystem, host: str = "127.0.0.1", port: int = 0
) -> MetricsServer:
    """Serve ``system``'s metrics on a loopback ``host:port`` (0: a free port).

    Raises :class:`ConfigError` for a non-loopback host or a port in use. The
    server closes itself when the node stops (``node_stopped``); closing it
    earlier is the caller's job.
    """
    try:
        host = check_loopback(host)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    if not 0 <= port <= 65535:
        raise ConfigError(f"metrics port must be 0..65535, got {port}")
    server = MetricsServer(system, metrics_for(system), host, port)

    def close_at_stop(event: Event) -> None:
        if event.kind == "node_stopped":
            server.close()

    system.events.add_listener(close_at_stop)
    return server
