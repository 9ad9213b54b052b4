"""``phalanx run`` (no config): the bounded trading demo trades, and its summary is real."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest

from phalanx.actors import MeanReversion, TradeIdea
from phalanx.errors import ConfigError
from phalanx.runtime._config import StrategyConfig, load_config

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
    assert "startup objects frozen, gen0 threshold 10000" in result.stdout
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


def test_the_strategy_is_deterministic_for_a_seed_and_quantizes_to_the_filters() -> None:
    config = StrategyConfig(seed=9, symbols=["BTC/USDT"], window=3, threshold_bps=Decimal(1))
    tick, step = {"BTC/USDT": Decimal("0.01")}, {"BTC/USDT": Decimal("0.00001")}
    walk = random.Random(1)
    prices = [Decimal(43000) + Decimal(walk.randint(-200, 200)) for _ in range(300)]

    def ideas() -> list[TradeIdea]:
        model = MeanReversion(config, tick, step)
        out = []
        for p in prices:
            idea = model.observe("BTC/USDT", p - Decimal("4.3"), p + Decimal("4.3"))
            if idea is not None:
                out.append(idea)
        return out

    first = ideas()
    assert first == ideas()
    assert {i.side for i in first} == {"buy", "sell"}
    for idea in first:
        assert idea.price % Decimal("0.01") == 0
        assert idea.amount % Decimal("0.00001") == 0
        assert idea.amount * idea.price <= config.notional * Decimal("1.5")


def test_trading_config_rejects_unknown_keys_and_bad_values_naming_the_field(
    tmp_path: Path,
) -> None:
    cases = {
        "[trading]\nbogus = 1\n": "trading.bogus",
        "[trading.strategy]\nsymbols = ['BTCUSDT']\n": "trading.strategy.symbols",
        "[trading.risk]\nmax_exposure = -1\n": "trading.risk.max_exposure",
        "[trading.strategy]\ninterval_s = 0\n": "trading.strategy.interval_s",
    }
    for text, field in cases.items():
        path = tmp_path / "node.toml"
        path.write_text(text)
        with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
            load_config(path)
    path.write_text("[trading]\nexchange = 'nope'\n[[exchanges]]\nname = 'paper'\n")
    with pytest.raises(ConfigError, match=r"trading\.exchange 'nope'"):
        load_config(path)
    path.write_text("[[exchanges]]\nname = 'paper'\nuse_venue = true\n[trading]\n")
    with pytest.raises(ConfigError, match=r"use_venue needs the \[venue\] section"):
        load_config(path)
    path.write_text("[trading.strategy]\nseed = 3\nmax_sagas = 5\n")
    loaded = load_config(path)
    assert loaded.trading is not None
    assert loaded.trading.strategy.max_sagas == 5
    assert loaded.trading.risk.max_open_positions == 10
