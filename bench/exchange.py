"""Order round trips through ExchangeConnection vs ccxt directly, and venue matching speed.

- create + cancel of a resting limit order: through the actor
  (ask -> ExchangeConnection -> ccxt -> HTTP -> venue) next to the same ccxt
  calls made directly, against the same embedded venue, each side with its
  own keep-alive ccxt client built from the same config. Target (issue 4):
  overhead <= 15%. The connection does all of its work: tracer on (its line
  count is reported), token bucket on (a rate that never binds), breaker on,
  latency histogram on.
  Method: the process is pinned to one core (PHALANX_BENCH_PIN=0 to not);
  every round trip is timed on its own; the sides take turns in blocks of
  BLOCK round trips (A-B-C, then C-B-A: a *cycle* is one block of each), so
  drift and the neighbours' load hit every side alike while each side runs
  warm. A block's figure is the median of its round trips. The tracer lines
  of a connection block are rendered and written at its end and that time
  is added to its round trips (the writer thread would otherwise do it in
  the next side's block). ``overhead_pct``
  (the target figure) is the median over the cycles of (connection block /
  direct block of the same cycle) - 1: each ratio compares blocks a few
  milliseconds apart, and the median drops the cycles a neighbour disturbed.
  Next to it: the ratio of the medians of all round trips
  (``overhead_pct_of_medians``), the same at p25, the interquartile range of
  the per-cycle ratios, and the figure of each third of the run
  (``overhead_pct_by_third``: how stable it is within a run).
  A third side, ``thread_hop``, makes the same ccxt calls on a plain thread
  that the caller hands each call to (a queue and a future, nothing else):
  DESIGN 6 puts the client on its own thread, so its overhead is the floor
  any such design pays in the same run.
- the matching engine alone (no HTTP): market orders per second.
"""

from __future__ import annotations

import json
import os
import queue
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import ccxt
from pykka import ThreadingFuture

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _common import machine

from phalanx import ActorSystem
from phalanx.actors.exchange import connection_spec
from phalanx.actors.venue import MatchingEngine, PaperVenue
from phalanx.protocols.exchange import CancelOrder, CreateOrder
from phalanx.runtime._config import ExchangeConfig

ROUNDS = 1200  # timed round trips per side (120 cycles: the median moves ~1 point run to run)
BLOCK = int(os.environ.get("PHALANX_BENCH_BLOCK", "10"))  # round trips in a row per side
PATH = "/bench/paper"


def _direct(ex: ccxt.binance) -> Callable[[str], None]:
    def run(tag: str) -> None:
        order = ex.create_order("BTC/USDT", "limit", "buy", 0.001, 30000, {"clientOrderId": tag})
        ex.cancel_order(order["id"], "BTC/USDT")

    return run


def _through_actor(system: ActorSystem) -> Callable[[str], None]:
    def run(tag: str) -> None:
        order = system.ask(
            PATH,
            CreateOrder(symbol="BTC/USDT", side="buy", type="limit", amount=Decimal("0.001"),
                        price=Decimal(30000), client_order_id=tag),
            timeout=30,
        )  # fmt: skip
        system.ask(PATH, CancelOrder(symbol="BTC/USDT", id=order.id), timeout=30)

    return run


def _thread_hop(ex: ccxt.binance) -> tuple[Callable[[str], None], Callable[[], None]]:
    calls: queue.SimpleQueue[
        tuple[Callable[..., Any], tuple[Any, ...], ThreadingFuture[Any]] | None
    ]
    calls = queue.SimpleQueue()

    def serve() -> None:
        while (item := calls.get()) is not None:
            fn, args, future = item
            future.set(fn(*args))

    worker = threading.Thread(target=serve, name="bench-thread-hop")
    worker.start()

    def call(fn: Callable[..., Any], *args: Any) -> Any:
        future: ThreadingFuture[Any] = ThreadingFuture()
        calls.put((fn, args, future))
        return future.get(timeout=30)

    def run(tag: str) -> None:
        order = call(
            ex.create_order, "BTC/USDT", "limit", "buy", 0.001, 30000, {"clientOrderId": tag}
        )
        call(ex.cancel_order, order["id"], "BTC/USDT")

    def stop() -> None:
        calls.put(None)
        worker.join()

    return run, stop


