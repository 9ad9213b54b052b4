"""Campaigns: a pure seeded plan, a runner against a Driver, and a passing in-process run."""

from __future__ import annotations

import random
import threading
from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from phalanx.actors import BUY, TradingNode, buy_input, start_trading
from phalanx.actors.saga import await_saga, start_saga
from phalanx.actors.venue import FAULT_KINDS, Fault, PaperVenue
from phalanx.runtime._config import StrategyConfig
from phalanx.testing import (
    ACTION_KINDS,
    ChaosAction,
    ChaosUnsupported,
    InProcessDriver,
    InvariantResult,
    Verdict,
    make_system,
    plan_campaign,
    run_campaign,
    trading_config,
)
from phalanx.testing._harness import FAST_ORDER_OPTIONS

# --- the plan: pure and deterministic ----------------------------------------------------

seeds = st.integers(0, 2**32)
rates = st.floats(0.0, 20.0, allow_nan=False)


@given(seed=seeds, duration=st.floats(0.5, 30.0), kill=rates, fault=rates,
       storm=st.floats(0.0, 2.0), flood=st.floats(0.0, 2.0), node=st.integers(0, 4))  # fmt: skip
def test_the_same_seed_gives_the_same_schedule(
    seed: int, duration: float, kill: float, fault: float, storm: float, flood: float, node: int
) -> None:
    def plan() -> list[ChaosAction]:
        return plan_campaign(seed, duration, kill, fault, node,
                             storm_rate=storm, flood_rate=flood)  # fmt: skip

    first = plan()
    assert plan() == first
    assert [a.at_s for a in first] == sorted(a.at_s for a in first)
    assert all(0 <= a.at_s < duration for a in first)
    assert sum(1 for a in first if a.kind == "node_sigkill") == node
    assert all(a.kind in ACTION_KINDS for a in first)
    for action in first:
        if action.kind == "venue_fault":
            assert action.fault is not None
            assert Fault(**action.fault).kind in FAULT_KINDS
        if action.kind in ("kill", "restart_storm", "flood"):
            assert action.glob in ("/orders/*", "/sagas/*")


@given(seed=seeds)
def test_a_rate_change_in_one_stream_leaves_the_others_unchanged(seed: int) -> None:
    base = plan_campaign(seed, 10.0, kill_rate=3.0, fault_rate=2.0)
    more_faults = plan_campaign(seed, 10.0, kill_rate=3.0, fault_rate=5.0)
    assert [a for a in base if a.kind == "kill"] == [a for a in more_faults if a.kind == "kill"]


def test_different_seeds_give_different_schedules() -> None:
    assert plan_campaign(1, 10.0, 5.0, 5.0) != plan_campaign(2, 10.0, 5.0, 5.0)


def test_rates_give_roughly_the_planned_number_of_actions() -> None:
    plan = plan_campaign(7, 60.0, kill_rate=1.0, fault_rate=0.5, node_kills=2)
    kills = sum(1 for a in plan if a.kind == "kill")
    faults = sum(1 for a in plan if a.kind == "venue_fault")
    assert 40 <= kills <= 80
    assert 15 <= faults <= 45


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"duration_s": 0}, "duration_s"),
        ({"kill_rate": -1}, "kill_rate"),
        ({"globs": ()}, "glob"),
        ({"kill_rate": 10_000.0, "duration_s": 3600.0}, "too large"),
        ({"fault_mix": {"meteor": 1.0}}, "meteor"),
    ],
)
def test_a_bad_plan_is_refused_naming_what_is_wrong(kwargs: dict[str, Any], message: str) -> None:
    args: dict[str, Any] = {"seed": 1, "duration_s": 5.0, "kill_rate": 1.0, "fault_rate": 1.0}
    with pytest.raises(ValueError, match=message):
        plan_campaign(**{**args, **kwargs})


# --- the runner against a recording driver --------------------------------------------------


