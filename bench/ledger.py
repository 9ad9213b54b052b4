"""Ledger postings per second, durable (sync=True), through group commit.

A "posting" is one fill: one balanced transaction of 3 legs (asset, fee,
cash) with its idempotency marker and its balance updates, all in the same
LMDB write transaction as its marker. Every figure is a public path the
trading code uses, and every caller returns only after ITS commit is durable:

- ``durable_post_fill``: N threads each calling ``Ledger.post_fill`` (one
  fill per call); ``Storage.write_now`` group-commits concurrent callers
  (leader/follower), so they share fsyncs;
- ``durable_post_fills``: N threads each calling ``Ledger.post_fills`` with
  ``BATCH`` fills (one write op per call, one balance update per account),
  and ``SMALL_BATCH`` fills (about one order's fills);
- ``durable_actor_post_fills``: N clients asking ``/ledger`` (LedgerActor)
  ``PostFills`` of ``BATCH`` order fills (the actor-level group commit),
  and ``durable_actor_post_fill``: one ``PostFill`` ask per fill.

``cpu_us_per_posting`` is process CPU time over the run / postings.
Baseline in the same run: one LMDB write transaction (one fsync) per posting.
Target (issue 5): >= 20,000 postings/s durable.
"""

from __future__ import annotations

import gc
import json
import os
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
from _fills import run_threads as _run_threads

from phalanx import ActorSystem
from phalanx.actors._ledger_actor import (
    LEDGER,
    GetTrialBalance,
    PostFill,
    PostFills,
    start_ledger,
)
from phalanx.protocols.trading import OrderFill
from phalanx.storage import Ledger, Storage, Txn
from phalanx.storage._ledger import _fill_entry

T = TypeVar("T")

POSTINGS = 40_000
BASELINE = 1_000
THREADS = (1, 4, 16, 64)
BATCH = 100  # fills per post_fills call / PostFills message
BATCH_THREADS = (1, 4, 16)
SMALL_BATCH = 10  # a few fills per call, as one order's fills
SMALL_BATCH_THREADS = (16, 64)
ACTOR_CLIENTS = 8
MAP_SIZE = 512 * 2**20


def _figures(n: int, elapsed: float, cpu: float, commits: int) -> dict[str, Any]:
    return {
        "postings_per_s": round(n / elapsed),
        "legs_per_s": round(3 * n / elapsed),
        "commits": commits,
        "postings_per_commit": round(n / max(1, commits), 1),
        "cpu_us_per_posting": round(cpu / n * 1e6, 1),
    }


def concurrent_rate(
    tmp: str, threads: int, sync: bool = True, batch: int | None = None
) -> dict[str, Any]:
    """``threads`` threads post ``POSTINGS`` fills: ``post_fill`` each, or ``post_fills(batch)``."""
    where = Path(tmp) / f"ledger-{threads}-{sync}-{batch}"
    with Storage(where, map_size=MAP_SIZE, sync=sync) as st:
        ledger = Ledger(st)
        per_thread = POSTINGS // threads
        fills = [[_fill(t, i) for i in range(per_thread)] for t in range(threads)]

        def post(t: int) -> None:
            mine = fills[t]
            if batch is None:
                for f in mine:
                    ledger.post_fill(f)
            else:
                for i in range(0, len(mine), batch):
                    ledger.post_fills(mine[i : i + batch])

        elapsed, cpu = _run_threads(threads, post)
        stats = st.stats()
        assert ledger.trial_balance()["difference"] == 0
        assert len(ledger.balances()) == 3
    return _figures(per_thread * threads, elapsed, cpu, stats["commits"])


def _order_fill(client: int, i: int) -> OrderFill:
    return OrderFill(
        trade_id=f"{client}-{i}",
        order_req_id=f"s-{client}-{i}",
        exchange_order_id=f"x-{client}-{i}",
        symbol="BTC/USDT",
        side="buy" if i % 2 else "sell",
        price=Decimal("43000.10"),
        amount=Decimal("0.001"),
        fee=Decimal("0.043"),
        fee_currency="USDT",
    )


