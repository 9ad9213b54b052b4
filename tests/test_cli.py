"""The CLI skeleton: exit codes, bad input, the bounded demo run and its summary."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from phalanx.cli import main

ROOT = Path(__file__).resolve().parent.parent


def _cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "phalanx", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        check=False,
    )


def test_bad_arguments_exit_2_with_one_clear_message(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--for", "-3"]) == 2
    err = capsys.readouterr().err
    assert "must be > 0 seconds" in err
    assert main(["frobnicate"]) == 2
    assert main([]) == 2


def test_unwritable_var_dir_exits_2_without_traceback(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    result = _cli("run", "--var-dir", str(blocker / "var"), "--for", "1")
    assert result.returncode == 2
    assert "not usable" in result.stderr
    assert "Traceback" not in result.stderr


def test_dlq_on_missing_state_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["dlq", "--var-dir", str(tmp_path / "nope"), "ls"]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["dlq", "--var-dir", str(tmp_path), "ls"]) == 2


def test_run_for_ends_by_itself_and_writes_the_summary(tmp_path: Path) -> None:
    summary = tmp_path / "summary.json"
    result = _cli(
        "run", "--var-dir", str(tmp_path / "var"), "--for", "2", "--summary", str(summary)
    )
    assert result.returncode == 0, result.stderr
    assert "phalanx node up" in result.stdout
    data = json.loads(summary.read_text())
    for key in (
        "orders_placed",
        "orders_filled",
        "orders_canceled",
        "sagas_completed",
        "sagas_compensated",
        "sagas_running",
        "restarts",
        "dead_letters",
        "duplicates_detected",
        "ledger_balanced",
        "uptime_s",
    ):
        assert key in data
    assert data["uptime_s"] >= 2
    messages = data["messages"]
    assert messages["sent"] == messages["handled"] + messages["dead_lettered"]
    assert not (tmp_path / "var" / "node.pid").exists()
