"""Restart latency and restart storms under OTP supervisors.

- restart latency: from a crash (the handler raising) to the next message
  handled by the new incarnation, no backoff, over 1,000 restarts (p50/p99),
  next to a raw pykka actor start (start + first message) in the same run.
  Target (issue 3): p99 <= 5 ms.
- restart storm: 100 children under one_for_all, one crashes; the time until
  all 100 run again.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import pykka

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _common import machine

from phalanx import Actor, ActorSystem, ChildSpec, Retry

RESTARTS = 1000
STORM = 100

_crash_at: list[float] = []
_handled = threading.Event()
_handled_at: list[float] = []


class Crashy(Actor):
    def on_receive(self, message: Any) -> Any:
        if message == "crash":
            _crash_at.append(time.perf_counter())
            raise ConnectionError("bench crash")
        _handled_at.append(time.perf_counter())
        _handled.set()
        return None


class Raw(pykka.ThreadingActor):
    def on_receive(self, message: Any) -> Any:
        return message


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def restart_latency(system: ActorSystem) -> list[float]:
    system.supervise(
        "/lat",
        intensity=RESTARTS * 2,
        period=1,
        children=[ChildSpec("c", Crashy, retry=Retry(max_attempts=1, base=0.0, jitter=0.0))],
    )
    out = []
    for _ in range(RESTARTS):
        _handled.clear()
        system.tell("/lat/c", "crash")
        system.tell("/lat/c", "ping")
        if not _handled.wait(10):
            raise RuntimeError("restart did not complete")
        out.append((_handled_at[-1] - _crash_at[-1]) * 1000)
    system.stop("/lat")
    return out


def raw_start() -> list[float]:
    out = []
    for _ in range(RESTARTS):
        start = time.perf_counter()
        ref = Raw.start()
        ref.ask("ping")
        out.append((time.perf_counter() - start) * 1000)
        ref.stop()
    return out


class Member(Actor):
    def on_receive(self, message: Any) -> Any:
        if message == "crash":
            raise ConnectionError("storm")
        return self.incarnation


def storm(system: ActorSystem) -> float:
    retry = Retry(max_attempts=1, base=0.0, jitter=0.0)
    system.supervise(
        "/storm",
        strategy="one_for_all",
        intensity=10,
        period=5,
        children=[ChildSpec(f"m{i}", Member, retry=retry) for i in range(STORM)],
    )
    restarted = system.events.subscribe(kinds={"actor_restarted"})
    try:
        start = time.perf_counter()
        system.tell("/storm/m0", "crash")
        seen: set[str] = set()
        while len(seen) < STORM:
            event = restarted.get(timeout=30)
            if event is None:
                raise RuntimeError(f"only {len(seen)} of {STORM} restarted")
            if event.path and event.path.startswith("/storm/"):
                seen.add(event.path)
        elapsed = time.perf_counter() - start
    finally:
        restarted.close()
    system.stop("/storm")
    return elapsed * 1000


def main() -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp, ActorSystem(var_dir=tmp, sync=False) as system:
        latencies = restart_latency(system)
        baseline = raw_start()
        storm_ms = storm(system)
    return {
        "bench": "supervision",
        "machine": machine(),
        "restart_latency_ms": {
            "restarts": RESTARTS,
            "p50": round(pct(latencies, 0.50), 3),
            "p99": round(pct(latencies, 0.99), 3),
            "mean": round(statistics.mean(latencies), 3),
            "baseline_raw_pykka_start_p50": round(pct(baseline, 0.50), 3),
            "baseline_raw_pykka_start_p99": round(pct(baseline, 0.99), 3),
            "ratio_p50": round(pct(latencies, 0.50) / pct(baseline, 0.50), 2),
            "target_p99_max_ms": 5.0,
        },
        "restart_storm": {
            "children": STORM,
            "strategy": "one_for_all",
            "ms_to_fully_restarted": round(storm_ms, 1),
        },
    }


if __name__ == "__main__":
    if os.environ.get("PHALANX_BENCH_PIN", "1") != "0":
        os.sched_setaffinity(0, {0})
    print(json.dumps(main(), indent=2))
