"""Scale: N order-sized actors (1k, 5k, 10k), phalanx next to raw pykka ThreadingActor.

Each actor holds state comparable to an Order actor (intent, record, fills
and trace dicts, a few Decimals). The phalanx actors are children of a
``simple_one_for_one`` supervisor at ``/orders`` (started with
``start_child``, an ask to the supervisor each, as the trading node does);
the raw ones are ``ThreadingActor.start()``-ed directly. At each N:

- ``spawn_per_s``: actors started per second (overall, and for the first and
  last 10% of N: a drop there is degradation with N);
- ``rss_per_actor_kib`` / ``vm_per_actor_kib`` / ``maps_per_actor`` /
  ``threads_per_actor``: deltas of ``VmRSS`` and ``VmSize`` from
  ``/proc/self/status``, of ``/proc/self/maps`` lines and of live threads,
  from just before the first spawn to after the last, divided by N;
- ``tell_per_s``: ``TELLS`` tells round robin over all N actors, until the
  last one is handled (each handler bumps a shared ``itertools.count``);
- ``stop_per_s``: stopping all N (the supervisor with its children, or each
  raw ref); everything is checked gone before the run ends.

Every (implementation, N, stack size) runs in its own subprocess, so a
previous N's freed memory and glibc's cache of thread stacks do not blur the
RSS deltas. Then the same at the middle N with a smaller thread stack
(``threading.stack_size``), the machine's thread limits, and the largest N
that fits 4 GiB. The limits are read, never probed: pids are machine-wide
and shared with every other process here.
"""

from __future__ import annotations

import gc
import itertools
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import pykka

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _common import machine

from phalanx import Actor, ActorSystem, ChildSpec

NS = (1_000, 5_000, 10_000)
TELLS = 50_000
SMALL_STACK_KIB = 256
GIB = 2**30
CHILD_TIMEOUT_S = 300

_count = itertools.count(1)
_target = [0]
_done = threading.Event()


def order_state(seq: int) -> dict[str, Any]:
    """About what an Order actor holds: intent, record, fills, trace."""
    cid = f"phx-{seq:08d}-b"
    return {
        "intent": {
            "order_req_id": f"req-{seq:08d}",
            "client_order_id": cid,
            "exchange": "paper",
            "symbol": "BTC/USDT",
            "side": "buy",
            "type": "limit",
            "amount": Decimal("0.001"),
            "price": Decimal("43000.10"),
        },
        "record": {
            "status": "open",
            "exchange_order_id": str(10**9 + seq),
            "filled": Decimal(0),
            "remaining": Decimal("0.001"),
            "attempts": 1,
        },
        "fills": {},
        "trace": {"session_id": "bench", "order_req_id": f"req-{seq:08d}", "saga_id": f"s-{seq}"},
    }


def _handle(state: dict[str, Any]) -> None:
    state["record"]["attempts"] += 1
    if next(_count) == _target[0]:
        _done.set()


class OrderSized(Actor):
    def __init__(self, seq: int) -> None:
        super().__init__()
        self.state = order_state(seq)

    def on_receive(self, message: Any) -> Any:
        _handle(self.state)
        return None


class RawOrderSized(pykka.ThreadingActor):
    def __init__(self, seq: int) -> None:
        super().__init__()
        self.state = order_state(seq)

    def on_receive(self, message: Any) -> Any:
        _handle(self.state)
        return None


def _status() -> dict[str, int]:
    """VmRSS and VmSize in KiB, and the number of memory mappings."""
    out = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmSize"):
            out[key] = int(value.split()[0])
    with open("/proc/self/maps", "rb") as maps:
        out["maps"] = sum(1 for _ in maps)
    return out


