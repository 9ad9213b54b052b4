"""Shared bench helpers: timing, medians, machine description. Benches print JSON."""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable
from typing import Any


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "machine": platform.machine(),
    }


def median_of(runs: int, fn: Callable[[], float]) -> float:
    """The median of ``runs`` calls of ``fn`` (each returns one measurement)."""
    return statistics.median(fn() for _ in range(runs))


def rate(n: int, fn: Callable[[], Any]) -> float:
    """Operations per second for ``fn`` doing ``n`` operations."""
    start = time.perf_counter()
    fn()
    return n / (time.perf_counter() - start)
