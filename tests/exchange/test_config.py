"""Node config: every bad input is one clear message naming the field, and exit code 2."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from phalanx import ConfigError
from phalanx.runtime._config import load_config

ROOT = Path(__file__).resolve().parents[2]


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "node.toml"
    path.write_text(text)
    return path


def test_a_good_config_loads_with_keys_from_env(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEST_KEY", "k-123456")
    monkeypatch.setenv("TEST_SECRET", "s-123456")
    config = load_config(
        _write(
            tmp_path,
            """
name = "n1"
[venue]
seed = 3
[[exchanges]]
name = "binance-paper"
exchange = "binance"
api_key_env = "TEST_KEY"
secret_env = "TEST_SECRET"
urls = { api = { public = "http://127.0.0.1:9/api/v3", private = "http://127.0.0.1:9/api/v3" } }
""",
        )
    )
    assert config.venue is not None
    assert config.venue.seed == 3
    [exchange] = config.exchanges
    assert exchange.credentials() == ("k-123456", "s-123456")


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ('[[exchanges]]\nname = "x"\nexchange = "notanexchange"', "exchanges.0.exchange"),
        ('[[exchanges]]\nname = "x"\nurls = { api = "ftp://nope" }', "exchanges.0.urls"),
        (
            '[[exchanges]]\nname = "x"\napi_key_env = "PHALANX_TEST_UNSET_VAR"',
            "PHALANX_TEST_UNSET_VAR",
        ),
        ('[[exchanges]]\nname = "x"\nrate_limit_per_s = 0', "rate_limit_per_s"),
        ("[venue]\nport = 70000", "venue.port"),
        ("surprise = 1", "surprise"),
        ("this is = not toml [", "not valid TOML"),
    ],
)
def test_bad_configs_name_the_field(tmp_path: Path, text: str, needle: str) -> None:
    os.environ.pop("PHALANX_TEST_UNSET_VAR", None)
    with pytest.raises(ConfigError, match=needle.replace(".", r"\.")):
        load_config(_write(tmp_path, text))


def test_phalanx_run_with_a_bad_config_exits_2_without_traceback(tmp_path: Path) -> None:
    path = _write(tmp_path, '[[exchanges]]\nname = "x"\nexchange = "notanexchange"')
    result = subprocess.run(
        [sys.executable, "-m", "phalanx", "run", "-c", str(path), "--var-dir", str(tmp_path / "v")],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        check=False,
    )
    assert result.returncode == 2
    assert "exchanges.0.exchange" in result.stderr
    assert "Traceback" not in result.stderr
    missing = subprocess.run(
        [sys.executable, "-m", "phalanx", "run", "-c", str(tmp_path / "nope.toml")],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        check=False,
    )
    assert missing.returncode == 2
    assert "does not exist" in missing.stderr


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("surprise = 1", "surprise"),  # an unknown key
        ("[trading.strategy]\nwindow = 1", "trading.strategy.window"),  # out of range
        ('[venue]\nseed = "seven"', "venue.seed"),  # a wrong type
        ('[[exchanges]]\nname = "x"\napi_key_env = "PHALANX_TEST_UNSET_VAR"', "PHALANX_TEST_UNSET"),
    ],
)
def test_phalanx_run_prints_one_clear_line_and_exits_2_for_each_kind_of_bad_config(
    tmp_path: Path, text: str, needle: str
) -> None:
    env = {k: v for k, v in os.environ.items() if k != "PHALANX_TEST_UNSET_VAR"}
    result = subprocess.run(
        [sys.executable, "-m", "phalanx", "run", "-c", str(_write(tmp_path, text)),
         "--var-dir", str(tmp_path / "v")],
        capture_output=True, text=True, timeout=60, env={**env, "PYTHONPATH": str(ROOT)},
        check=False,
    )  # fmt: skip
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert needle in lines[0]
    assert "Traceback" not in result.stderr
