"""Order round trips through ExchangeConnection vs ccxt directly, and venue matching speed.

- create + cancel of a resting limit order: through the actor
  (ask -> ExchangeConnection -> ccxt -> HTTP -> venue) next to the same ccxt
  calls made directly, against the same embedded venue, each side with its
  own keep-alive ccxt client built from the same config. Target (issue 4):
  overhead <= 15%.
  Method: the process is pinned to one core (PHALANX_BENCH_PIN=0 to not);
  BLOCKS pairs of BLOCK round trips, interleaved A-B then B-A so drift and
  neighbours' load hit both sides alike; the overhead is the median of the
  per-pair time ratios (each pair ran back to back). The tracer stays on: its
  line count is reported.
- the matching engine alone (no HTTP): market orders per second.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import ccxt

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _common import machine

from phalanx import ActorSystem
from phalanx.actors.exchange import connection_spec
from phalanx.actors.venue import MatchingEngine, PaperVenue
from phalanx.protocols.exchange import CancelOrder, CreateOrder
from phalanx.runtime._config import ExchangeConfig

BLOCK = 25  # round trips per timed block
BLOCKS = 24  # timed blocks per side (600 round trips each)
PATH = "/bench/paper"


def _direct(ex: ccxt.binance) -> Callable[[str], None]:
    def run(tag: str) -> None:
        for i in range(BLOCK):
            order = ex.create_order(
                "BTC/USDT", "limit", "buy", 0.001, 30000, {"clientOrderId": f"{tag}-{i}"}
            )
            ex.cancel_order(order["id"], "BTC/USDT")

    return run


def _through_actor(system: ActorSystem) -> Callable[[str], None]:
    def run(tag: str) -> None:
        for i in range(BLOCK):
            order = system.ask(
                PATH,
                CreateOrder(symbol="BTC/USDT", side="buy", type="limit", amount=Decimal("0.001"),
                            price=Decimal(30000), client_order_id=f"{tag}-{i}"),
                timeout=30,
            )  # fmt: skip
            system.ask(PATH, CancelOrder(symbol="BTC/USDT", id=order.id), timeout=30)

    return run


def round_trips() -> dict[str, Any]:
    """Interleaved timed blocks of both sides; medians and the per-pair overhead."""
    direct_s: list[float] = []
    actor_s: list[float] = []
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        with PaperVenue(seed=7) as venue, ActorSystem(var_dir=tmp, sync=False) as system:
            cc = venue.ccxt_config()
            ex = ccxt.binance(cc)
            ex.load_markets()
            config = ExchangeConfig(
                name="paper", urls=cc["urls"], options=cc["options"],
                rate_limit_per_s=1e6, burst=1e6,
            )  # fmt: skip
            system.supervise(
                "/bench",
                children=[
                    connection_spec(
                        config, client_config={"apiKey": cc["apiKey"], "secret": cc["secret"]}
                    )
                ],
            )
            sides = [(_direct(ex), direct_s, "d"), (_through_actor(system), actor_s, "a")]
            for run, _, tag in sides:
                run(f"warm-{tag}")
            for b in range(BLOCKS):
                for run, times, tag in sides if b % 2 == 0 else sides[::-1]:
                    start = time.perf_counter()
                    run(f"{tag}{b}")
                    times.append(time.perf_counter() - start)
        # The system is shut down: every buffered tracer line is on disk.
        tracer = (Path(tmp) / "logs" / "tracer.jsonl").read_text().splitlines()
    ratios = sorted(a / d for a, d in zip(actor_s, direct_s, strict=True))
    d, a = statistics.median(direct_s), statistics.median(actor_s)
    q = statistics.quantiles(ratios, n=4)
    return {
        "round_trips_per_side": BLOCK * BLOCKS,
        "ccxt_direct_per_s": round(BLOCK / d, 1),
        "through_connection_per_s": round(BLOCK / a, 1),
        "overhead_pct": round((statistics.median(ratios) - 1) * 100, 1),
        "overhead_pct_iqr": [round((q[0] - 1) * 100, 1), round((q[2] - 1) * 100, 1)],
        "overhead_pct_of_medians": round((a / d - 1) * 100, 1),
        "target_overhead_pct_max": 15,
        "tracer_lines": sum(1 for line in tracer if '"exchange_call"' in line),
        "loadavg_1m_before_after": [round(load_before[0], 2), round(os.getloadavg()[0], 2)],
    }


def engine_rate() -> float:
    """Market orders per second through the matching engine alone."""
    engine = MatchingEngine(7, balances={"USDT": Decimal(10**12), "BTC": Decimal(10**6)})
    n = 20_000
    start = time.perf_counter()
    for i in range(n):
        side = "BUY" if i % 2 else "SELL"
        engine.place(
            "paper", {"symbol": "BTCUSDT", "side": side, "type": "MARKET", "quantity": "0.01"}
        )
    return n / (time.perf_counter() - start)


def main() -> dict[str, Any]:
    """The exchange figures as one JSON-ready dict."""
    return {
        "bench": "exchange",
        "machine": machine(),
        "pinned_to_one_core": os.environ.get("PHALANX_BENCH_PIN", "1") != "0",
        "create_cancel_round_trips": round_trips(),
        "venue_matching_orders_per_s": round(engine_rate()),
    }


if __name__ == "__main__":
    if os.environ.get("PHALANX_BENCH_PIN", "1") != "0":
        os.sched_setaffinity(0, {0})
    print(json.dumps(main(), indent=2))
