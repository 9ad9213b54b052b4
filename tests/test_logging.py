"""Structured logs: JSON lines, trace ids, masking, rotation, retention, isolation."""

from __future__ import annotations

import gzip
import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from enum import Enum
from pathlib import Path
from typing import Any

import pytest
import structlog

from phalanx import Actor, ActorSystem, Retry, trace_scope
from phalanx.runtime._log_masking import mask_secrets
from phalanx.runtime._logging import TAXONOMIES, LogManager

API_KEY = "AKIA-super-secret-key-1234567890"
API_SECRET = "s3cr3t-value-abcdefghij"
LATE_SECRET = "late-registered-9f8e7d"


@pytest.fixture
def logs(tmp_path: Path) -> Iterator[LogManager]:
    manager = LogManager(tmp_path / "logs", secrets=[API_SECRET], node="n1")
    yield manager
    manager.close()


def _strict_json(line: str) -> dict[str, Any]:
    def refuse(name: str) -> Any:
        raise ValueError(f"not JSON: {name}")

    obj = json.loads(line, parse_constant=refuse)  # NaN/Infinity are not JSON
    assert isinstance(obj, dict)
    return obj


def _lines(log_dir: Path, taxonomy: str) -> list[dict[str, Any]]:
    text = (log_dir / f"{taxonomy}.jsonl").read_text(encoding="utf-8")
    return [_strict_json(line) for line in text.splitlines()]


def _all_bytes(log_dir: Path) -> bytes:
    """Every file under log_dir, gzip members decompressed (raw bytes otherwise)."""
    out = b""
    for path in sorted(log_dir.rglob("*")):
        data = path.read_bytes()
        out += (gzip.decompress(data) if path.suffix == ".gz" else data) + b"\n"
    return out


def test_every_line_is_json_with_trace_ids_that_do_not_leak(logs: LogManager) -> None:
    for taxonomy in TAXONOMIES:
        log = logs.logger(taxonomy)
        with trace_scope(session_id="s-1", order_req_id="r-1", path="/orders/o-1"):
            with trace_scope(saga_id="g-1"):
                log.info("inside", n=1)
            log.warning("explicit", order_req_id="mine")
        log.info("outside", n=2)
    logs.close()
    for taxonomy in TAXONOMIES:
        inside, explicit, outside = _lines(logs.log_dir, taxonomy)
        assert inside["event"] == "inside"
        ids = ("session_id", "order_req_id", "saga_id", "actor")
        assert [inside[k] for k in ids] == ["s-1", "r-1", "g-1", "/orders/o-1"]
        assert (inside["taxonomy"], inside["node"], inside["level"]) == (taxonomy, "n1", "info")
        stamp = datetime.fromisoformat(inside["ts"])
        assert inside["ts"].endswith("Z")
        assert stamp.utcoffset() == UTC.utcoffset(None)
        assert abs((datetime.now(UTC) - stamp).total_seconds()) < 60
        # A field the call sets itself wins; the inner scope's id is gone again.
        assert (explicit["order_req_id"], explicit["session_id"]) == ("mine", "s-1")
        assert explicit["level"] == "warning"
        assert "saga_id" not in explicit
        assert not {"session_id", "order_req_id", "saga_id", "actor"} & outside.keys()


def _fail_with_key_in_locals() -> None:
    api_key = API_KEY  # a local the traceback renderer must not show
    raise RuntimeError(f"auth failed for {api_key[:4]}; GET /api/v3/account?signature=abc")


def _fail_with_secret_in_message() -> None:
    raise PermissionError(f"venue rejected {API_SECRET}")


class _Creds:
    def __repr__(self) -> str:
        return f"Creds(key={API_SECRET!r})"


