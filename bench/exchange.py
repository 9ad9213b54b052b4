"""Order round trips through ExchangeConnection vs ccxt directly, and venue matching speed.

- create + cancel of a resting limit order, N times: through the actor
  (Ref.ask -> ExchangeConnection -> ccxt -> HTTP -> venue) next to calling
  the same ccxt client code directly, in the same run. Target (issue 4):
  overhead <= 15%.
- the matching engine alone (no HTTP): market orders per second.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import time
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

ROUNDS = 300
RUNS = 3


def direct(venue: PaperVenue) -> float:
    ex = ccxt.binance(venue.ccxt_config())
    ex.load_markets()
    start = time.perf_counter()
    for i in range(ROUNDS):
        order = ex.create_order(
            "BTC/USDT", "limit", "buy", 0.001, 30000, {"clientOrderId": f"d{i}"}
        )
        ex.cancel_order(order["id"], "BTC/USDT")
    return ROUNDS / (time.perf_counter() - start)


def through_actor(venue: PaperVenue, system: ActorSystem, run: int) -> float:
    cc = venue.ccxt_config()
    config = ExchangeConfig(
        name=f"p{run}", urls=cc["urls"], options=cc["options"], rate_limit_per_s=1e6, burst=1e6
    )
    spec = connection_spec(config, client_config={"apiKey": cc["apiKey"], "secret": cc["secret"]})
    system.supervise(f"/x{run}", children=[spec])
    path = f"/x{run}/p{run}"
    start = time.perf_counter()
    for i in range(ROUNDS):
        order = system.ask(
            path,
            CreateOrder(symbol="BTC/USDT", side="buy", type="limit", amount=Decimal("0.001"),
                        price=Decimal(30000), client_order_id=f"a{run}-{i}"),
            timeout=30,
        )  # fmt: skip
        system.ask(path, CancelOrder(symbol="BTC/USDT", id=order.id), timeout=30)
    elapsed = time.perf_counter() - start
    system.stop(f"/x{run}")
    return ROUNDS / elapsed


def engine_rate() -> float:
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
    direct_rates, actor_rates = [], []
    with (
        PaperVenue(seed=7) as venue,
        tempfile.TemporaryDirectory() as tmp,
        ActorSystem(var_dir=tmp, sync=False) as system,
    ):
        for run in range(RUNS):  # interleaved: both see the same conditions
            direct_rates.append(direct(venue))
            actor_rates.append(through_actor(venue, system, run))
    d, a = statistics.median(direct_rates), statistics.median(actor_rates)
    return {
        "bench": "exchange",
        "machine": machine(),
        "create_cancel_round_trips": {
            "rounds": ROUNDS,
            "ccxt_direct_per_s": round(d, 1),
            "through_connection_per_s": round(a, 1),
            "overhead_pct": round((d / a - 1) * 100, 1),
            "target_overhead_pct_max": 15,
        },
        "venue_matching_orders_per_s": round(engine_rate()),
    }


if __name__ == "__main__":
    if os.environ.get("PHALANX_BENCH_PIN", "1") != "0":
        os.sched_setaffinity(0, {0})
    print(json.dumps(main(), indent=2))