def _pct(ratio: float) -> float:
    return round((ratio - 1) * 100, 1)


def _cycle_ratios(side: list[list[float]], base: list[list[float]]) -> list[float]:
    """Per cycle: the side's block median over the baseline's block median."""
    return [statistics.median(s) / statistics.median(b) for s, b in zip(side, base, strict=True)]


def round_trips() -> dict[str, Any]:
    """Interleaved timed blocks of the three sides; per-cycle ratios and medians."""
    cycles = ROUNDS // BLOCK
    blocks: dict[str, list[list[float]]] = {"d": [], "a": [], "h": []}
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
            hop_ex = ccxt.binance(cc)  # its own keep-alive client, as the other two
            hop_ex.load_markets()
            hop, stop_hop = _thread_hop(hop_ex)
            sides = [(_direct(ex), "d"), (_through_actor(system), "a"), (hop, "h")]
            try:
                for i in range(20):  # warm-up: connections, caches, the adaptive timeout
                    for run, tag in sides:
                        run(f"warm-{tag}{i}")
                clock = time.perf_counter
                for b in range(cycles):
                    for run, tag in sides if b % 2 == 0 else sides[::-1]:
                        times: list[float] = []
                        for i in range(BLOCK):
                            start = clock()
                            run(f"{tag}{b}-{i}")
                            times.append(clock() - start)
                        if tag == "a":
                            # The tracer's writer renders the block's lines up to 50 ms
                            # later, in the next side's block: render them now, and
                            # charge that to this block's round trips.
                            start = clock()
                            system.logs.flush()
                            share = (clock() - start) / BLOCK
                            times = [t + share for t in times]
                        blocks[tag].append(times)
            finally:
                stop_hop()
        # The system is shut down: every buffered tracer line is on disk.
        tracer = (Path(tmp) / "logs" / "tracer.jsonl").read_text().splitlines()

    def flat(tag: str) -> list[float]:
        return [t for block in blocks[tag] for t in block]

    def q(times: list[float], k: int) -> float:  # k-th quartile (2 = median)
        return statistics.quantiles(times, n=4)[k - 1]

    direct_s, actor_s, hop_s = flat("d"), flat("a"), flat("h")
    d, a, h = (statistics.median(x) for x in (direct_s, actor_s, hop_s))
    ratios = _cycle_ratios(blocks["a"], blocks["d"])
    third = cycles // 3
    return {
        "round_trips_per_side": len(direct_s),
        "cycles": cycles,
        "block": BLOCK,
        "ccxt_direct_per_s": round(1 / d, 1),
        "through_connection_per_s": round(1 / a, 1),
        "overhead_pct": _pct(statistics.median(ratios)),
        "overhead_pct_cycle_iqr": [_pct(q(ratios, 1)), _pct(q(ratios, 3))],
        "overhead_pct_by_third": [
            _pct(statistics.median(ratios[k * third : (k + 1) * third])) for k in range(3)
        ],
        "overhead_pct_of_medians": _pct(a / d),
        "overhead_pct_at_p25": _pct(q(actor_s, 1) / q(direct_s, 1)),
        "target_overhead_pct_max": 15,
        "thread_hop_per_s": round(1 / h, 1),
        "thread_hop_overhead_pct": _pct(statistics.median(_cycle_ratios(blocks["h"], blocks["d"]))),
        "thread_hop_overhead_pct_of_medians": _pct(h / d),
        "round_trip_ms_p25_p50_p75": {
            name: [round(q(x, k) * 1000, 3) for k in (1, 2, 3)]
            for name, x in (("direct", direct_s), ("connection", actor_s), ("hop", hop_s))
        },
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
