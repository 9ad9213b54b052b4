"""Shared bench helpers: timing, medians, machine description. Benches print JSON."""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

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


def median_of(runs: int, fn: Callable[[], float]) -> float:
    """The median of ``runs`` calls of ``fn`` (each returns one measurement)."""
    return statistics.median(fn() for _ in range(runs))


def rate(n: int, fn: Callable[[], Any]) -> float:
    """Operations per second for ``fn`` doing ``n`` operations."""
    start = time.perf_counter()
    fn()
    return n / (time.perf_counter() - start)