def test_api_key_never_reaches_any_log_file(logs: LogManager) -> None:
    log = logs.logger("tracer")
    log.info("config", api_key=API_KEY, secret=API_SECRET, apiKey=API_KEY)
    log.info(
        "nested",
        exchange={"options": {"apiKey": API_KEY}, "headers": [{"X-MBX-APIKEY": API_KEY}]},
        accounts={API_SECRET: "main"},  # a secret as a key of nested data
    )
    log.info(f"registered secret {API_SECRET} in the message", detail=f"using {API_SECRET}")
    log.info("url", url="http://127.0.0.1/api/v3/order?symbol=X&timestamp=1&signature=abc")
    log.info("header text", raw=f"{{'X-MBX-APIKEY': '{API_KEY}', 'Accept': 'json'}}")
    log.info("object repr", creds=_Creds())
    try:
        _fail_with_key_in_locals()
    except RuntimeError:
        log.exception("call failed")
    try:
        _fail_with_secret_in_message()
    except PermissionError as exc:
        log.error("rejected", exc_info=exc)
    logs.add_secret(LATE_SECRET)
    logs.logger("audit").info(f"rotated to {LATE_SECRET}")
    logs.rollover_all()  # the rotated .gz files are checked too
    log.info("after rollover", password=API_SECRET)
    logs.close()

    raw = _all_bytes(logs.log_dir)
    for leaked in (API_KEY, API_SECRET, LATE_SECRET, "signature=abc"):
        assert leaked.encode() not in raw, leaked
    assert b'"event": "after rollover"' in raw
    lines = [_strict_json(x) for x in raw.decode().splitlines() if x.startswith("{")]
    by_event = {line["event"]: line for line in lines}
    assert by_event["config"]["api_key"] == by_event["config"]["apiKey"] == "***"
    assert by_event["nested"]["exchange"]["headers"] == [{"X-MBX-APIKEY": "***"}]
    assert by_event["nested"]["accounts"] == {"***": "main"}
    assert by_event["registered secret *** in the message"]["detail"] == "using ***"
    assert by_event["url"]["url"].endswith("&signature=***")
    failed = by_event["call failed"]["exception"][0]
    assert failed["exc_type"] == "RuntimeError"
    assert failed["exc_value"].endswith("signature=***")
    assert all(frame.get("locals") is None for frame in failed["frames"])
    assert by_event["rejected"]["exception"][0]["exc_value"] == "venue rejected ***"
    assert by_event["rotated to ***"]["taxonomy"] == "audit"


def test_mask_secrets_is_a_reusable_processor() -> None:
    event = {"event": "req", "headers": {"X-MBX-APIKEY": "k"}, "url": "/x?apiKey=k&a=1"}
    masked = mask_secrets(None, "info", event, secrets=("hunter22",))
    assert masked["headers"] == {"X-MBX-APIKEY": "***"}
    assert masked["url"] == "/x?apiKey=***&a=1"
    assert mask_secrets(None, "info", {"msg": "pw hunter22"}, secrets=("hunter22",)) == {
        "msg": "pw ***"
    }


class _Side(Enum):
    BUY = "buy"


def test_values_json_cannot_hold_still_make_valid_lines(logs: LogManager) -> None:
    log = logs.logger("decision")
    log.info(
        "odd values",
        nan=float("nan"),
        inf=float("-inf"),
        px=Decimal("1.50"),
        at=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
        side=_Side.BUY,
        tags={"a"},
        pair=(1, 2),
        raw=b"\x00",
        keyed={1: "one"},
    )
    logs.close()
    (line,) = _lines(logs.log_dir, "decision")
    assert (line["nan"], line["inf"], line["px"], line["side"]) == ("nan", "-inf", "1.50", "buy")
    assert line["at"] == "2026-01-02T03:04:05+00:00"
    assert (line["tags"], line["pair"], line["keyed"]) == (["a"], [1, 2], {"1": "one"})


def _key_in_locals_handler() -> None:
    api_key = API_KEY  # must not be rendered
    raise ValueError(f"boom {len(api_key)}")


def test_key_in_actor_handler_locals_and_config_never_logged(tmp_path: Path) -> None:
    class Leaky(Actor):
        def on_receive(self, message: Any) -> Any:
            _key_in_locals_handler()

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


def test_unknown_taxonomy_and_bad_retention_are_refused(logs: LogManager) -> None:
    with pytest.raises(ValueError, match=r"unknown log taxonomy 'gossip'; valid: decision, order"):
        logs.logger("gossip")
    with pytest.raises(ValueError, match="unknown log taxonomies"):
        LogManager(logs.log_dir, retention_days={"gossip": 1})
    with pytest.raises(ValueError, match="at least 1 day"):
        LogManager(logs.log_dir, retention_days={"order": 0})


def test_rollover_gzips_and_retention_is_per_taxonomy(tmp_path: Path) -> None:
    log_dir = tmp_path / "logs"
    log_dir.mkdir()
    # Rotated files that earlier days would have left behind.
    for taxonomy, days in (("order", 3), ("decision", 6)):
        for day in range(1, days + 1):
            with gzip.open(log_dir / f"{taxonomy}.jsonl.2026-01-0{day}.gz", "wb") as f:
                f.write(b'{"event": "old"}\n')
    with LogManager(log_dir, retention_days={"order": 2}, default_retention_days=5) as manager:
        assert manager.handlers["order"].backupCount == 2
        assert manager.handlers["decision"].backupCount == 5
        manager.logger("order").info("first_part")
        manager.logger("decision").info("decided")
        manager.rollover_all()
        manager.logger("order").info("second_part")
        manager.rollover_all()  # same UTC day again: must not replace the first file
        manager.logger("order").info("current")

    today = f"{datetime.now(UTC):%Y-%m-%d}"
    order = sorted(p.name for p in log_dir.glob("order.jsonl.*.gz"))
    # Retention 2: only the two newest rotated files remain, the seeded ones are gone.
    assert order == [f"order.jsonl.{today}.1.gz", f"order.jsonl.{today}.gz"]
    first = gzip.decompress((log_dir / f"order.jsonl.{today}.gz").read_bytes()).decode()
    second = gzip.decompress((log_dir / f"order.jsonl.{today}.1.gz").read_bytes()).decode()
    assert [_strict_json(x)["event"] for x in first.splitlines()] == ["first_part"]
    assert [_strict_json(x)["event"] for x in second.splitlines()] == ["second_part"]
    assert [line["event"] for line in _lines(log_dir, "order")] == ["current"]
    # Default retention 5 for decision: the two oldest seeded days were deleted.
    decision = sorted(p.name for p in log_dir.glob("decision.jsonl.*.gz"))
    assert decision[:4] == [f"decision.jsonl.2026-01-0{d}.gz" for d in (3, 4, 5, 6)]
    assert len(decision) == 5
    assert not list(log_dir.glob("*.part"))


