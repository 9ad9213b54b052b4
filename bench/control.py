"""``ctl ps`` latency on a node with 5,000 actors (issue 6 target: <= 200 ms).

- ``baseline_in_process``: ``[system.stats(p) for p in system.paths()]`` in
  the node's own process, no socket: the floor for reading every cell.
- ``ps_round_trip``: one ``ps`` request over the control socket from a
  connected client (validation, the cell scan, msgpack both ways, the socket).
- ``ps_sorted_depth``: the same, sorted server-side by mailbox depth.
- ``ctl_subprocess``: ``phalanx ctl --json ps`` as an operator runs it, next to
  ``import_only`` (``python -c "import phalanx.cli"``): most of the wall time
  is interpreter start and imports, not the command.

Milliseconds; median and p95 of ``RUNS`` runs (``SUBPROCESS_RUNS`` for the
subprocess figures).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _common import machine

from phalanx import Actor, ActorSystem
from phalanx.cli._client import ControlClient
from phalanx.runtime._control import ControlServer

ACTORS = 5000
RUNS = 30
SUBPROCESS_RUNS = 5
ROOT = Path(__file__).resolve().parent.parent


class Idle(Actor):
    def on_receive(self, message: Any) -> Any:
        return None


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def timed(fn: Callable[[], Any], runs: int) -> dict[str, float]:
    out = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        out.append((time.perf_counter() - start) * 1000)
    return {"median_ms": round(statistics.median(out), 2), "p95_ms": round(pct(out, 0.95), 2)}


def main() -> int:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with (
        tempfile.TemporaryDirectory(prefix="phx-bench-", dir="/tmp") as tmp,
        ActorSystem(name="bench", var_dir=tmp, sync=False) as system,
    ):
        started = time.perf_counter()
        for i in range(ACTORS):
            system.spawn(Idle, f"/bench/a{i:05d}" if i % 2 else f"/b{i:05d}")
        spawn_s = time.perf_counter() - started
        with (
            ControlServer(system, Path(tmp) / "control.sock") as server,
            ControlClient(server.path) as client,
        ):
            assert len(client.call("ps")) == ACTORS
            baseline = timed(lambda: [system.stats(p) for p in system.paths()], RUNS)
            round_trip = timed(lambda: client.call("ps"), RUNS)
            by_depth = timed(lambda: client.call("ps", sort="depth"), RUNS)
            ctl = timed(
                lambda: subprocess.run(
                    [sys.executable, "-m", "phalanx", "ctl", "--var-dir", tmp, "--json", "ps"],
                    env=env,
                    check=True,
                    capture_output=True,
                ),
                SUBPROCESS_RUNS,
            )
            imports = timed(
                lambda: subprocess.run(
                    [sys.executable, "-c", "import phalanx.cli"], env=env, check=True
                ),
                SUBPROCESS_RUNS,
            )
    print(
        json.dumps(
            {
                "machine": machine(),
                "actors": ACTORS,
                "spawn_s": round(spawn_s, 2),
                "baseline_in_process": baseline,
                "ps_round_trip": round_trip,
                "ps_sorted_depth": by_depth,
                "ctl_subprocess": ctl,
                "import_only": imports,
                "target_ms": 200,
            },
            indent=2,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
