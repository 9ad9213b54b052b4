"""The scrape-time collector of a node's metrics: one pass over the live cells.

Nothing here is pushed: every value is read from the system when the registry
is collected (messages, actors, mailboxes, restarts, breakers, rate-limit
headroom, dead letters, event counts).

Cardinality: per-path series are bounded. ``phalanx_mailbox_depth{path}`` and
``phalanx_actor_restarts_total{path}`` cover the ``top_n`` actors by that value
(non-zero ones only); every actor still counts in the node-wide series
(``phalanx_mailbox_depth_sum``/``_max``, ``phalanx_restarts_total``,
``phalanx_actors{status}``). Breakers are few (one per child spec with a
breaker, one per exchange connection), so each gets its own series.

The pending-DLQ gauges come from :meth:`SystemMetrics.dlq_stats` (cached, since
``DeadLetterStore.stats()`` scans every record); absent while storage is closed.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from phalanx.runtime._metrics import SystemMetrics

__all__ = ["BREAKER_STATE_VALUES"]

BREAKER_STATE_VALUES: dict[str, int] = {"closed": 0, "half_open": 1, "open": 2}
_INTROSPECTED_KINDS = frozenset({"ExchangeConnection"})  # cheap introspect(), few of them


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
