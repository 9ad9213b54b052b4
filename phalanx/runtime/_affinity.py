"""CPU pinning for a node process: every thread on one CPU (``cpu_affinity``).

A node's actors are threads of one interpreter, and only the thread holding
the GIL runs Python. With the threads free to run on two CPUs, every GIL
hand-off (an ask, a reply, a commit's wake, a log writer's turn) wakes a
thread on the other CPU: a cross-CPU wake-up (an IPI, a VM exit on a virtual
machine) and the woken thread's working set pulled over from the other
cache. Pinned to one CPU, the same hand-off is a context switch on a warm
cache. Measured on the trading bench (2 vCPUs, 300-400 buy sagas, 32 in
flight, interleaved runs): unpinned 30-47 sagas/s at 20-24 ms of process CPU
per saga and ~150 voluntary context switches per saga; pinned 71-84/s at
12-14 ms and ~44 switches; the placement round trip fell from 18.3 to 8.1 ms.
The process used ~1.05 CPUs unpinned, so pinning takes away almost nothing
it was using: C code that releases the GIL (an fsync, a socket wait) still
waits in parallel, it only no longer computes in parallel.

It is process-wide (every thread, the host program's too), so the library
never pins on import: ``phalanx run`` calls :func:`pin_to_one_cpu` before its
node starts (``cpu_affinity`` in the config; ``"inherit"`` turns it off), and
a program that embeds phalanx may call it itself.

Invariants:
- threads inherit their creator's affinity, so a pin made before the node
  starts covers every thread it will have; a pin made later covers every
  thread alive by the end of the call (it re-lists them until no new one
  appears);
- the CPU is one the process may already run on (``os.sched_getaffinity``):
  pinning never widens what the process was allowed;
- failing to pin (no ``sched_setaffinity`` on this platform, a refused call)
  leaves the process as it was and says why in the result; only an explicit
  CPU the process may not run on is an error (``ValueError``).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

__all__ = ["CpuPinning", "pin_to_one_cpu"]

_SAMPLE_S = 0.05  # how long the CPUs' busy time is sampled to choose the least busy one
_PASSES = 5  # thread listings per pin (a thread started meanwhile is pinned on the next pass)


@dataclass(frozen=True)
class CpuPinning:
    """What :func:`pin_to_one_cpu` did."""

    cpu: int | None  # the CPU every thread now runs on; None: not pinned
    allowed: tuple[int, ...]  # the CPUs the process could run on before
    threads: int  # threads pinned
    reason: str  # "pinned", or why not: "unsupported", "refused: <error>"


def pin_to_one_cpu(cpu: int | None = None) -> CpuPinning:
    """Pin every thread of this process to ``cpu``, or to the least busy allowed CPU.

    With ``cpu=None`` the CPU is the least busy of those the process may run
    on, over a 50 ms sample of ``/proc/stat`` (the highest-numbered one on a
    tie, since interrupts favour CPU 0; the last allowed one without
    ``/proc/stat``). Raises ``ValueError`` for a ``cpu`` the process may not
    run on. See the module docstring for why and what was measured.
    """
    if not hasattr(os, "sched_setaffinity"):
        return CpuPinning(None, (), 0, "unsupported")
    allowed = tuple(sorted(os.sched_getaffinity(0)))
    if cpu is not None and cpu not in allowed:
        raise ValueError(f"CPU {cpu} is not one this process may run on: {list(allowed)}")
    chosen = _least_busy(allowed) if cpu is None else cpu
    try:
        threads = _pin_threads(chosen)
    except OSError as exc:
        return CpuPinning(None, allowed, 0, f"refused: {exc}")
    return CpuPinning(chosen, allowed, threads, "pinned")


def _pin_threads(cpu: int) -> int:
    """Pin every thread of this process to ``cpu``; how many were pinned."""
    pinned: set[int] = set()
    for _ in range(_PASSES):
        fresh = set(_thread_ids()) - pinned
        if not fresh:
            break
        for tid in fresh:
            try:
                os.sched_setaffinity(tid, {cpu})
            except ProcessLookupError:
                continue  # it ended since the listing
            pinned.add(tid)
    return len(pinned)


def _thread_ids() -> list[int]:
    try:
        return [int(tid) for tid in os.listdir("/proc/self/task")]
    except OSError:  # no procfs: the calling thread only (its children inherit the pin)
        return [0]


def _least_busy(allowed: tuple[int, ...]) -> int:
    before = _busy_ticks()
    if not before:
        return allowed[-1]
    time.sleep(_SAMPLE_S)
    after = _busy_ticks()
    return min(reversed(allowed), key=lambda c: after.get(c, 0) - before.get(c, 0))


def _busy_ticks() -> dict[int, int]:
    """Busy ticks per CPU (every field but idle and iowait) from ``/proc/stat``; {} without it."""
    ticks: dict[int, int] = {}
    try:
        with open("/proc/stat") as stat:
            for line in stat:
                name, *fields = line.split()
                if name.startswith("cpu") and name != "cpu":
                    values = [int(v) for v in fields]
                    ticks[int(name[3:])] = sum(values) - values[3] - values[4]
    except (OSError, ValueError, IndexError):
        return {}
    return ticks
