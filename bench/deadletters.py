"""Overflow spill rate into the LMDB dead-letter store, and durable-mailbox throughput.

Baselines in the same run: one LMDB write transaction per message (sync on),
and the non-durable tell throughput of the same actor.
Targets (issue 2): >= 100,000 dead letters/s with group commit, sync on;
durable mailbox >= 50,000 msgs/s.
"""

from __future__ import annotations

import json
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import lmdb
import msgpack

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _common import machine

from phalanx import Actor, ActorSystem, Mailbox

# Durable figures: "tell" waits for its own commit (the contract), so one
# sender is bound by commit latency; group commit pays off with concurrent
# senders, and tell_many journals a whole batch in one commit.
SPILL = 100_000
DURABLE = 50_000
BASELINE_TXNS = 2_000


class Blocked(Actor):
    """Holds its one handler slot until released, so every later tell overflows."""

    def __init__(self, gate: threading.Event) -> None:
        super().__init__()
        self.gate = gate

    def on_receive(self, message: Any) -> Any:
        self.gate.wait(120)
        return None


class Sink(Actor):
    def on_start(self) -> None:
        self.n = 0

    def on_receive(self, message: Any) -> Any:
        if message == "get":
            return self.n
        self.n += 1
        return None


def spill_rate(tmp: str) -> dict[str, Any]:
    gate = threading.Event()
    with ActorSystem(var_dir=Path(tmp) / "spill", sync=True, map_size=256 * 2**20) as system:
        system.spawn(Blocked, "/blocked", gate, mailbox=Mailbox(capacity=1))
        system.tell("/blocked", "hold")
        system.tell("/blocked", "fill")
        payload = {"symbol": "BTC/USDT", "side": "buy", "qty": "0.001", "px": "43000.1"}
        start = time.perf_counter()
        for i in range(SPILL):
            system.tell("/blocked", {**payload, "seq": i})
        system.storage.flush()
        elapsed = time.perf_counter() - start
        gate.set()
        depth = system.dead_letters.stats()["depth"]
    return {"dead_letters": SPILL, "stored": depth, "per_s": round(SPILL / elapsed)}


def one_txn_per_message(tmp: str) -> float:
    env = lmdb.open(str(Path(tmp) / "baseline"), map_size=64 * 2**20, sync=True, max_dbs=4)
    db = env.open_db(b"deadletters")
    record = msgpack.packb({"reason": "mailbox_overflow", "payload": b"x" * 120, "n": 0})
    start = time.perf_counter()
    for i in range(BASELINE_TXNS):
        with env.begin(write=True, db=db) as txn:
            txn.put(i.to_bytes(8, "big"), record)
    elapsed = time.perf_counter() - start
    env.close()
    return BASELINE_TXNS / elapsed


def durable_rate(tmp: str, senders: int, durable: bool, sync: bool, batch: int = 1) -> float:
    name = f"durable-{senders}-{durable}-{sync}-{batch}"
    with ActorSystem(var_dir=Path(tmp) / name, sync=sync, map_size=256 * 2**20) as system:
        ref = system.spawn(Sink, "/sink", mailbox=Mailbox(capacity=DURABLE + 10, durable=durable))
        per_sender = DURABLE // senders

        def send() -> None:
            if batch == 1:
                for i in range(per_sender):
                    ref.tell(i)
            else:
                for start in range(0, per_sender, batch):
                    ref.tell_many(range(start, min(start + batch, per_sender)))

        threads = [threading.Thread(target=send) for _ in range(senders)]
        start = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        handled = ref.ask("get", timeout=120)
        elapsed = time.perf_counter() - start
        assert handled == per_sender * senders
    return per_sender * senders / elapsed


def main() -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        spill = spill_rate(tmp)
        baseline = one_txn_per_message(tmp)
        durable = {
            f"{s}_senders_sync_{'on' if sync else 'off'}": round(durable_rate(tmp, s, True, sync))
            for s in (1, 8)
            for sync in (True, False)
        }
        for sync in (True, False):
            label = f"1_sender_tell_many_100_sync_{'on' if sync else 'off'}"
            durable[label] = round(durable_rate(tmp, 1, True, sync, batch=100))
        plain = durable_rate(tmp, 1, False, False)
    best_durable = max(durable.values())
    return {
        "bench": "deadletters",
        "machine": machine(),
        "overflow_spill": {
            **spill,
            "baseline_one_txn_per_message_per_s": round(baseline),
            "ratio_vs_baseline": round(spill["per_s"] / baseline, 1),
            "target_per_s_min": 100_000,
        },
        "durable_mailbox": {
            "messages": DURABLE,
            "msgs_per_s": durable,
            "baseline_non_durable_msgs_per_s": round(plain),
            "baseline_one_txn_per_message_per_s": round(baseline),
            "best_ratio_vs_non_durable": round(best_durable / plain, 3),
            "target_msgs_per_s_min": 50_000,
        },
    }


if __name__ == "__main__":
    print(json.dumps(main(), indent=2))
