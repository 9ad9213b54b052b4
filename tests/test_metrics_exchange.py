"""Metrics and alerts of a real ExchangeConnection against the paper venue (loopback)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families

from phalanx import ActorSystem, CircuitOpen, Retry
from phalanx.actors._alerting import AlertEngine
from phalanx.actors.exchange import ConnectionState, connection_spec
from phalanx.actors.venue import Fault, PaperVenue
from phalanx.protocols.exchange import FetchBalance, FetchTicker
from phalanx.runtime._alert_config import default_alert_rules
from phalanx.runtime._config import ExchangeConfig
from phalanx.runtime._metrics import render_metrics

PATH = "/exchanges/paper"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def venue() -> Iterator[PaperVenue]:
    with PaperVenue(seed=7) as v:
        yield v


def _samples(system: ActorSystem) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(render_metrics(system))
        for s in family.samples
    }


def _start(system: ActorSystem, venue: PaperVenue) -> ConnectionState:
    cc = venue.ccxt_config()
    config = ExchangeConfig(
        name="paper", urls=cc["urls"], options=cc["options"], rate_limit_per_s=1, burst=10,
        weights={"load_markets": 1, "fetch_ticker": 2, "fetch_balance": 1},
    )  # fmt: skip
    state = ConnectionState(config, clock=FakeClock())  # frozen clock: no refill
    spec = connection_spec(
        config,
        client_config={"apiKey": cc["apiKey"], "secret": cc["secret"]},
        retry=Retry(max_attempts=3, backoff="fixed", base=0.0, jitter=0.0),
        state=state,
    )
    system.supervise("/exchanges", intensity=10, period=5, children=[spec])
    return state


def test_rate_limit_headroom_and_call_breaker_come_from_the_connection(
    system: ActorSystem, venue: PaperVenue
) -> None:
    _start(system, venue)
    before = _samples(system)[("phalanx_rate_limit_headroom", (("path", PATH),))]
    system.ask(PATH, FetchTicker(symbol="BTC/USDT"), timeout=5)
    samples = _samples(system)
    assert samples[("phalanx_rate_limit_headroom", (("path", PATH),))] < before
    assert samples[("phalanx_breaker_state", (("kind", "call"), ("path", PATH)))] == 0


def test_a_ban_opens_the_call_breaker_and_fires_the_rate_limited_alert(
    system: ActorSystem, venue: PaperVenue
) -> None:
    _start(system, venue)
    rules = [r for r in default_alert_rules() if r.name == "rate_limited"]
    sent: list[dict[str, object]] = []

    class Sink:
        def send(self, alert: dict[str, object]) -> None:
            sent.append(alert)

    engine = AlertEngine(system, rules, sinks=[Sink()], clock=FakeClock())
    banned = system.events.subscribe(kinds={"connection_state"})
    try:
        venue.inject(Fault("http_429", endpoint="GET /api/v3/account", retry_after_s=30))
        with pytest.raises(CircuitOpen):
            system.ask(PATH, FetchBalance(), timeout=5)
        event = banned.wait_for(lambda e: e.fields["new"] == "banned", timeout=5)
    finally:
        banned.close()
    assert event is not None
    assert [a["alert"] for a in engine.on_event(event)] == ["rate_limited"]
    assert sent[0]["labels"] == {"path": PATH}
    assert _samples(system)[("phalanx_breaker_state", (("kind", "call"), ("path", PATH)))] == 2


def test_every_connection_call_lands_in_the_exchange_latency_histogram(
    system: ActorSystem, venue: PaperVenue
) -> None:
    _start(system, venue)
    system.ask(PATH, FetchTicker(symbol="BTC/USDT"), timeout=5)
    samples = _samples(system)
    labels = (("endpoint", "fetch_ticker"), ("exchange", "paper"), ("status", "ok"))
    assert samples[("phalanx_exchange_latency_seconds_count", labels)] == 1
    load = (("endpoint", "load_markets"), ("exchange", "paper"), ("status", "ok"))
    assert samples[("phalanx_exchange_latency_seconds_count", load)] == 1
