"""Prometheus metrics: per-system registry, live values, HTTP exposition on loopback only."""

from __future__ import annotations

import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from phalanx import ActorSystem, Breaker, ChildSpec, Mailbox, Retry
from phalanx.errors import ConfigError
from phalanx.runtime import Actor
from phalanx.runtime._config import load_config
from phalanx.runtime._metrics import metrics_for, observe_exchange_call, render_metrics
from phalanx.runtime._metrics_server import MetricsServer, start_metrics_server


class Echo(Actor):
    def on_receive(self, message: Any) -> Any:
        if message == "fail":
            raise ConnectionError("venue down")
        return message


class Gate(Actor):
    """Blocks on its first message until released, so later ones pile up."""

    def __init__(self, entered: threading.Event, release: threading.Event) -> None:
        super().__init__()
        self.entered, self.release = entered, release

    def on_receive(self, message: Any) -> Any:
        if message == "hold":
            self.entered.set()
            self.release.wait(10)
        return message


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def _parse(text: str) -> Samples:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def _scrape(server: MetricsServer) -> Samples:
    with urllib.request.urlopen(server.url, timeout=5) as response:
        assert response.status == 200
        return _parse(response.read().decode())


@pytest.fixture
def server(system: ActorSystem) -> Iterator[MetricsServer]:
    handle = start_metrics_server(system, "127.0.0.1", 0)
    yield handle
    handle.close()


def test_scrape_over_http_shows_restarts_after_a_kill(
    system: ActorSystem, server: MetricsServer
) -> None:
    system.spawn(Echo, "/echo")
    assert system.ask("/echo", "a") == "a"
    before = _scrape(server)
    assert before[("phalanx_restarts_total", ())] == 0
    system.kill("/echo")
    assert system.ask("/echo", "b") == "b"
    after = _scrape(server)
    assert after[("phalanx_restarts_total", ())] == 1
    assert after[("phalanx_actor_restarts_total", (("path", "/echo"),))] == 1
    assert after[("phalanx_messages_handled_total", ())] == 2
    assert after[("phalanx_actors", (("status", "running"),))] == 1


def test_scrape_shows_dead_letters_by_reason_and_mailbox_depth_after_an_overflow(
    system: ActorSystem, server: MetricsServer
) -> None:
    entered, release = threading.Event(), threading.Event()
    system.spawn(Gate, "/gate", entered, release, mailbox=Mailbox(capacity=2))
    try:
        system.tell("/gate", "hold")
        assert entered.wait(5)
        for i in range(5):  # 2 fit, 3 overflow
            system.tell("/gate", i)
        system.tell("/nowhere", "x")
        system.storage.flush()  # dead-letter records are group-committed
        samples = _scrape(server)
    finally:
        release.set()
    assert samples[("phalanx_dead_letters_total", (("reason", "mailbox_overflow"),))] == 3
    assert samples[("phalanx_dead_letters_total", (("reason", "dead_target"),))] == 1
    assert samples[("phalanx_dead_letters_pending", ())] == 4
    pending = ("phalanx_dead_letters_pending_by_reason", (("reason", "mailbox_overflow"),))
    assert samples[pending] == 3
    assert samples[("phalanx_mailbox_depth", (("path", "/gate"),))] == 2
    assert samples[("phalanx_mailbox_depth_max", ())] == 2
    assert samples[("phalanx_messages_dead_lettered_total", ())] == 4


def test_scrape_shows_an_open_breaker_as_2(system: ActorSystem, server: MetricsServer) -> None:
    events = system.events.subscribe(kinds={"breaker_state"})
    try:
        system.supervise(
            "/s",
            intensity=1,
            period=5,
            children=[
                ChildSpec(
                    "venue",
                    Echo,
                    retry=Retry(max_attempts=1, base=0.0, jitter=0.0),
                    breaker=Breaker(reset_timeout=60.0),
                )
            ],
        )
        system.tell("/s/venue", "fail")
        system.tell("/s/venue", "fail")
        assert events.wait_for(lambda e: e.fields["new"] == "open", timeout=5) is not None
    finally:
        events.close()
    samples = _scrape(server)
    assert samples[("phalanx_breaker_state", (("kind", "supervisor"), ("path", "/s/venue")))] == 2
    assert samples[("phalanx_actors", (("status", "circuit_open"),))] == 1