class RecordingDriver:
    """A Driver that records every call against a fixed set of live paths."""

    def __init__(self, paths: list[str]) -> None:
        self.paths = paths
        self.calls: list[tuple[str, Any]] = []

    def list_paths(self) -> list[str]:
        return list(self.paths)

    def kill(self, path: str) -> bool:
        self.calls.append(("kill", path))
        return True

    def inject_fault(self, fault: Mapping[str, Any]) -> None:
        self.calls.append(("fault", fault["kind"]))
        if fault["kind"] == "http_418":
            raise ConnectionError("venue admin unreachable")

    def flood(self, path: str, n: int) -> int:
        self.calls.append(("flood", (path, n)))
        return n

    def sigkill_and_restart(self) -> None:
        raise ChaosUnsupported("not here")

    def verdict(self) -> Verdict:
        return Verdict.of([InvariantResult("conservation", True)])


LIVE = ["/orders", "/orders/o-a", "/orders/o-b", "/orders/o-c", "/sagas", "/sagas/s-a", "/risk"]


def test_the_runner_resolves_targets_from_the_seeded_pick_and_the_live_set() -> None:
    plan = [
        ChaosAction(0.0, "kill", "/orders/*", pick=4),  # 4 % 3 -> o-b
        ChaosAction(0.0, "restart_storm", "/orders/*", pick=2, count=5),  # o-c, o-a, o-b
        ChaosAction(0.0, "flood", "/sagas/*", pick=9, count=7),
        ChaosAction(0.0, "kill", "/positions/*", pick=1),  # nothing matches
        ChaosAction(0.0, "venue_fault", fault={"kind": "http_500", "endpoint": "*"}),
        ChaosAction(0.0, "venue_fault", fault={"kind": "http_418", "endpoint": "*"}),
        ChaosAction(0.0, "node_sigkill"),
    ]
    driver = RecordingDriver(LIVE)
    lines: list[str] = []
    verdict = run_campaign(plan, driver, progress=lines.append)
    assert driver.calls == [
        ("kill", "/orders/o-b"),
        ("kill", "/orders/o-c"), ("kill", "/orders/o-a"), ("kill", "/orders/o-b"),
        ("flood", ("/sagas/s-a", 7)),
        ("fault", "http_500"),
        ("fault", "http_418"),
    ]  # fmt: skip
    campaign = verdict.to_json()["campaign"]
    assert campaign["kills"] == 4
    assert campaign["missed"] == 1
    assert campaign["flooded"] == 7
    assert campaign["skipped"] == {"node_sigkill": "not here"}
    assert campaign["errors"] == ["venue_fault at 0.0s: ConnectionError('venue admin unreachable')"]
    assert verdict.ok
    assert any("kill /orders/o-b" in line for line in lines)
    assert lines[-1] == "verdict: ok"


def test_a_halted_campaign_still_takes_the_verdict() -> None:
    halt = threading.Event()
    halt.set()
    driver = RecordingDriver(LIVE)
    verdict = run_campaign([ChaosAction(30.0, "kill", "/orders/*")], driver,
                           progress=lambda _: None, halt=halt)  # fmt: skip
    assert driver.calls == []
    assert verdict.campaign["executed"] == {}


# --- in process: a campaign against a trading node ---------------------------------------------

TICK = Decimal("0.01")


class BuyBatch(threading.Thread):
    """Runs buy sagas (some marketable, some resting) until stopped, ``concurrency`` at a time."""

    def __init__(self, node: TradingNode, venue: PaperVenue, seed: int, concurrency: int = 6):
        super().__init__(name="phalanx-test-buys", daemon=True)
        self.node, self.venue, self.rng = node, venue, random.Random(seed)
        self.seed, self.concurrency = seed, concurrency
        self.halt = threading.Event()
        self.ids: list[str] = []

    def run(self) -> None:
        while not self.halt.is_set():
            ticker = self.venue.engine.ticker("BTCUSDT")
            if self.rng.random() < 0.6:
                price = (Decimal(ticker["askPrice"]) * Decimal("1.0005")).quantize(TICK)
            else:
                price = (Decimal(ticker["bidPrice"]) * Decimal("0.9998")).quantize(TICK)
            saga_id = f"buy-{self.seed}-{len(self.ids):04d}"
            amount = Decimal(self.rng.choice(("0.001", "0.002")))
            start_saga(self.node.system, BUY, saga_id,
                       buy_input("BTC/USDT", amount, price, fill_timeout_s=0.4))  # fmt: skip
            self.ids.append(saga_id)
            oldest = self.ids[-self.concurrency] if len(self.ids) >= self.concurrency else None
            while oldest is not None and not self.halt.is_set():
                try:
                    await_saga(self.node.system, oldest, timeout=0.2)
                    break
                except TimeoutError:
                    continue  # still running (maybe resuming after a kill)

    def stop(self) -> None:
        self.halt.set()
        self.join(30.0)


