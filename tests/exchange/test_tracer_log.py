"""The buffered tracer log: ordered, nothing lost at close or rotation, masked, call-time stamps."""

from __future__ import annotations

import gzip
import json
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from phalanx import trace_scope
from phalanx.runtime._logging import BUFFERED, LogManager

SECRET = "tracer-secret-0123456789"


def _lines(path: Path) -> list[dict[str, Any]]:
    data = path.read_bytes()
    text = (gzip.decompress(data) if path.suffix == ".gz" else data).decode()
    return [json.loads(line) for line in text.splitlines()]


def test_hot_path_taxonomies_are_buffered_and_order_and_audit_are_not() -> None:
    assert BUFFERED == ("tracer", "decision", "health")


def test_lines_from_many_threads_keep_their_order_and_none_is_lost_at_close(
    tmp_path: Path,
) -> None:
    logs = LogManager(tmp_path, buffer_interval_s=0.001)
    log = logs.logger("tracer")

    def write(t: int) -> None:
        for n in range(500):
            log.info("call", t=t, n=n)

    threads = [threading.Thread(target=write, args=(t,)) for t in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    logs.close()
    lines = _lines(tmp_path / "tracer.jsonl")
    assert len(lines) == 2000
    for t in range(4):
        assert [x["n"] for x in lines if x["t"] == t] == list(range(500))
    log.info("late")  # after close: dropped, never raised
    assert len(_lines(tmp_path / "tracer.jsonl")) == 2000


def test_flush_writes_queued_lines_and_rollover_keeps_earlier_lines_in_the_old_file(
    tmp_path: Path,
) -> None:
    with LogManager(tmp_path, buffer_interval_s=3600) as logs:  # only flush/rollover write
        log = logs.logger("tracer")
        log.info("first")
        logs.flush()
        assert [x["event"] for x in _lines(tmp_path / "tracer.jsonl")] == ["first"]
        log.info("second")
        logs.rollover_all()
        log.info("third")
    (rotated,) = tmp_path.glob("tracer.jsonl.*.gz")
    assert [x["event"] for x in _lines(rotated)] == ["first", "second"]
    assert [x["event"] for x in _lines(tmp_path / "tracer.jsonl")] == ["third"]


def test_trace_ids_exceptions_and_stamps_are_taken_on_the_calling_thread(tmp_path: Path) -> None:
    with LogManager(tmp_path, secrets=[SECRET], buffer_interval_s=3600) as logs:
        log = logs.logger("tracer")
        before = time.time()
        with trace_scope(session_id="s-1", order_req_id="r-1", path="/exchanges/x"):
            try:
                raise RuntimeError(f"GET /api/v3/account?timestamp=1&signature=abc {SECRET}")
            except RuntimeError:
                log.exception("exchange_call", endpoint="fetch_balance")
        after = time.time()
        log.info("outside")  # written later, on the writer thread, with no context
    call, outside = _lines(tmp_path / "tracer.jsonl")
    assert (call["session_id"], call["order_req_id"], call["actor"]) == (
        "s-1",
        "r-1",
        "/exchanges/x",
    )
    assert "session_id" not in outside
    assert "actor" not in outside
    error = call["exception"][0]
    assert error["exc_type"] == "RuntimeError"
    assert error["exc_value"] == "GET /api/v3/account?timestamp=1&signature=*** ***"
    stamp = datetime.fromisoformat(call["ts"].replace("Z", "+00:00")).timestamp()
    assert before - 1e-3 <= stamp <= after + 1e-3
    raw = (tmp_path / "tracer.jsonl").read_bytes()
    assert SECRET.encode() not in raw
    assert b"signature=abc" not in raw


def test_a_secret_registered_after_the_call_is_masked_before_the_write(tmp_path: Path) -> None:
    with LogManager(tmp_path, buffer_interval_s=3600) as logs:
        logs.logger("tracer").info("exchange_call", detail=f"key {SECRET}")
        logs.add_secret(SECRET)
    assert _lines(tmp_path / "tracer.jsonl")[0]["detail"] == "key ***"