def test_event_kinds_are_counted_with_order_and_saga_families(system: ActorSystem) -> None:
    metrics = metrics_for(system)
    system.events.publish("order_fill", "/orders/o-1", symbol="BTC/USDT")
    system.events.publish("order_fill", "/orders/o-1")
    system.events.publish("saga_completed", "/sagas/s-1")
    samples = _parse(metrics.render())
    assert samples[("phalanx_events_total", (("kind", "order_fill"),))] == 2
    assert samples[("phalanx_order_events_total", (("kind", "order_fill"),))] == 2
    assert samples[("phalanx_saga_events_total", (("kind", "saga_completed"),))] == 1
    assert ("phalanx_order_events_total", (("kind", "saga_completed"),)) not in samples


def test_exchange_latency_histogram_records_observed_calls(system: ActorSystem) -> None:
    observe_exchange_call(system, "paper", "fetch_ticker", 12.0, "ok")
    observe_exchange_call(system, "paper", "fetch_ticker", 700.0, "RequestTimeout")
    samples = _parse(render_metrics(system))
    ok = (("endpoint", "fetch_ticker"), ("exchange", "paper"), ("status", "ok"))
    assert samples[("phalanx_exchange_latency_seconds_count", ok)] == 1
    assert samples[("phalanx_exchange_latency_seconds_sum", ok)] == pytest.approx(0.012)
    bucket = ("phalanx_exchange_latency_seconds_bucket", (*ok[:2], ("le", "0.01"), ok[2]))
    assert samples[bucket] == 0


def test_each_system_has_its_own_registry(system: ActorSystem, tmp_path: Path) -> None:
    with ActorSystem(name="other", var_dir=tmp_path / "other", sync=False) as other:
        other.spawn(Echo, "/only-here")
        other.kill("/only-here")
        assert other.ask("/only-here", "x") == "x"
        assert _parse(render_metrics(other))[("phalanx_restarts_total", ())] == 1
        assert _parse(render_metrics(system))[("phalanx_restarts_total", ())] == 0
        assert metrics_for(other).registry is not metrics_for(system).registry


def test_mailbox_depth_series_are_bounded_to_top_n(tmp_path: Path) -> None:
    entered, release = threading.Event(), threading.Event()
    with ActorSystem(var_dir=tmp_path / "v", sync=False) as system:
        metrics = metrics_for(system, top_n=2)
        gates = []
        try:
            for i in range(4):
                entered.clear()
                system.spawn(Gate, f"/g{i}", entered, release)
                gates.append(f"/g{i}")
                system.tell(f"/g{i}", "hold")
                assert entered.wait(5)
                for j in range(i + 1):
                    system.tell(f"/g{i}", j)
            samples = _parse(metrics.render())
        finally:
            release.set()
    depth = {k[1][0][1]: v for k, v in samples.items() if k[0] == "phalanx_mailbox_depth"}
    assert depth == {"/g3": 4, "/g2": 3}
    assert samples[("phalanx_mailbox_depth_sum", ())] == 1 + 2 + 3 + 4


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.10", "example.com", "::"])
def test_non_loopback_host_is_refused_with_a_config_error(system: ActorSystem, host: str) -> None:
    with pytest.raises(ConfigError, match="loopback"):
        start_metrics_server(system, host, 0)


def test_metrics_config_refuses_a_non_loopback_host_naming_the_field(tmp_path: Path) -> None:
    config = tmp_path / "node.toml"
    config.write_text('[metrics]\nhost = "0.0.0.0"\nport = 9100\n')
    with pytest.raises(ConfigError, match=r"metrics\.host: .*loopback"):
        load_config(config)
    config.write_text('[metrics]\nhost = "localhost"\n')
    assert load_config(config).metrics.host == "127.0.0.1"


def test_port_in_use_is_a_config_error(system: ActorSystem, server: MetricsServer) -> None:
    with pytest.raises(ConfigError, match="cannot serve metrics"):
        start_metrics_server(system, "127.0.0.1", server.port)


def test_server_closes_itself_when_the_node_stops(tmp_path: Path) -> None:
    with ActorSystem(var_dir=tmp_path / "v", sync=False) as system:
        server = start_metrics_server(system)
        assert _scrape(server)[("phalanx_messages_sent_total", ())] == 0
    assert server.closed
    assert not [t for t in threading.enumerate() if t.name.startswith("phalanx-metrics")]
