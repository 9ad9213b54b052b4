"""Spawn and exit of a supervised actor: process CPU per actor, next to raw pykka.

Each buy saga starts two transient children under ``simple_one_for_one``
supervisors (``/sagas`` and ``/orders``) with ``SupervisorRef.start_child``,
and each exits normally when done. Here: ``start_child`` + one ``tell`` +
``self.stop()``, until the supervisor has dropped the child, over ``SPAWNS``
actors in ``ROUNDS`` rounds (the figure is the median round); the baseline
is a raw ``pykka.ThreadingActor`` start + tell + stop in the same run.
Process CPU (all threads), not wall time: the supervisor, the child, the
caller and the log writer all count.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pykka

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _common import machine

from phalanx import Actor, ActorSystem, ChildSpec

SPAWNS = 1000
ROUNDS = 3


class Once(Actor):
    def on_receive(self, message: Any) -> Any:
        self.stop()
        return None


class Raw(pykka.ThreadingActor):
    def on_receive(self, message: Any) -> Any:
        self.stop()
        return None


def _wait(done: Any) -> None:
    deadline = time.monotonic() + 60.0
    while not done():
        if time.monotonic() > deadline:
            raise RuntimeError("actors did not all exit within 60 s")
        time.sleep(0.005)


def phalanx_rounds(system: ActorSystem) -> list[tuple[float, float]]:
    sup = system.supervise(
        "/w",
        strategy="simple_one_for_one",
        intensity=SPAWNS * ROUNDS * 2,
        period=1.0,
        children=[ChildSpec("a", Once, restart="transient")],
    )
    out = []
    for rnd in range(ROUNDS + 1):  # round 0 warms up
        wall, cpu = time.perf_counter(), time.process_time()
        for i in range(SPAWNS):
            sup.start_child(child_id=f"a-{rnd}-{i}").tell("x")
        _wait(lambda: not any(p.startswith("/w/") for p in system.paths()))
        if rnd:
            out.append(((time.perf_counter() - wall), (time.process_time() - cpu)))
    system.stop("/w")
    return out


def raw_rounds() -> list[tuple[float, float]]:
    out = []
    for rnd in range(ROUNDS + 1):
        wall, cpu = time.perf_counter(), time.process_time()
        for _ in range(SPAWNS):
            Raw.start().tell("x")
        _wait(lambda: not pykka.ActorRegistry.get_all())
        if rnd:
            out.append(((time.perf_counter() - wall), (time.process_time() - cpu)))
    return out


def _us(rounds: list[tuple[float, float]], i: int) -> float:
    return round(statistics.median(r[i] for r in rounds) / SPAWNS * 1e6, 1)


def main() -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp, ActorSystem(var_dir=tmp, sync=False) as system:
        supervised = phalanx_rounds(system)
    raw = raw_rounds()
    cpu, raw_cpu = _us(supervised, 1), _us(raw, 1)
    return {
        "bench": "spawn_exit",
        "machine": machine(),
        "spawn_tell_exit": {
            "actors_per_round": SPAWNS,
            "rounds": ROUNDS,
            "cpu_us_per_actor": cpu,
            "wall_us_per_actor": _us(supervised, 0),
            "baseline_raw_pykka_cpu_us_per_actor": raw_cpu,
            "baseline_raw_pykka_wall_us_per_actor": _us(raw, 0),
            "ratio_cpu": round(cpu / raw_cpu, 2),
        },
    }


if __name__ == "__main__":
    if os.environ.get("PHALANX_BENCH_PIN", "1") != "0":
        os.sched_setaffinity(0, {0})
    print(json.dumps(main(), indent=2))
