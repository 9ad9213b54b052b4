"""``phalanx logs query`` views and ``phalanx logs prune``, in-process, on synthetic logs."""

from __future__ import annotations

import gzip
import json
import os
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from phalanx import ActorSystem
from phalanx.cli import main
from phalanx.runtime._log_retention import prune_logs, schedule_log_retention

OLD_ORDERS = [
    {"event": "order_attempt", "ts": "2026-11-30T10:00:00Z", "order_req_id": "r1",
     "client_order_id": "px-1-0", "symbol": "BTC/USDT", "side": "buy", "amount": "0.1",
     "price": "50000"},
    {"event": "order_ack", "ts": "2026-11-30T10:00:01Z", "client_order_id": "px-1-0",
     "exchange_order_id": "77", "status": "open"},
    {"event": "order_fill", "ts": "2026-11-30T10:00:02Z", "order_req_id": "r1",
     "symbol": "BTC/USDT", "side": "buy", "price": "50000", "amount": "0.1", "fee": "5",
     "trade_id": "t1"},
]  # fmt: skip
LIVE_ORDERS = [
    {"event": "order_done", "ts": "2026-12-01T09:00:00Z", "exchange_order_id": "77",
     "status": "filled", "filled": "0.1"},
    {"event": "order_attempt", "ts": "2026-12-01T09:01:00Z", "order_req_id": "r2",
     "symbol": "ETH/USDT", "side": "sell", "amount": "1"},
    {"event": "retry_attempt", "ts": "2026-12-01T09:01:01Z", "order_req_id": "r2", "attempt": 2},
    {"event": "order_fill", "ts": "2026-12-01T09:01:02Z", "order_req_id": "r2",
     "symbol": "ETH/USDT", "side": "sell", "price": "3000", "qty": "0.4"},
    {"event": "order_cancel", "ts": "2026-12-01T09:01:30Z", "order_req_id": "r3",
     "symbol": "ETH/USDT", "status": "canceled"},
    {"event": "order_fill", "ts": "2026-12-01T09:01:40Z", "order_req_id": "r3",
     "symbol": "ETH/USDT", "price": "3001", "amount": "0.1"},
    {"event": "actor_restarted", "ts": "2026-12-01T09:02:00Z"},
]  # fmt: skip
DECISIONS = [
    {"event": "risk_limits_eval", "ts": "2026-12-01T08:00:00Z", "symbol": "BTC/USDT",
     "allowed": True},
    {"event": "risk_limits_eval", "ts": "2026-12-01T08:00:01Z", "symbol": "ETH/USDT",
     "allowed": False, "reason": "max_exposure"},
    {"event": "sell_trigger_eval", "ts": "2026-12-01T08:00:02Z", "symbol": "BTC/USDT",
     "triggered": False},
    {"event": "position_closed", "symbol": "BTC/USDT", "realized_pnl": "120.5",
     "duration_s": 60},
    {"event": "position_closed", "symbol": "BTC/USDT", "realized_pnl": "-20.5",
     "opened_at": "2026-12-01T08:00:00Z", "closed_at": "2026-12-01T08:02:00Z"},
    {"event": "position_closed", "symbol": "ETH/USDT", "realized_pnl": "40",
     "opened_at": 1000.0, "closed_at": 1030.0},
    {"event": "position_closed", "symbol": "ETH/USDT"},
]  # fmt: skip


def _lines(records: list[dict[str, Any]]) -> str:
    return "".join(json.dumps(r) + "\n" for r in records)


@pytest.fixture
def var(tmp_path: Path) -> Path:
    logs = tmp_path / "var" / "logs"
    logs.mkdir(parents=True)
    with gzip.open(logs / "order.jsonl.2026-11-30.gz", "wt") as f:
        f.write(_lines(OLD_ORDERS))
    (logs / "order.jsonl").write_text(_lines(LIVE_ORDERS) + '{"event": "order_fill", "sym\n')
    with gzip.open(logs / "decision.jsonl.2026-12-01.1.gz", "wt") as f:
        f.write(_lines(DECISIONS[3:5]))
    (logs / "decision.jsonl").write_text(_lines(DECISIONS[:3] + DECISIONS[5:]))
    return tmp_path / "var"


def _json(capsys: pytest.CaptureFixture[str], *argv: str) -> Any:
    assert main(list(argv)) == 0
    return json.loads(capsys.readouterr().out)


