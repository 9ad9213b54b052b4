"""Shared by the ledger benches (ledger.py, storage_commit.py): the fill and the thread rig."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from decimal import Decimal

from phalanx.storage import Fill


def bench_fill(thread: int, i: int) -> Fill:
    """A distinct 0.001 BTC fill (``thread``, ``i``), buys and sells alternating."""
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


def run_threads(threads: int, work: Callable[[int], None]) -> tuple[float, float]:
    """Run ``work(thread)`` in ``threads`` threads at once: (wall s, process CPU s)."""
    barrier = threading.Barrier(threads + 1)

    def run(t: int) -> None:
        barrier.wait()
        work(t)

    workers = [threading.Thread(target=run, args=(t,)) for t in range(threads)]
    for w in workers:
        w.start()
    barrier.wait()
    start, cpu = time.perf_counter(), time.process_time()
    for w in workers:
        w.join()
    return time.perf_counter() - start, time.process_time() - cpu
