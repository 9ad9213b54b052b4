"""``phalanx run`` (no config): the bounded trading demo trades, and its summary is real."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _run(var: Path, summary: Path, seconds: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "phalanx", "run", "--var-dir", str(var), "--for", seconds,
         "--summary", str(summary)],
        capture_output=True, text=True, timeout=120, check=False,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip


def test_demo_places_and_fills_orders_completes_sagas_and_balances_the_ledger(
    tmp_path: Path,
) -> None:
    summary = tmp_path / "summary.json"
    result = _run(tmp_path / "var", summary, "6")
    assert result.returncode == 0, result.stderr
    data = json.loads(summary.read_text())
    assert data["orders_placed"] > 0, result.stdout
    assert data["orders_filled"] > 0, result.stdout
    assert data["sagas_completed"] > 0, result.stdout
    assert data["sagas_running"] == 0
    assert data["duplicates_detected"] == 0
    assert data["ledger_balanced"] is True
    assert data["reconciliation_ok"] is True
    assert data["orders_placed"] >= data["orders_filled"]
    assert data["sagas_completed"] + data["sagas_compensated"] > 0
    assert "reconciliation: ok=True" in result.stdout
    assert "orders placed=" in result.stdout
    assert "ticker paper BTC/USDT" in result.stdout


def test_a_second_demo_run_on_the_same_var_dir_starts_a_fresh_account(tmp_path: Path) -> None:
    var = tmp_path / "var"
    first, second = tmp_path / "first.json", tmp_path / "second.json"
    assert _run(var, first, "3").returncode == 0
    result = _run(var, second, "3")
    assert result.returncode == 0, result.stderr
    assert "previous state is kept in" in result.stdout
    assert (var / "state.lmdb.prev").exists()
    data = json.loads(second.read_text())
    assert data["reconciliation_ok"] is True
    assert data["ledger_balanced"] is True