def test_trades_view_reads_gzipped_and_live_files_oldest_first(
    var: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = _json(capsys, "logs", "query", "--var-dir", str(var), "--json", "trades")
    assert [(r["symbol"], r["price"], r["amount"], r["fee"]) for r in rows] == [
        ("BTC/USDT", "50000", "0.1", "5"),
        ("ETH/USDT", "3000", "0.4", None),  # qty stands in for amount; no fee: blank
        ("ETH/USDT", "3001", "0.1", None),
    ]
    only = _json(capsys, "logs", "--json", "query", "--var-dir", str(var), "trades",
                 "--symbol", "ETH/USDT")  # fmt: skip
    assert [r["symbol"] for r in only] == ["ETH/USDT", "ETH/USDT"]


def test_unreadable_lines_are_skipped_and_reported(
    var: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["logs", "query", "--var-dir", str(var), "--json", "trades"]) == 0
    assert "skipped 1 unreadable log line" in capsys.readouterr().err


def test_orders_view_groups_by_any_order_id_and_filters_by_status(
    var: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = _json(capsys, "logs", "query", "--var-dir", str(var), "--json", "orders")
    by_id = {r["order_req_id"]: r for r in rows}
    assert set(by_id) == {"r1", "r2", "r3"}
    assert by_id["r1"]["status"] == "filled"  # order_done came by exchange id only
    assert by_id["r1"]["client_order_id"] == "px-1-0"
    assert by_id["r1"]["exchange_order_id"] == "77"
    assert (by_id["r1"]["attempts"], by_id["r1"]["fills"]) == (1, 1)
    assert by_id["r2"]["status"] == "partially_filled"
    assert by_id["r2"]["retries"] == 1
    assert by_id["r3"]["status"] == "canceled"  # a fill after cancel is counted, state kept
    assert by_id["r3"]["fills"] == 1
    assert by_id["r3"]["filled"] == "0.1"  # summed from fills: no cumulative `filled` logged
    assert by_id["r3"]["price"] is None  # a fill's price is not the order's
    assert (by_id["r2"]["amount"], by_id["r2"]["filled"]) == ("1", "0.4")
    filled = _json(capsys, "logs", "query", "--var-dir", str(var), "--json", "orders",
                   "--status", "filled")  # fmt: skip
    assert [r["order_req_id"] for r in filled] == ["r1"]


@pytest.mark.parametrize("view", ["guards", "risk"])
def test_guards_view_filters_by_symbol(
    var: Path, capsys: pytest.CaptureFixture[str], view: str
) -> None:
    rows = _json(capsys, "logs", "query", "--var-dir", str(var), "--json", view,
                 "--symbol", "BTC/USDT")  # fmt: skip
    assert [(r["event"], r["outcome"]) for r in rows] == [
        ("risk_limits_eval", True),
        ("sell_trigger_eval", False),
    ]
    everything = _json(capsys, "logs", "query", "--var-dir", str(var), "--json", view)
    assert [r["reason"] for r in everything if r["symbol"] == "ETH/USDT"] == ["max_exposure"]


def test_performance_view_win_rate_pnl_averages_and_duration(
    var: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    view = _json(capsys, "logs", "query", "--var-dir", str(var), "--json", "performance")
    assert view["closed"] == 3
    assert view["without_pnl"] == 1
    assert (view["wins"], view["losses"], view["breakeven"]) == (2, 1, 0)
    assert view["win_rate"] == pytest.approx(2 / 3, abs=1e-4)
    assert Decimal(view["pnl"]) == Decimal("140")
    assert Decimal(view["avg_win"]) == Decimal("80.25")
    assert Decimal(view["avg_loss"]) == Decimal("-20.5")
    assert view["avg_duration_s"] == pytest.approx((60 + 120 + 30) / 3, abs=1e-3)
    assert view["by_symbol"]["ETH/USDT"] == {"closed": 1, "pnl": "40", "win_rate": 1.0}


def test_tables_render_without_json(var: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["logs", "query", "--var-dir", str(var), "orders", "--limit", "1"]) == 0
    out = capsys.readouterr().out
    assert "orders (1)" in out
    assert "r3" in out
    assert "r1" not in out
    assert main(["logs", "query", "--var-dir", str(var), "performance"]) == 0
    out = capsys.readouterr().out
    assert "win_rate" in out
    assert "0.6667" in out


def test_views_of_a_real_node_log_after_rotation(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with ActorSystem(var_dir=tmp_path / "v", sync=False) as system:
        log = system.logs.logger("order")
        log.info("order_fill", order_req_id="a", symbol="BTC/USDT", price=Decimal("1.5"), amount=1)
        system.logs.rollover_all()
        log.info("order_fill", order_req_id="b", symbol="BTC/USDT", price=Decimal("2"), amount=1)
    assert list((tmp_path / "v" / "logs").glob("order.jsonl.*.gz"))
    rows = _json(capsys, "logs", "query", "--var-dir", str(tmp_path / "v"), "--json", "trades")
    assert [(r["order_req_id"], r["price"]) for r in rows] == [("a", "1.5"), ("b", "2")]


@pytest.mark.parametrize(
    "argv",
    [
        ["logs", "query", "--var-dir", "VAR", "nonsense"],
        ["logs", "query", "--var-dir", "VAR"],
        ["logs", "query", "--var-dir", "VAR", "trades", "--limit", "0"],
        ["logs", "prune", "--var-dir", "VAR", "--retention", "bogus=3"],
        ["logs", "prune", "--var-dir", "VAR", "--keep-days", "0"],
    ],
)
def test_bad_usage_exits_2(var: Path, argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(var) if a == "VAR" else a for a in argv]) == 2
    assert capsys.readouterr().err


def test_missing_var_dir_or_logs_exits_2_with_one_clear_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["logs", "query", "--var-dir", str(tmp_path / "absent"), "trades"]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["logs", "prune", "--var-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "no logs at" in err
    assert len(err.strip().splitlines()) == 1


def _rotated(logs: Path, taxonomy: str, days_ago: int, n: int = 0) -> Path:
    day = (datetime.now(UTC) - timedelta(days=days_ago)).date().isoformat()
    path = logs / f"{taxonomy}.jsonl.{day}{'.' + str(n) if n else ''}.gz"
    path.write_bytes(gzip.compress(b'{"event": "x"}\n'))
    return path


def test_prune_deletes_rotated_files_past_retention_and_dry_run_only_lists(
    var: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    logs = var / "logs"
    old = _rotated(logs, "tracer", 20)
    old_second = _rotated(logs, "tracer", 20, n=1)
    recent = _rotated(logs, "tracer", 3)
    short = _rotated(logs, "order", 3)
    live = logs / "tracer.jsonl"
    live.write_text("")
    os.utime(live, (0, 0))  # an old mtime never makes the live file a candidate
    dry = _json(capsys, "logs", "prune", "--var-dir", str(var), "--dry-run", "--json",
                "--retention", "order=2")  # fmt: skip
    assert dry["dry_run"] is True
    assert sorted(dry["files"]) == sorted(p.name for p in (old, old_second, short))
    assert old.exists()
    assert short.exists()
    assert main(["logs", "prune", "--var-dir", str(var), "--retention", "order=2"]) == 0
    assert "deleted 3 file(s)" in capsys.readouterr().out
    assert not old.exists()
    assert not old_second.exists()
    assert not short.exists()
    assert recent.exists()
    assert live.exists()


def test_scheduled_retention_prunes_at_start_and_on_its_timer(tmp_path: Path) -> None:
    logs = tmp_path / "v" / "logs"
    logs.mkdir(parents=True)
    ancient = _rotated(logs, "health", 400)
    kept = _rotated(logs, "health", 1)
    with ActorSystem(
        var_dir=tmp_path / "v", sync=False, log_retention_days={"health": 5}
    ) as system:
        pruned = system.events.subscribe(kinds={"logs_pruned"})
        try:
            timer = schedule_log_retention(system, interval_s=0.05)
            assert not ancient.exists()
            assert kept.exists()
            later = _rotated(logs, "health", 6)
            event = pruned.wait_for(lambda e: later.name in e.fields["files"], timeout=5)
            timer.cancel()
        finally:
            pruned.close()
    assert event is not None
    assert not later.exists()
    assert kept.exists()


def test_prune_rejects_unknown_taxonomies_and_zero_days(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown log taxonomies"):
        prune_logs(tmp_path, {"nope": 3})
    with pytest.raises(ValueError, match="at least 1 day"):
        prune_logs(tmp_path, default_days=0)
