"""Durable ledger postings per second through ``Storage.write_now`` group commit.

A posting is one ``Ledger.post_fill``: a balanced 3-leg transaction, its
idempotency marker and 3 balance updates, in one write op; each posting
thread waits for its own durable commit (``sync=True``: an fsync per commit).
Figures, each the median of ``RUNS`` runs in this process:

- ``leader_follower``: today's ``write_now`` (one leader commits everything
  pending, followers sleep until their op is resolved);
- ``flat_combining``: the previous ``write_now`` (every waiter takes the
  commit lock in turn), kept here as the same-run comparison;
- ``baseline_one_txn_per_posting_per_s``: the same records, one LMDB write
  transaction (one fsync) per posting, no phalanx in the way.

``postings_per_commit`` is the stable part on a shared machine: throughput is
bound by fsync latency, which another tenant's I/O changes from run to run.
``process_cpu_us_per_posting`` is the CPU time of the whole process per
posting (all threads: the GIL serialises most of it, so 1e6 / it bounds the
rate); ``cpu_us_per_posting`` breaks one posting down, on one thread.
Target (issue 5): >= 20,000 postings/s durable.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import Future
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

import lmdb
import msgpack

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _common import machine
from _fills import bench_fill as _fill
from _fills import run_threads

from phalanx.storage import Ledger, Storage, Txn, plan_fill

T = TypeVar("T")

RUNS = int(os.environ.get("PHALANX_BENCH_RUNS", "3"))
POSTINGS = 24_000  # per leader/follower run
OLD_POSTINGS = 6_000  # per flat-combining run (a few k/s at best: keep it short)
BASELINE = 1_000
THREADS = (1, 8, 32)
MAP_SIZE = 256 * 2**20


class _FlatCombining(Storage):
    """The previous ``write_now``: each waiter passes the commit lock in turn."""

    def write_now(self, op: Callable[[Txn], T], timeout: float | None = 30.0) -> T:
        fut: Future[T] = Future()
        with self._submit_lock:
            self._direct.append((op, fut))
        with self._commit_lock:
            if not fut.done():
                with self._submit_lock:
                    pending, self._direct = self._direct, []
                batch = [item for item in pending if item[1].set_running_or_notify_cancel()]
                self._commit_as(batch, own=fut)
        return fut.result(timeout)


def _run(where: Path, threads: int, total: int, storage: type[Storage]) -> dict[str, float]:
    with storage(where, map_size=MAP_SIZE, sync=True) as st:
        ledger = Ledger(st)
        per_thread = total // threads
        fills = [[_fill(t, i) for i in range(per_thread)] for t in range(threads)]
        before = st.stats()["commits"]

        def post(t: int) -> None:
            for f in fills[t]:
                ledger.post_fill(f)

        elapsed, cpu = run_threads(threads, post)
        commits = st.stats()["commits"] - before
        trial = ledger.trial_balance()
        assert trial["difference"] == 0
        assert len(ledger.balances()) == 3
    n = per_thread * threads
    return {
        "postings_per_s": n / elapsed,
        "postings_per_commit": n / max(1, commits),
        "cpu_us_per_posting": cpu / n * 1e6,
    }


def _summary(runs: list[dict[str, float]]) -> dict[str, Any]:
    return {
        "postings_per_s": round(statistics.median(r["postings_per_s"] for r in runs)),
        "runs_postings_per_s": sorted(round(r["postings_per_s"]) for r in runs),
        "postings_per_commit": round(statistics.median(r["postings_per_commit"] for r in runs), 1),
        "process_cpu_us_per_posting": round(
            statistics.median(r["cpu_us_per_posting"] for r in runs), 1
        ),
    }


def baseline_one_txn_per_posting(where: Path) -> float:
    """The same records, one write transaction (one fsync) per posting, raw lmdb.

    ``where`` must be new: replayed fills write nothing, and an empty txn is not synced.
    """
    env = lmdb.open(str(where), map_size=MAP_SIZE, sync=True, max_dbs=4)
    txns, bals, marks = (env.open_db(n) for n in (b"ledger", b"ledger_balances", b"ledger_fills"))
    start = time.perf_counter()
    for i in range(BASELINE):
        txn = plan_fill(_fill(0, i))
        key = txn.key.encode()
        with env.begin(write=True) as t:
            if not t.put(key, b"1", db=marks, overwrite=False):
                continue
            legs = [[p.account, p.side, str(p.value), str(p.quantity)] for p in txn.postings]
            t.put(key, msgpack.packb({"key": txn.key, "postings": legs}), db=txns)
            for p in txn.postings:
                name = p.account.encode()
                raw = t.get(name, db=bals)
                old = [Decimal(x) for x in msgpack.unpackb(raw)] if raw else [Decimal(0)] * 2
                signed = p.value if p.side == "debit" else -p.value
                new = [str(old[0] + signed), str(old[1] + p.quantity)]
                t.put(name, msgpack.packb(new), db=bals)
    elapsed = time.perf_counter() - start
    env.close()
    return BASELINE / elapsed


def cpu_us_per_posting(tmp: str, n: int = 10_000) -> dict[str, float]:
    """Thread CPU microseconds per posting, one thread (robust to a busy machine).

    ``plan_fill``: the pure planning; ``post_prepare``: ``Ledger.post_fill``
    up to ``write_now`` (checks, packing); ``op_in_txn``: the op inside a
    shared write txn (marker, record, 3 balance updates), as in a group
    commit; ``write_now_commit``: a no-op ``write_now`` alone, unsynced (the
    per-call path plus a txn; amortised over the batch in a group commit).
    """
    fills = [_fill(7, i) for i in range(n)]
    start = time.thread_time()
    for f in fills:
        plan_fill(f)
    plan = (time.thread_time() - start) / n * 1e6
    with Storage(Path(tmp) / "cpu", map_size=MAP_SIZE, sync=False) as st:
        ledger = Ledger(st)
        ops: list[Callable[[Txn], Any]] = []
        setattr(st, "write_now", lambda op, timeout=None: True)  # noqa: B010  # drop the op
        start = time.thread_time()
        for f in fills:
            ledger.post_fill(f)
        prepare = (time.thread_time() - start) / n * 1e6 - plan

        def capture(op: Callable[[Txn], Any], timeout: float | None = None) -> bool:
            ops.append(op)
            return True

        setattr(st, "write_now", capture)  # noqa: B010
        for f in [_fill(8, i) for i in range(n)]:
            ledger.post_fill(f)
        del st.write_now

        def run_all(t: Txn) -> None:
            for op in ops:
                op(t)

        start = time.thread_time()
        st.write_now(run_all, 120)
        in_txn = (time.thread_time() - start) / n * 1e6
        start = time.thread_time()
        for _ in range(n):
            st.write_now(lambda t: None)
        commit = (time.thread_time() - start) / n * 1e6
    return {
        "plan_fill": round(plan, 1),
        "post_prepare": round(prepare, 1),
        "op_in_txn": round(in_txn, 1),
        "write_now_commit": round(commit, 1),
        "per_posting_in_a_group": round(plan + prepare + in_txn, 1),
    }


def main() -> dict[str, Any]:
    # Runs are interleaved (baseline, then each thread count with both
    # write_now variants), so that a change of fsync latency on the shared
    # disk hits every figure of a run alike.
    new: dict[int, list[dict[str, float]]] = {n: [] for n in THREADS}
    old: dict[int, list[dict[str, float]]] = {n: [] for n in THREADS}
    baselines = []
    with tempfile.TemporaryDirectory() as tmp:
        cpu = cpu_us_per_posting(tmp)
        for r in range(RUNS):
            baselines.append(baseline_one_txn_per_posting(Path(tmp) / f"baseline-{r}"))
            for n in THREADS:
                new[n].append(_run(Path(tmp) / f"lf-{n}-{r}", n, POSTINGS, Storage))
                old[n].append(_run(Path(tmp) / f"fc-{n}-{r}", n, OLD_POSTINGS, _FlatCombining))
    baseline = statistics.median(baselines)
    leader_follower = {f"{n}_threads": _summary(new[n]) for n in THREADS}
    best = max(v["postings_per_s"] for v in leader_follower.values())
    return {
        "bench": "storage_commit",
        "machine": machine(),
        "runs": RUNS,
        "load_average_1m": round(os.getloadavg()[0], 2),
        "leader_follower": leader_follower,
        "flat_combining": {f"{n}_threads": _summary(old[n]) for n in THREADS},
        "baseline_one_txn_per_posting_per_s": round(baseline),
        "runs_baseline_per_s": sorted(round(b) for b in baselines),
        "best_postings_per_s": best,
        "ratio_best_vs_baseline": round(best / baseline, 1),
        "cpu_us_per_posting": cpu,
        "target_postings_per_s_min": 20_000,
    }


if __name__ == "__main__":
    print(json.dumps(main(), indent=2))