def actor_rate(tmp: str, clients: int, batch: int | None, postings: int) -> dict[str, Any]:
    """``clients`` threads ask ``/ledger``: ``PostFills`` of ``batch``, or one ``PostFill`` each."""
    var = Path(tmp) / f"actor-{clients}-{batch}"
    with ActorSystem(var_dir=var, sync=True, map_size=MAP_SIZE) as system:
        start_ledger(system)
        per_client = postings // clients
        fills = [[_order_fill(c, i) for i in range(per_client)] for c in range(clients)]
        before = system.storage.stats()["commits"]

        def ask(c: int) -> None:
            mine = fills[c]
            if batch is None:
                for f in mine:
                    assert system.ask(LEDGER, PostFill(fill=f), timeout=60) is True
            else:
                for i in range(0, len(mine), batch):
                    chunk = tuple(mine[i : i + batch])
                    assert all(system.ask(LEDGER, PostFills(fills=chunk), timeout=60))

        elapsed, cpu = _run_threads(clients, ask)
        commits = system.storage.stats()["commits"] - before
        assert system.ask(LEDGER, GetTrialBalance())["difference"] == 0
    return _figures(per_client * clients, elapsed, cpu, commits)


class _Pipelined(Storage):
    """Storage whose ``write_now`` queues to the writer thread and returns at once."""

    futures: list[Future[Any]]

    def write_now(self, op: Callable[[Txn], T], timeout: float | None = 30.0) -> T:
        self.futures.append(self.submit(op))
        return True  # type: ignore[return-value]  # Ledger.post: "posted"


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
    The cyclic GC is off while timing: the captured ops stay alive, and
    collecting them (which a real run never holds) would be timed instead.
    """
    fills = [_fill(9, i) for i in range(n)]
    gc.disable()
    st = _Capture(Path(tmp) / "capture", map_size=MAP_SIZE, sync=False)
    try:
        st.ops = []
        ledger = Ledger(st)
        start = time.thread_time()
        for f in fills:
            ledger.post_fill(f)
        prepare_us = (time.thread_time() - start) / n * 1e6
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
        batched = [_fill(8, i) for i in range(n)]
        start = time.thread_time()
        for i in range(0, n, BATCH):
            Storage.write_now(st, ledger._op([_fill_entry(f) for f in batched[i : i + BATCH]]))
        batch_us = (time.thread_time() - start) / n * 1e6
    finally:
        gc.enable()
        st.close()
    total = prepare_us + op_us + commit_us
    return {
        "post_fill_prepare_us": round(prepare_us, 1),  # checks, msgpack record, deltas
        "op_in_txn_us": round(op_us, 1),  # marker, record, balance updates (cached)
        "write_now_unsynced_commit_us": round(commit_us, 1),  # locks, txn, commit
        "post_fill_total_cpu_us": round(total, 1),
        "post_fill_cpu_ceiling_postings_per_s": round(1e6 / total),
        f"post_fills_{BATCH}_cpu_us": round(batch_us, 1),  # all of it, one commit per batch
        f"post_fills_{BATCH}_cpu_ceiling_postings_per_s": round(1e6 / batch_us),
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
        post_fill = {f"{n}_threads": concurrent_rate(tmp, n) for n in THREADS}
        post_fills = {f"{n}_threads": concurrent_rate(tmp, n, batch=BATCH) for n in BATCH_THREADS}
        small = {
            f"{n}_threads": concurrent_rate(tmp, n, batch=SMALL_BATCH) for n in SMALL_BATCH_THREADS
        }
        actor_batched = actor_rate(tmp, ACTOR_CLIENTS, BATCH, POSTINGS)
        actor_single = actor_rate(tmp, ACTOR_CLIENTS, None, POSTINGS // 10)
        no_sync = concurrent_rate(tmp, 16, sync=False)
        pipelined = submit_rate(tmp)
    best_single = max(v["postings_per_s"] for v in post_fill.values())
    best_batch = max(v["postings_per_s"] for v in [*post_fills.values(), *small.values()])
    best = max(best_single, best_batch, actor_batched["postings_per_s"])
    return {
        "bench": "ledger",
        "machine": machine(),
        "postings": POSTINGS,
        "batch": BATCH,
        "durable_post_fill": post_fill,
        "durable_post_fills": post_fills,
        f"durable_post_fills_batch_{SMALL_BATCH}": small,
        "durable_actor_post_fills": {f"{ACTOR_CLIENTS}_clients": actor_batched},
        "durable_actor_post_fill": {f"{ACTOR_CLIENTS}_clients": actor_single},
        "durable_submit_pipelined": pipelined,
        "sync_off_16_threads_post_fill": no_sync,
        "cpu_cost_per_posting": costs,
        "load_average_1m": round(os.getloadavg()[0], 2),
        "baseline_one_txn_per_posting_per_s": round(baseline),
        "best_durable_post_fill_per_s": best_single,
        "best_durable_post_fills_per_s": best_batch,
        "best_durable_postings_per_s": best,
        "ratio_vs_baseline": round(best / baseline, 1),
        "target_postings_per_s_min": 20_000,
    }


if __name__ == "__main__":
    print(json.dumps(main(), indent=2))
