"""Shared bench helpers: timing, medians, machine description. Benches print JSON."""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any, TypeVar

from phalanx.runtime._affinity import cpu_ticks

PACKAGES = ("pykka", "ccxt", "lmdb", "msgpack", "pydantic", "structlog")


def _cpu_model() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or None


def _mem_total_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 2**20, 2)
    except OSError:
        pass
    return None


def versions() -> dict[str, str | None]:
    """Installed versions of the libraries the figures depend on (no imports)."""
    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def load_average() -> list[float]:
    """The 1, 5 and 15 minute load averages (other processes share these cores)."""
    return [round(x, 2) for x in os.getloadavg()]


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)),
        "cpu_model": _cpu_model(),
        "memory_gib": _mem_total_gib(),
        "machine": platform.machine(),
        "load_average": load_average(),
    }


def vm_cpu_ticks() -> tuple[int, int] | None:
    """(steal, all) jiffies of this VM's CPUs since boot from ``/proc/stat``; None off Linux.

    "all" sums user through steal: guest time is already counted in user.
    """
    ticks = cpu_ticks().get("cpu")  # user nice system idle iowait irq softirq steal
    return None if ticks is None else (ticks[7], sum(ticks))


def stolen_pct(before: tuple[int, int] | None, after: tuple[int, int] | None) -> float | None:
    """The share of this VM's CPU time (all its vCPUs, idle included) stolen by the hypervisor.

    Idle time is in the denominator, so a one-core load on 2 vCPUs shows at
    most ~50% however slow the host is: read it as "the VM lost this much".

    Measured on this VM: 32-38% in slow minutes (the same code then runs at half
    its speed), ~0 in fast ones. A round's figure is read against it.
    """
    if before is None or after is None or after[1] <= before[1]:
        return None
    return round(100 * (after[0] - before[0]) / (after[1] - before[1]), 1)


def median_of(runs: int, fn: Callable[[], float]) -> float:
    """The median of ``runs`` calls of ``fn`` (each returns one measurement)."""
    return statistics.median(fn() for _ in range(runs))


def rate(n: int, fn: Callable[[], Any]) -> float:
    """Operations per second for ``fn`` doing ``n`` operations."""
    start = time.perf_counter()
    fn()
    return n / (time.perf_counter() - start)


H = TypeVar("H")


def windowed_round(
    n: int, in_flight: int, start: Callable[[int], H], finish: Callable[[H], str]
) -> dict[str, Any]:
    """Start ``n`` jobs, at most ``in_flight`` unfinished; the rate, CPU per job, statuses.

    Also the cores the process used (its CPU time over the wall time) and the
    share of this VM's CPU time the hypervisor stole meanwhile (``stolen_pct``).

    ``start(i)`` starts job ``i`` and returns its handle; ``finish(handle)``
    waits for it and returns its status (counted in ``statuses``).
    """
    handles: list[H] = []
    statuses: dict[str, int] = {}

    def count(handle: H) -> None:
        status = finish(handle)
        statuses[status] = statuses.get(status, 0) + 1

    ticks_started = vm_cpu_ticks()
    started, cpu_started = time.perf_counter(), time.process_time()
    for i in range(n):
        handles.append(start(i))
        if i >= in_flight:
            count(handles[i - in_flight])
    for handle in handles[-in_flight:]:
        count(handle)
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    return {
        "sagas_per_s": round(n / elapsed, 1),
        "statuses": statuses,
        "process_cpu_ms_per_saga": round(cpu / n * 1000, 2),
        "process_cores_used": round(cpu / elapsed, 2),
        "vm_cpu_stolen_pct": stolen_pct(ticks_started, vm_cpu_ticks()),
    }
