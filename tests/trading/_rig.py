"""Shared by the trading tests: a quick node, its decision lines, a run until SIGKILL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from phalanx import ActorSystem, Retry


def quick_system(var_dir: Path, name: str) -> ActorSystem:
    """A node with fast, fixed retries and no fsync."""
    return ActorSystem(
        name=name,
        var_dir=var_dir,
        retry=Retry(max_attempts=3, backoff="fixed", base=0.0, jitter=0.0),
        sync=False,
    )


def decision_lines(system: ActorSystem, event: str | None = None) -> list[dict[str, Any]]:
    """Every decision log line so far (``event`` only, if given), after a flush."""
    system.logs.flush()  # decision lines are written by a writer thread
    lines = [
        json.loads(line)
        for path in sorted((system.var_dir / "logs").glob("decision*.jsonl"))
        for line in path.read_text(encoding="utf-8").splitlines()
    ]
    return [line for line in lines if event is None or line["event"] == event]


def run_until_killed(script: str, var: Path, *args: str) -> None:
    """Run test module ``script`` as a program on ``var`` and ``args``; it must end by SIGKILL."""
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.run(
        [sys.executable, script, str(var), *args],
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root)},
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()[-2000:]