def _campaign(tmp: Path, seed: int, plan: list[ChaosAction], **order: Any) -> tuple[Verdict, int]:
    strategy = StrategyConfig(seed=seed, interval_s=0.05, fill_timeout_s=0.5, max_sagas=0)
    config = trading_config(strategy=strategy, timeout_min_ms=150, timeout_default_ms=400,
                            timeout_max_ms=800)  # fmt: skip
    with (
        PaperVenue(seed=seed, auto_step_s=0.005) as venue,
        make_system(tmp / "var") as system,
    ):
        node = start_trading(system, config, venue, order_options={**FAST_ORDER_OPTIONS, **order})
        assert node.reconciliation is not None
        assert node.reconciliation.ok
        batch = BuyBatch(node, venue, seed)
        batch.start()
        driver = InProcessDriver(system, venue, node, settle_timeout=60.0, quiesce=batch.stop)
        try:
            verdict = run_campaign(plan, driver, progress=lambda _: None)
        finally:
            batch.stop()
        return verdict, len(batch.ids)


def test_an_in_process_campaign_of_kills_storms_floods_and_venue_faults_passes(
    tmp_path: Path,
) -> None:
    plan = plan_campaign(5, 3.0, kill_rate=15.0, fault_rate=8.0, node_kills=1,
                         storm_rate=1.0, storm_size=4, flood_rate=1.0, flood_size=50)  # fmt: skip
    verdict, launched = _campaign(tmp_path, 5, plan)
    assert verdict.ok, verdict.dumps(indent=1)
    campaign = verdict.campaign
    # The run was really under fire, and really traded.
    assert campaign["kills"] >= 20
    assert campaign["executed"]["venue_fault"] >= 10
    assert campaign["flooded"] > 0
    assert set(campaign["skipped"]) == {"node_sigkill"}  # in-process: recorded, not faked
    assert campaign["errors"] == []
    assert campaign["settled"] is True
    sagas = verdict.invariants["sagas_terminal"].details
    assert sagas["statuses"].get("completed", 0) > 0
    assert sagas["sagas"] >= launched > 0
    assert verdict.invariants["no_duplicate_intents"].details["accepted"] > 0


def test_a_campaign_against_a_blindly_resending_order_actor_names_the_duplicate_intent(
    tmp_path: Path,
) -> None:
    # The broken Order actor of issue 7 resends the same client id on an unknown outcome
    # instead of looking it up: a filled order's id is accepted again by the venue.
    plan = plan_campaign(6, 2.0, kill_rate=0.0, fault_rate=10.0, fault_mix={"lost": 1.0})
    verdict, _ = _campaign(tmp_path, 6, plan, blind_resend=True)
    assert not verdict.ok
    duplicates = verdict.invariants["no_duplicate_intents"].details["duplicates"]
    assert duplicates, verdict.dumps(indent=1)
    intent, client_ids = next(iter(duplicates.items()))
    assert intent.startswith(("buy-6-", "s6-"))  # named by its intent (the saga id), not a hash
    assert len(client_ids) >= 2


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_a_long_in_process_campaign_passes(tmp_path: Path) -> None:
    plan = plan_campaign(17, 30.0, kill_rate=10.0, fault_rate=5.0, storm_rate=0.5,
                         flood_rate=0.5, flood_size=200)  # fmt: skip
    verdict, launched = _campaign(tmp_path, 17, plan)
    assert verdict.ok, verdict.dumps(indent=1)
    assert verdict.campaign["kills"] >= 200
    # It really traded: twice the batch's concurrency at least. Each saga takes
    # seconds under 10 kills/s and 5 faults/s (bans, held requests), so how many
    # follows the machine's speed (18 in one slow hour, when the bound was 20).
    assert launched >= 12
    statuses = verdict.invariants["sagas_terminal"].details["statuses"]
    assert statuses.get("completed", 0) > 0, statuses
