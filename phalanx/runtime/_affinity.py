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
  thread listed by the end of the call (it re-lists them, up to
  ``_PASSES`` times, until no new one appears; ``reason`` says "partial"
  when threads were still appearing);
- the CPU is one the calling thread may run on (``os.sched_getaffinity``);
  every thread is set to exactly that CPU (a narrower mask a thread set for
  itself is replaced);
- a refused pin (no ``sched_setaffinity`` on this platform, an error part
  way) leaves every thread with the mask it had and says why in the result;
  only an explicit CPU the process may not run on is an error (``ValueError``).
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from dataclasses import dataclass

__all__ = ["CpuPinning", "pin_to_one_cpu"]

_SAMPLE_S = 0.1  # how long the CPUs' busy time is sampled (~10 ticks at 100 Hz)
_PASSES = 5  # thread listings per pin (a thread started meanwhile is pinned on the next pass)


@dataclass(frozen=True)
class CpuPinning:
    """What :func:`pin_to_one_cpu` did."""

    cpu: int | None  # the CPU every thread now runs on; None: not pinned
    allowed: tuple[int, ...]  # the CPUs the process could run on before
    threads: int  # threads pinned
    reason: str  # "pinned"; "partial" (threads still appearing, or no procfs); why not:
    # "unsupported" (no sched_setaffinity), "refused: <error>" (every thread restored)


def pin_to_one_cpu(cpu: int | None = None) -> CpuPinning:
    """Pin every thread of this process to ``cpu``, or to the least busy allowed CPU.

    With ``cpu=None`` the CPU is the least busy of those the process may run
    on, over a 0.1 s sample of ``/proc/stat``; a tie (an idle machine) is
    broken by the process id, so nodes started together spread over the
    CPUs instead of all taking the same one (the last allowed one without
    ``/proc/stat``). Raises ``ValueError`` for a ``cpu`` the process may not
    run on. See the module docstring for why and what was measured.
    """
    if not hasattr(os, "sched_setaffinity"):
        return CpuPinning(None, (), 0, "unsupported")
    allowed = tuple(sorted(os.sched_getaffinity(0)))
    if cpu is not None and cpu not in allowed:
        raise ValueError(f"CPU {cpu} is not one this process may run on: {list(allowed)}")
    chosen = _least_busy(allowed) if cpu is None else cpu
    before: dict[int, set[int]] = {}
    try:
        complete = set_every_thread({chosen}, before)
    except OSError as exc:
        _restore(before)
        return CpuPinning(None, allowed, 0, f"refused: {exc}")
    return CpuPinning(chosen, allowed, len(before), "pinned" if complete else "partial")


def set_every_thread(mask: set[int], before: dict[int, set[int]]) -> bool:
    """Set every listed thread's affinity to ``mask``, noting each one's old mask in ``before``.

    True when a last listing found no thread left unset. (The bench also uses
    it to run a round unpinned on a pinned node, and to pin it again.)
    """
    for _ in range(_PASSES):
        listed = _thread_ids()
        # No procfs: the calling thread only (its later threads inherit it).
        tids = listed if listed is not None else [threading.get_native_id()]
        fresh = [tid for tid in tids if tid not in before]
        if not fresh:
            return listed is not None
        for tid in fresh:
            try:
                had = os.sched_getaffinity(tid)
                os.sched_setaffinity(tid, mask)
            except ProcessLookupError:
                continue  # it ended since the listing
            before[tid] = had
    return False


def _restore(before: dict[int, set[int]]) -> None:
    for tid, mask in before.items():
        with contextlib.suppress(OSError):  # ended, or refused again: nothing more to do
            os.sched_setaffinity(tid, mask)


def _thread_ids() -> list[int] | None:
    try:
        return [int(tid) for tid in os.listdir("/proc/self/task")]
    except OSError:
        return None


def _least_busy(allowed: tuple[int, ...]) -> int:
    before = _busy_ticks()
    if not before:
        return allowed[-1]
    time.sleep(_SAMPLE_S)
    after = _busy_ticks()
    busy = {c: after.get(c, 0) - before.get(c, 0) for c in allowed}
    least = min(busy.values())
    tied = [c for c in allowed if busy[c] == least]
    return tied[os.getpid() % len(tied)]


def _busy_ticks(path: str = "/proc/stat") -> dict[int, int]:
    """Busy ticks per CPU: user, nice, system, irq, softirq and steal; {} without ``/proc/stat``.

    Idle and iowait are not busy; guest time is already inside user and nice.
    """
    return {
        int(name[3:]): t[0] + t[1] + t[2] + t[5] + t[6] + t[7]
        for name, t in cpu_ticks(path).items()
        if name != "cpu"
    }


def cpu_ticks(path: str = "/proc/stat") -> dict[str, list[int]]:
    """``/proc/stat``'s CPU lines: "cpu" (all CPUs) and "cpuN", each its first 8 tick counts.

    The counts are user, nice, system, idle, iowait, irq, softirq, steal
    (guest time is already inside user and nice); {} where the file cannot
    be read or parsed. The bench and the test summary read steal from it too.
    """
    ticks: dict[str, list[int]] = {}
    try:
        with open(path) as stat:
            for line in stat:
                name, *fields = line.split()
                if name.startswith("cpu"):
                    values = [int(x) for x in fields[:8]]
                    if len(values) < 8:
                        return {}
                    ticks[name] = values
    except (OSError, ValueError):
        return {}
    return ticks
