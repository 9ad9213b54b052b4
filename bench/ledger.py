"""Ledger postings per second, durable (sync=True), through the group-committing writer.

A "posting" here is one ``Ledger.post_fill``: one balanced transaction of 3
legs (asset, fee, cash) with its idempotency marker and 3 balance updates,
all in one LMDB write op. Each posting thread waits for its own durable
commit (``write_now``: flat combining), so throughput comes from concurrent
posters sharing one fsync. ``submit`` posts queue ops to the writer thread
and wait for the futures at the end (the pipelined ceiling).
Baseline in the same run: one LMDB write transaction (one fsync) per posting.
Target (issue 5): >= 20,000 postings/s durable.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import threading
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

from phalanx.storage import Fill, Ledger, Storage, Txn, plan_fill

T = TypeVar("T")

POSTINGS = 40_000
BASELINE = 1_000
THREADS = (1, 4, 16, 64)
MAP_SIZE = 512 * 2**20


def _fill(thread: int, i: int) -> Fill:
    return Fill(
        fill_id=f"paper:BTCUSDT:{thread}-{i}",
        side="buy" if i % 2 else "sell",
        base="BTC",
        quote="USDT",
        quantity=Decimal("0.001"),
        price=Decimal("43000.10"),
        fee=Decimal("0.043"),
        order_id=f"o-{thread}-{i}",
    )


def concurrent_rate(
    tmp: str, threads: int, sync: bool = True, storage: type[Storage] = Storage
) -> dict[str, Any]:
    where = Path(tmp) / f"{storage.__name__}-{threads}-{sync}"
    with storage(where, map_size=MAP_SIZE, sync=sync) as st:
        ledger = Ledger(st)
        per_thread = POSTINGS // threads
        fills = [[_fill(t, i) for i in range(per_thread)] for t in range(threads)]
        barrier = threading.Barrier(threads + 1)

        def post(mine: list[Fill]) -> None:
            barrier.wait()
            for f in mine:
                ledger.post_fill(f)

        workers = [threading.Thread(target=post, args=(fills[t],)) for t in range(threads)]
        for w in workers:
            w.start()
        barrier.wait()
        start = time.perf_counter()
        for w in workers:
            w.join()
        elapsed = time.perf_counter() - start
        stats = st.stats()
        assert ledger.trial_balance()["difference"] == 0
    n = per_thread * threads
    return {
        "postings_per_s": round(n / elapsed),
        "legs_per_s": round(3 * n / elapsed),
        "commits": stats["commits"],
        "postings_per_commit": round(n / max(1, stats["commits"]), 1),
    }


class _Pipelined(Storage):
    """Storage whose ``write_now`` queues to the writer thread and returns at once."""

    futures: list[Future[Any]]

    def write_now(self, op: Callable[[Txn], T], timeout: float | None = 30.0) -> T:
        self.futures.append(self.submit(op))
        return True  # type: ignore[return-value]  # Ledger.post: "posted"


class _LeaderFollower(Storage):
    """PROPOSAL for ``Storage.write_now`` (not in phalanx): leader/follower group commit.

    Today's ``write_now`` makes every waiter pass through ``_commit_lock`` one
    by one, even those whose op a previous combiner already committed; that
    convoy lets only a few new ops gather per fsync (measured 2-3 per commit
    with 16-64 posting threads). Here followers wait on a condition for their
    own future; one leader at a time drains everything pending and commits.
    """

    def __init__(self, path: Path, **kwargs: Any) -> None:
        super().__init__(path, **kwargs)
        self._cv = threading.Condition(threading.Lock())
        self._leading = False
        self._pending: list[tuple[Callable[[Txn], Any], Future[Any]]] = []

    def write_now(self, op: Callable[[Txn], T], timeout: float | None = 30.0) -> T:
        fut: Future[T] = Future()
        with self._cv:
            self._pending.append((op, fut))
            while self._leading and not fut.done():
                self._cv.wait()
            if fut.done():
                return fut.result()
            self._leading = True
        try:
            while not fut.done():
                with self._cv:
                    batch, self._pending = self._pending, []
                batch = [item for item in batch if item[1].set_running_or_notify_cancel()]
                with self._commit_lock:
                    self._commit_as(batch)
        finally:
            with self._cv:
                self._leading = False
                self._cv.notify_all()
        return fut.result(timeout)


def submit_rate(tmp: str) -> dict[str, Any]:
    """Pipelined: ops queued to the writer thread, futures awaited at the end."""
    st = _Pipelined(Path(tmp) / "submit", map_size=MAP_SIZE, sync=True)
    try:
        st.futures = []
        ledger = Ledger(st)
        fills = [_fill(0, i) for i in range(POSTINGS)]
        start = time.perf_counter()
        for f in fills:
            ledger.post_fill(f)
        for fut in st.futures:
            fut.result(120)
        elapsed = time.perf_counter() - start
        stats = st.stats()
    finally:
        st.close()
    return {
        "postings_per_s": round(POSTINGS / elapsed),
        "commits": stats["commits"],
        "postings_per_commit": round(POSTINGS / max(1, stats["commits"]), 1),
    }


class _Capture(Storage):
    """Storage whose ``write_now`` only keeps the op (to time ops apart from commits)."""

    ops: list[Callable[[Txn], Any]]

    def write_now(self, op: Callable[[Txn], T], timeout: float | None = 30.0) -> T:
        self.ops.append(op)
        return True  # type: ignore[return-value]


def _put_op(db: Any, key: bytes) -> Callable[[Txn], bool]:
    return lambda t: t.put(key, b"", db=db)


def cost_breakdown(tmp: str, n: int = 10_000) -> dict[str, float]:
    """CPU microseconds per posting, by part (thread CPU time: robust to a busy machine).

    Single thread, no fsync. Their sum bounds what one Python process can
    post per second whatever the batching (the GIL serialises the work).
    """
    fills = [_fill(9, i) for i in range(n)]
    start = time.thread_time()
    txns = [plan_fill(f) for f in fills]
    plan_us = (time.thread_time() - start) / n * 1e6
    st = _Capture(Path(tmp) / "capture", map_size=MAP_SIZE, sync=False)
    try:
        st.ops = []
        ledger = Ledger(st)
        start = time.thread_time()
        for txn in txns:
            ledger.post(txn)
        build_us = (time.thread_time() - start) / n * 1e6
        ops = st.ops

        def run_all(t: Txn) -> None:
            for op in ops:
                op(t)

        start = time.thread_time()
        Storage.write_now(st, run_all, 120)
        op_us = (time.thread_time() - start) / n * 1e6
        db = st.db("noop")
        start = time.thread_time()
        for i in range(n):
            Storage.write_now(st, _put_op(db, i.to_bytes(8, "big")))
        commit_us = (time.thread_time() - start) / n * 1e6
    finally:
        st.close()
    total = plan_us + build_us + op_us + commit_us
    return {
        "plan_fill_us": round(plan_us, 1),
        "post_prepare_us": round(build_us, 1),  # balanced() check, msgpack of the record
        "op_in_txn_us": round(op_us, 1),  # marker, record, 3 balance read-modify-writes
        "write_now_unsynced_commit_us": round(commit_us, 1),  # future, locks, txn, commit
        "total_cpu_us": round(total, 1),
        "cpu_ceiling_postings_per_s": round(1e6 / total),
    }


def baseline_one_txn_per_posting(tmp: str) -> float:
    """Same records, one write transaction (one fsync) per posting, no writer thread."""
    env = lmdb.open(str(Path(tmp) / "baseline"), map_size=MAP_SIZE, sync=True, max_dbs=4)
    txns, bals, marks = (env.open_db(n) for n in (b"ledger", b"ledger_balances", b"ledger_fills"))
    start = time.perf_counter()
    for i in range(BASELINE):
        f = _fill(0, i)
        key = f"fill:{f.fill_id}".encode()
        with env.begin(write=True) as t:
            if not t.put(key, b"1", db=marks, overwrite=False):
                continue
            legs = [["assets:BTC", "0.001"], ["expenses:fees:USDT", "0.043"], ["assets:USDT", "-1"]]
            t.put(key, msgpack.packb({"key": key, "postings": legs}), db=txns)
            for account, value in legs:
                raw = t.get(account.encode(), db=bals)
                old = Decimal(msgpack.unpackb(raw)[0]) if raw else Decimal(0)
                t.put(account.encode(), msgpack.packb([str(old + Decimal(value)), "0"]), db=bals)
    elapsed = time.perf_counter() - start
    env.close()
    return BASELINE / elapsed


def main() -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        costs = cost_breakdown(tmp)
        baseline = baseline_one_txn_per_posting(tmp)
        durable = {f"{n}_threads": concurrent_rate(tmp, n) for n in THREADS}
        proposal = {
            f"{n}_threads": concurrent_rate(tmp, n, storage=_LeaderFollower) for n in THREADS
        }
        no_sync = concurrent_rate(tmp, 16, sync=False)
        pipelined = submit_rate(tmp)
    best = max(v["postings_per_s"] for v in durable.values())
    return {
        "bench": "ledger",
        "machine": machine(),
        "postings": POSTINGS,
        "durable_write_now": durable,
        "durable_submit_pipelined": pipelined,
        "proposal_leader_follower_write_now": proposal,
        "sync_off_16_threads": no_sync,
        "cpu_cost_per_posting": costs,
        "load_average_1m": round(os.getloadavg()[0], 2),
        "baseline_one_txn_per_posting_per_s": round(baseline),
        "best_durable_postings_per_s": best,
        "ratio_vs_baseline": round(best / baseline, 1),
        "target_postings_per_s_min": 20_000,
    }


if __name__ == "__main__":
    print(json.dumps(main(), indent=2))
