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


def test_sigterm_shuts_the_node_down_in_order(tmp_path: Path) -> None:
    import signal

    summary = tmp_path / "summary.json"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "phalanx",
            "run",
            "--var-dir",
            str(tmp_path / "var"),
            "--summary",
            str(summary),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert proc.stdout is not None
    assert "phalanx node up" in proc.stdout.readline()
    assert (tmp_path / "var" / "node.pid").read_text().strip() == str(proc.pid)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "shutting down in order" in out
    assert json.loads(summary.read_text())["messages"]["queued"] == 0


def _seed_dead_letters(var_dir: Path) -> list[str]:
    from phalanx import ActorSystem

    with ActorSystem(var_dir=var_dir, sync=False) as system:
        for i in range(3):
            system.tell("/ghost", {"i": i})
        system.storage.flush()
        return [r.id for r in system.dead_letters.list()]


def test_dlq_show_stats_resolve_and_purge_offline(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ids = _seed_dead_letters(tmp_path)
    base = ["dlq", "--var-dir", str(tmp_path), "--json"]
    assert main([*base, "show", ids[0]]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["id"] == ids[0]
    assert shown["message"] == {"i": 0}
    assert main([*base, "stats"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["depth"] == 3
    assert stats["by_reason"] == {"dead_target": 3}
    assert main([*base, "resolve", ids[0], "--note", "known ghost"]) == 0
    assert json.loads(capsys.readouterr().out)["status"] == "resolved"
    assert main([*base, "purge", "--status", "resolved"]) == 0
    assert json.loads(capsys.readouterr().out) == {"purged": 1}
    assert main([*base, "purge", "--status", "pending"]) == 2  # needs --yes
    assert "--yes" in capsys.readouterr().err
    assert main([*base, "show", ids[0]]) == 2
    assert main([*base, "ls", "--status", "pending"]) == 0
    assert [r["id"] for r in json.loads(capsys.readouterr().out)] == ids[1:]


def test_a_second_node_on_a_live_var_dir_is_refused_with_a_clear_message(tmp_path: Path) -> None:
    from phalanx import ActorSystem

    var = tmp_path / "var"
    with ActorSystem(name="first", var_dir=var, sync=False):
        second = _cli("run", "--var-dir", str(var), "--for", "1")
    assert second.returncode == 2
    [line] = second.stderr.strip().splitlines()
    assert "in use by another phalanx node" in line
    assert "Traceback" not in second.stderr