def _wait_threads(at_most: int, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    while threading.active_count() > at_most and time.monotonic() < deadline:
        time.sleep(0.05)  # sleep-ok: polling thread exit after a stop, bounded
    return threading.active_count()


def _tell_round_robin(refs: list[Any]) -> float:
    global _count
    _count = itertools.count(1)
    _target[0] = TELLS
    _done.clear()
    n = len(refs)
    start = time.perf_counter()
    for i in range(TELLS):
        refs[i % n].tell("fill")
    if not _done.wait(120):
        raise RuntimeError(f"only {next(_count) - 1} of {TELLS} tells handled in 120 s")
    return TELLS / (time.perf_counter() - start)


def _spawn(start_one: Any, n: int) -> tuple[list[Any], dict[str, float]]:
    tenth = max(1, n // 10)
    refs = []
    marks = [time.perf_counter()]
    for i in range(n):
        refs.append(start_one(i))
        if (i + 1) % tenth == 0:
            marks.append(time.perf_counter())
    total = marks[-1] - marks[0]
    return refs, {
        "spawn_per_s": round(n / total),
        "spawn_per_s_first_10pct": round(tenth / (marks[1] - marks[0])),
        "spawn_per_s_last_10pct": round(tenth / (marks[-1] - marks[-2])),
    }


def _per_actor(before: dict[str, int], after: dict[str, int], n: int) -> dict[str, float]:
    return {
        "rss_kib_before": before["VmRSS"],
        "rss_kib_after_spawn": after["VmRSS"],
        "vm_kib_after_spawn": after["VmSize"],
        "rss_per_actor_kib": round((after["VmRSS"] - before["VmRSS"]) / n, 2),
        "vm_per_actor_kib": round((after["VmSize"] - before["VmSize"]) / n, 1),
        "maps_per_actor": round((after["maps"] - before["maps"]) / n, 2),
    }


def measure_one(impl: str, n: int, stack_kib: int) -> dict[str, Any]:
    """One (implementation, N, stack) run, in this process; everything is stopped after."""
    if stack_kib:
        threading.stack_size(stack_kib * 1024)
    out: dict[str, Any] = {"impl": impl, "n": n, "stack_kib": stack_kib or "default"}
    with tempfile.TemporaryDirectory(prefix="phx-scale-") as tmp:
        if impl == "phalanx":
            with ActorSystem(name="scale", var_dir=tmp, sync=False) as system:
                sup = system.supervise(
                    "/orders",
                    "simple_one_for_one",
                    intensity=10,
                    period=5.0,
                    children=[ChildSpec("o", OrderSized, restart="transient")],
                )
                threads0 = threading.active_count()
                gc.collect()
                before = _status()
                refs, spawn = _spawn(lambda i: sup.start_child(i, child_id=f"o-{i}"), n)
                gc.collect()
                after = _status()
                out["threads_per_actor"] = round((threading.active_count() - threads0) / n, 3)
                out.update(spawn)
                out.update(_per_actor(before, after, n))
                out["tell_per_s"] = round(_tell_round_robin(refs))
                out["rss_after_tells_kib"] = _status()["VmRSS"]
                start = time.perf_counter()
                system.stop("/orders", timeout=240)
                out["stop_per_s"] = round(n / (time.perf_counter() - start))
                left = [p for p in system.paths() if p.startswith("/orders")]
                # The supervisor's own thread was counted in threads0 and is gone too.
                stray = _wait_threads(threads0 - 1, 30) - (threads0 - 1)
                out["left_after_stop"] = {"actors": len(left), "threads": stray}
        else:
            threads0 = threading.active_count()
            gc.collect()
            before = _status()
            refs, spawn = _spawn(RawOrderSized.start, n)
            gc.collect()
            after = _status()
            out["threads_per_actor"] = round((threading.active_count() - threads0) / n, 3)
            out.update(spawn)
            out.update(_per_actor(before, after, n))
            out["tell_per_s"] = round(_tell_round_robin(refs))
            out["rss_after_tells_kib"] = _status()["VmRSS"]
            start = time.perf_counter()
            for ref in refs:
                ref.stop()
            out["stop_per_s"] = round(n / (time.perf_counter() - start))
            stray = _wait_threads(threads0, 30) - threads0
            out["left_after_stop"] = {
                "actors": len(pykka.ActorRegistry.get_all()),
                "threads": stray,
            }
    return out


def _read_int(path: str) -> int | str | None:
    try:
        text = Path(path).read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else text


def _rlimit(which: int) -> int | str:
    soft = resource.getrlimit(which)[0]
    return "unlimited" if soft == resource.RLIM_INFINITY else soft


def limits() -> dict[str, Any]:
    """Every limit a thread per actor runs into, as this machine sets them."""
    stack = _rlimit(resource.RLIMIT_STACK)
    return {
        "ulimit_u_nproc": _rlimit(resource.RLIMIT_NPROC),
        "ulimit_v_address_space": _rlimit(resource.RLIMIT_AS),
        "ulimit_s_stack_kib": stack if isinstance(stack, str) else stack // 1024,
        "threading_stack_size": threading.stack_size(),  # 0: the default, ulimit -s
        "threads_max": _read_int("/proc/sys/kernel/threads-max"),
        "pid_max": _read_int("/proc/sys/kernel/pid_max"),
        "max_map_count": _read_int("/proc/sys/vm/max_map_count"),
        "cgroup_pids_max": _read_int("/sys/fs/cgroup/pids.max"),
        "cgroup_memory_max": _read_int("/sys/fs/cgroup/memory.max"),
        # /proc/loadavg's 4th field: runnable/existing scheduling entities (threads).
        "threads_existing_on_machine": int(
            Path("/proc/loadavg").read_text().split()[3].split("/")[1]
        ),
    }


def estimate(
    lim: dict[str, Any], big: dict[str, Any], small: dict[str, Any] | None
) -> dict[str, Any]:
    """The largest N in 4 GiB of RSS, capped by the thread limits (phalanx figures)."""
    per_actor = big["rss_per_actor_kib"] * 1024
    by_rss = int((4 * GIB - big["rss_kib_before"] * 1024) / per_actor)
    tpa = max(big["threads_per_actor"], 1e-9)
    free_pids = lim["pid_max"] - lim["threads_existing_on_machine"]
    caps = {
        "by_rss_4gib": by_rss,
        "by_pid_max": int(free_pids / tpa),
        "by_threads_max": int((lim["threads_max"] - lim["threads_existing_on_machine"]) / tpa),
        "by_max_map_count": int(lim["max_map_count"] / max(big["maps_per_actor"], 1e-9)),
    }
    if isinstance(lim["ulimit_u_nproc"], int):
        caps["by_ulimit_u"] = int(
            (lim["ulimit_u_nproc"] - lim["threads_existing_on_machine"]) / tpa
        )
    if isinstance(lim["cgroup_pids_max"], int):
        caps["by_cgroup_pids_max"] = int(lim["cgroup_pids_max"] / tpa)
    # If the 4 GiB were an address-space limit (ulimit -v 4G) rather than RSS:
    # every thread reserves its whole stack (plus a guard page) up front.
    caps_if_4gib_virtual = {"default_stack": int(4 * GIB / (big["vm_per_actor_kib"] * 1024))}
    if small is not None:
        caps_if_4gib_virtual[f"stack_{SMALL_STACK_KIB}_kib"] = int(
            4 * GIB / (small["vm_per_actor_kib"] * 1024)
        )
    binding = min(caps, key=lambda k: caps[k])
    return {
        "largest_n_in_4gib": caps[binding],
        "binding_limit": binding,
        "caps": caps,
        "caps_if_4gib_is_address_space": caps_if_4gib_virtual,
    }


def _child(impl: str, n: int, stack_kib: int, deadline: float) -> dict[str, Any]:
    left = deadline - time.monotonic()
    if left < 10:
        return {"impl": impl, "n": n, "error": "skipped: the bench's deadline is reached"}
    timeout = min(CHILD_TIMEOUT_S, left)
    cmd = [sys.executable, __file__, "--one", impl, str(n), str(stack_kib)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return {"impl": impl, "n": n, "error": f"timed out after {timeout:.0f} s"}
    if proc.returncode != 0:
        return {"impl": impl, "n": n, "error": proc.stderr[-1500:]}
    result: dict[str, Any] = json.loads(proc.stdout)
    return result


def _ratio(ph: dict[str, Any], raw: dict[str, Any], key: str) -> float | None:
    if key not in ph or key not in raw or not raw[key]:
        return None
    return round(ph[key] / raw[key], 3)


def _marginal(by_n: dict[str, Any], ns: tuple[int, ...]) -> float | None:
    """RSS added per actor between the two largest N (fixed costs cancel out)."""
    if len(ns) < 2:
        return None
    lo, hi = sorted(ns)[-2:]
    a, b = by_n[str(lo)]["phalanx"], by_n[str(hi)]["phalanx"]
    if "error" in a or "error" in b:
        return None
    grown = (b["rss_kib_after_spawn"] - b["rss_kib_before"]) - (
        a["rss_kib_after_spawn"] - a["rss_kib_before"]
    )
    return round(grown / (hi - lo), 2)


def main() -> dict[str, Any]:
    ns = tuple(int(x) for x in os.environ.get("PHALANX_BENCH_SCALE_NS", "").split(",") if x) or NS
    # run_all.py passes its timeout for this script: runs that would not fit are skipped.
    deadline = time.monotonic() + float(os.environ.get("PHALANX_BENCH_DEADLINE_S", "3600"))
    by_n: dict[str, Any] = {}
    for n in ns:
        raw = _child("raw_pykka", n, 0, deadline)
        ph = _child("phalanx", n, 0, deadline)
        ratios = {k: _ratio(ph, raw, k) for k in ("spawn_per_s", "tell_per_s", "stop_per_s")}
        ratios["rss_per_actor"] = _ratio(ph, raw, "rss_per_actor_kib")
        by_n[str(n)] = {"phalanx": ph, "baseline_raw_pykka": raw, "ratio_phalanx_vs_raw": ratios}
    done = [n for n in ns if "error" not in by_n[str(n)]["phalanx"]]
    # The stack size question, at the middle N (the largest costs twice the time):
    # its baseline is phalanx at the same N with the default stack, above.
    mid = sorted(done)[len(done) // 2] if done else max(ns)
    small_ph = _child("phalanx", mid, SMALL_STACK_KIB, deadline)
    lim = limits()
    out: dict[str, Any] = {
        "bench": "scale",
        "machine": machine(),
        "tells_per_n": TELLS,
        "by_n": by_n,
        "small_stack": {
            "stack_kib": SMALL_STACK_KIB,
            "n": mid,
            "phalanx": small_ph,
            "ratio_vs_default_stack": {
                k: _ratio(small_ph, by_n[str(mid)]["phalanx"], k)
                for k in ("spawn_per_s", "tell_per_s", "rss_per_actor_kib", "vm_per_actor_kib")
            },
        },
        "limits": lim,
        "load_average_1m": round(os.getloadavg()[0], 2),
    }
    if done:
        big = by_n[str(max(done))]["phalanx"]
        ok_small = small_ph if "error" not in small_ph else None
        out["estimate"] = estimate(lim, big, ok_small)
        out["estimate"]["from_n"] = max(done)
        out["estimate"]["rss_marginal_kib_per_actor"] = _marginal(by_n, tuple(done))
        first = by_n[str(min(done))]["phalanx"]
        out["degradation_smallest_to_largest_n"] = {
            k: round(big[k] / first[k], 3)
            for k in ("spawn_per_s", "tell_per_s", "stop_per_s", "rss_per_actor_kib")
        }
    return out


if __name__ == "__main__":
    if os.environ.get("PHALANX_BENCH_PIN", "1") != "0":
        os.sched_setaffinity(0, {0})  # as mailbox.py: GIL hand-offs across 2 cores swing 2x
    if len(sys.argv) == 5 and sys.argv[1] == "--one":
        print(json.dumps(measure_one(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))))
    else:
        print(json.dumps(main(), indent=2))