def test_concurrent_writers_and_rollover_lose_no_line(logs: LogManager) -> None:
    log = logs.logger("order")
    threads = [
        threading.Thread(target=lambda i=i: [log.info("w", t=i, n=n) for n in range(300)])
        for i in range(4)
    ]
    for thread in threads:
        thread.start()
    for _ in range(3):
        logs.rollover_all()
    for thread in threads:
        thread.join()
    logs.close()
    lines = [_strict_json(x) for x in _all_bytes(logs.log_dir).decode().splitlines() if x]
    seen = sorted((line["t"], line["n"]) for line in lines if line["event"] == "w")
    assert seen == [(i, n) for i in range(4) for n in range(300)]


def test_two_managers_write_to_their_own_dirs(tmp_path: Path) -> None:
    configured = structlog.is_configured()
    a, b = LogManager(tmp_path / "a", node="a"), LogManager(tmp_path / "b", node="b")
    try:
        a.logger("health").info("from_a")
        b.logger("health").info("from_b")
    finally:
        a.close()
        b.close()
    assert [(x["event"], x["node"]) for x in _lines(tmp_path / "a", "health")] == [("from_a", "a")]
    assert [(x["event"], x["node"]) for x in _lines(tmp_path / "b", "health")] == [("from_b", "b")]
    assert structlog.is_configured() == configured  # no global structlog configuration


def test_close_is_idempotent_and_later_lines_are_dropped(logs: LogManager) -> None:
    logs.logger("audit").info("kept")
    logs.close()
    logs.close()
    assert logs.closed
    logs.logger("audit").info("dropped")  # must not raise after close
    logs.rollover_all()  # nor reopen files
    assert [line["event"] for line in _lines(logs.log_dir, "audit")] == ["kept"]
    assert not list(logs.log_dir.glob("*.gz"))


class _BrokenStream:
    def write(self, text: str) -> int:
        raise OSError(28, "No space left on device")

    def flush(self) -> None:
        raise OSError(28, "No space left on device")


def test_a_write_error_is_reported_once_and_never_raised(
    logs: LogManager, capsys: pytest.CaptureFixture[str]
) -> None:
    handler = logs.handlers["order"]  # written in the call, so the error is too
    real = handler.stream
    handler.stream = _BrokenStream()  # type: ignore[assignment]
    try:
        logs.logger("order").info("lost 1")
        logs.logger("order").info("lost 2")
    finally:
        handler.stream = real
    logs.logger("order").info("recovered")
    logs.close()
    assert capsys.readouterr().err.count("cannot write") == 1
    assert [line["event"] for line in _lines(logs.log_dir, "order")] == ["recovered"]


def test_a_buffered_line_keeps_nested_values_as_they_were_at_the_call(tmp_path: Path) -> None:
    logs = LogManager(tmp_path, secrets=["s3cr3t-value"], buffer_interval_s=3600)
    checks = [{"name": "max_exposure", "ok": True, "key": "s3cr3t-value"}]
    logs.logger("decision").info("risk_limits_eval", checks=checks)
    checks[0]["ok"] = False  # mutated after the call, before the writer renders
    checks.append({"name": "late"})
    logs.close()
    [line] = _lines(tmp_path, "decision")
    assert line["checks"] == [{"name": "max_exposure", "ok": True, "key": "***"}]


def test_saga_events_are_not_repeated_in_the_health_log(tmp_path: Path) -> None:
    with ActorSystem(var_dir=tmp_path, sync=False) as system:
        system.events.publish("saga_step", "/sagas/s-1", saga_id="1")
        system.events.publish("actor_restarted", "/a", reason="x")
    health = [line["event"] for line in _lines(tmp_path / "logs", "health")]
    assert "actor_restarted" in health
    assert "saga_step" not in health
