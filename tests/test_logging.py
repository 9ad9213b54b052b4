"""Structured logs: JSON lines, trace ids, masking, rotation and retention."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from phalanx import Actor, ActorSystem, Retry, trace_scope
from phalanx.runtime._logging import TAXONOMIES, LogManager

API_KEY = "AKIA-super-secret-key-1234567890"
API_SECRET = "s3cr3t-value-abcdefghij"


@pytest.fixture
def logs(tmp_path: Path) -> Iterator[LogManager]:
    manager = LogManager(tmp_path / "logs", secrets=[API_SECRET], node="n1")
    yield manager
    manager.close()


def _lines(log_dir: Path, taxonomy: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (log_dir / f"{taxonomy}.jsonl").read_text().splitlines()]


def _all_bytes(log_dir: Path) -> bytes:
    out = b""
    for path in log_dir.iterdir():
        data = path.read_bytes()
        out += gzip.decompress(data) if path.suffix == ".gz" else data
    return out


def test_every_line_is_json_with_trace_ids_that_do_not_leak(logs: LogManager) -> None:
    for taxonomy in TAXONOMIES:
        with trace_scope(session_id="s-1", order_req_id="r-1", saga_id="g-1"):
            logs.logger(taxonomy).info("inside", n=1)
        logs.logger(taxonomy).info("outside", n=2)
    logs.close()
    for taxonomy in TAXONOMIES:
        inside, outside = _lines(logs.log_dir, taxonomy)
        assert inside["event"] == "inside"
        assert (inside["session_id"], inside["order_req_id"], inside["saga_id"]) == (
            "s-1",
            "r-1",
            "g-1",
        )
        assert inside["taxonomy"] == taxonomy
        assert inside["node"] == "n1"
        assert inside["level"] == "info"
        assert inside["ts"].endswith("Z") or "+00:00" in inside["ts"]
        assert "session_id" not in outside


def _fail_with_key_in_locals() -> None:
    api_key = API_KEY  # a local the traceback renderer must not show
    raise RuntimeError(f"auth failed for {api_key[:4]}")


def test_api_key_never_reaches_any_log_file(logs: LogManager) -> None:
    log = logs.logger("tracer")
    log.info("config", api_key=API_KEY, secret=API_SECRET)
    log.info(
        "nested", exchange={"options": {"apiKey": API_KEY}, "headers": [{"X-MBX-APIKEY": API_KEY}]}
    )
    log.info("registered secret in text", detail=f"using {API_SECRET} now")
    log.info("url", url=f"http://127.0.0.1/api/v3/order?symbol=X&signature={API_KEY}")
    try:
        _fail_with_key_in_locals()
    except RuntimeError:
        log.exception("call failed")
    logs.close()
    raw = _all_bytes(logs.log_dir)
    assert API_KEY.encode() not in raw
    assert API_SECRET.encode() not in raw
    lines = _lines(logs.log_dir, "tracer")
    assert lines[0]["api_key"] == "***"
    assert "signature=***" in lines[3]["url"]
    assert "exception" in lines[4]
    assert "RuntimeError" in json.dumps(lines[4]["exception"])


def test_key_in_actor_handler_locals_and_config_never_logged(tmp_path: Path) -> None:
    class Leaky(Actor):
        def on_receive(self, message: Any) -> Any:
            api_key = API_KEY  # noqa: F841 - must not be rendered
            raise ValueError("boom")

    with ActorSystem(var_dir=tmp_path, sync=False, secrets=(API_KEY,)) as system:
        system.spawn(Leaky, "/leaky", retry=Retry(max_attempts=1, base=0.0, jitter=0.0))
        system.logs.logger("audit").info("config_loaded", exchange={"api_key": API_KEY})
        system.tell("/leaky", "go")
        with pytest.raises(ValueError, match="boom"):
            system.ask("/leaky", "go", timeout=5)
    health = (tmp_path / "logs" / "health.jsonl").read_text()
    assert '"actor_failure"' in health
    assert "ValueError" in health
    assert API_KEY.encode() not in _all_bytes(tmp_path / "logs")


def test_unknown_taxonomy_is_refused(logs: LogManager) -> None:
    with pytest.raises(ValueError, match="unknown log taxonomy"):
        logs.logger("gossip")
    with pytest.raises(ValueError, match="unknown log taxonomies"):
        LogManager(logs.log_dir, retention_days={"gossip": 1})


def test_rollover_gzips_and_retention_keeps_the_newest(tmp_path: Path) -> None:
    manager = LogManager(tmp_path / "logs", retention_days={"order": 2}, default_retention_days=5)
    try:
        log_dir = manager.log_dir
        # Older rotated files, as earlier days would have left them.
        for day in ("2026-01-01", "2026-01-02", "2026-01-03"):
            with gzip.open(log_dir / f"order.jsonl.{day}.gz", "wb") as f:
                f.write(b'{"event": "old"}\n')
        manager.logger("order").info("before_rollover")
        manager.rollover_all()
        manager.logger("order").info("after_rollover")
    finally:
        manager.close()
    rotated = sorted(p.name for p in log_dir.glob("order.jsonl.*.gz"))
    assert len(rotated) == 2, rotated  # per-taxonomy retention: 2 files
    newest = max(log_dir.glob("order.jsonl.*.gz"), key=lambda p: p.stat().st_mtime)
    assert b"before_rollover" in gzip.decompress(newest.read_bytes())
    assert [line["event"] for line in _lines(log_dir, "order")] == ["after_rollover"]
    assert manager.handlers["decision"].backupCount == 5


def test_two_managers_write_to_their_own_dirs(tmp_path: Path) -> None:
    a, b = LogManager(tmp_path / "a", node="a"), LogManager(tmp_path / "b", node="b")
    try:
        a.logger("health").info("from_a")
        b.logger("health").info("from_b")
    finally:
        a.close()
        b.close()
    assert [line["event"] for line in _lines(tmp_path / "a", "health")] == ["from_a"]
    assert [line["event"] for line in _lines(tmp_path / "b", "health")] == ["from_b"]
