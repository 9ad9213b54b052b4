"""Tell throughput and ask round trip: phalanx Actor next to raw pykka ThreadingActor.

Targets (issue 2): tell >= 0.7x raw pykka; ask round trip <= 1.5x raw pykka.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pykka

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _common import machine, median_of

from phalanx import Actor, ActorSystem, Mailbox

TELLS = 100_000
ASKS = 10_000
RUNS = 3


class RawCounter(pykka.ThreadingActor):
    def __init__(self) -> None:
        super().__init__()
        self.n = 0

    def on_receive(self, message: Any) -> Any:
        if message == "get":
            return self.n
        self.n += 1
        return None


class Counter(Actor):
    def on_start(self) -> None:
        self.n = 0

    def on_receive(self, message: Any) -> Any:
        if message == "get":
            return self.n
        self.n += 1
        return None


def raw_tell() -> float:
    ref = RawCounter.start()
    start = time.perf_counter()
    for _ in range(TELLS):
        ref.tell("inc")
    ref.ask("get")
    elapsed = time.perf_counter() - start
    ref.stop()
    return TELLS / elapsed


def raw_ask() -> float:
    ref = RawCounter.start()
    start = time.perf_counter()
    for _ in range(ASKS):
        ref.ask("get")
    elapsed = time.perf_counter() - start
    ref.stop()
    return elapsed / ASKS * 1e6


def phalanx_tell(system: ActorSystem) -> float:
    ref = system.spawn(Counter, "/bench/tell", mailbox=Mailbox(capacity=TELLS + 10))
    start = time.perf_counter()
    for _ in range(TELLS):
        ref.tell("inc")
    ref.ask("get", timeout=60)
    elapsed = time.perf_counter() - start
    system.stop("/bench/tell")
    return TELLS / elapsed


def phalanx_ask(system: ActorSystem) -> float:
    ref = system.spawn(Counter, "/bench/ask")
    start = time.perf_counter()
    for _ in range(ASKS):
        ref.ask("get", timeout=60)
    elapsed = time.perf_counter() - start
    system.stop("/bench/ask")
    return elapsed / ASKS * 1e6


def main() -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp, ActorSystem(var_dir=tmp, sync=False) as system:
        raw_tell_rate = median_of(RUNS, raw_tell)
        ph_tell_rate = median_of(RUNS, lambda: phalanx_tell(system))
        raw_ask_us = median_of(RUNS, raw_ask)
        ph_ask_us = median_of(RUNS, lambda: phalanx_ask(system))
    return {
        "bench": "mailbox",
        "machine": machine(),
        "tell": {
            "messages": TELLS,
            "pykka_msgs_per_s": round(raw_tell_rate),
            "phalanx_msgs_per_s": round(ph_tell_rate),
            "ratio": round(ph_tell_rate / raw_tell_rate, 3),
            "target_ratio_min": 0.7,
        },
        "ask_round_trip": {
            "asks": ASKS,
            "pykka_us": round(raw_ask_us, 2),
            "phalanx_us": round(ph_ask_us, 2),
            "ratio": round(ph_ask_us / raw_ask_us, 3),
            "target_ratio_max": 1.5,
        },
    }


if __name__ == "__main__":
    print(json.dumps(main(), indent=2))
