"""Shared fixtures. The autouse fixture fails any test that leaks a phalanx thread."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from phalanx import ActorSystem, Retry
from phalanx.runtime._affinity import cpu_ticks


def _host_cpu() -> tuple[int, int] | None:
    """(steal, all) jiffies of every CPU from /proc/stat; None where there is none."""
    ticks = cpu_ticks().get("cpu")
    return None if ticks is None else (ticks[7], sum(ticks))


_SESSION_START = (time.monotonic(), _host_cpu(), os.times())


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """How much CPU the run had: a slow run on this shared VM reads against it.

    Measured here: the same suite took 225 s in one hour and 309 s in another;
    the share of this VM's CPU time the hypervisor steals swings 0-38%.
    """
    started, cpu_before, times_before = _SESSION_START
    wall = time.monotonic() - started
    cpu_after, times_after = _host_cpu(), os.times()
    own = sum(times_after[:4]) - sum(times_before[:4])  # this process and its reaped children
    stolen = "n/a"
    if cpu_before and cpu_after and cpu_after[1] > cpu_before[1]:
        share = 100 * (cpu_after[0] - cpu_before[0]) / (cpu_after[1] - cpu_before[1])
        stolen = f"{share:.1f}%"
    terminalreporter.write_line(
        f"this VM's CPU time stolen by the hypervisor during the run: {stolen}; "
        f"CPU used by pytest and its exited children: {own:.0f} s over {wall:.0f} s"
    )


def _phalanx_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name.startswith("phalanx") and t.is_alive()}


@pytest.fixture(autouse=True)
def no_leaked_threads() -> Iterator[None]:
    """Every actor, timer and writer thread a test starts must be gone when it ends."""
    before = _phalanx_threads()
    yield
    leaked = []
    for thread in _phalanx_threads() - before:
        thread.join(timeout=5.0)
        if thread.is_alive():
            leaked.append(thread.name)
    assert not leaked, f"threads outlived the test: {sorted(leaked)}"


@pytest.fixture
def system(tmp_path: Path) -> Iterator[ActorSystem]:
    """A started ActorSystem in a temporary var dir, shut down after the test."""
    with ActorSystem(
        name="test",
        var_dir=tmp_path / "var",
        retry=Retry(max_attempts=3, backoff="fixed", base=0.0, jitter=0.0),
        sync=False,
    ) as sys_:
        yield sys_
