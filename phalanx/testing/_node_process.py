"""The node's process, seen from outside through its var dir (for :class:`SocketDriver`).

``phalanx run`` writes ``VAR/node.pid`` (its pid), holds an exclusive
``flock`` on ``VAR/node.lock`` while it lives, and records how it was started
in ``VAR/node.cmd`` (``{"argv": [...], "cwd": ...}``). A SIGKILLed node has
exited once the kernel released the lock; a restarted node inherits this
process's environment (api keys, test-only switches) and appends its output
to ``VAR/node.restart.log``. No event crosses processes, so every wait here
is a bounded poll at ``_POLL_S``.
"""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import time
from collections.abc import Iterable
from pathlib import Path

from phalanx.testing._campaign_run import ChaosUnsupported

_POLL_S = 0.05  # the pace of bounded waits on another process (no event crosses processes)


def _restart_command(var_dir: Path, restart_cmd: list[str] | None) -> tuple[list[str], str | None]:
    """``restart_cmd`` if given, else the argv and cwd recorded in ``VAR/node.cmd``."""
    if restart_cmd:
        return restart_cmd, None
    try:
        recorded = json.loads((var_dir / "node.cmd").read_text())
    except (OSError, ValueError) as exc:
        raise ChaosUnsupported(
            f"cannot restart the node: no usable {var_dir / 'node.cmd'} ({exc}); pass --restart-cmd"
        ) from None
    return [str(a) for a in recorded["argv"]], recorded.get("cwd")


def _node_pid(var_dir: Path) -> int:
    try:
        return int((var_dir / "node.pid").read_text().strip())
    except (OSError, ValueError) as exc:
        raise ChaosUnsupported(f"no node pid in {var_dir / 'node.pid'}: {exc}") from None


def _start_node(argv: list[str], cwd: str | None, var_dir: Path) -> subprocess.Popen[bytes]:
    """Start the node again, its output appended to ``VAR/node.restart.log``."""
    with open(var_dir / "node.restart.log", "ab") as log:
        return subprocess.Popen(
            argv, cwd=cwd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,  # a Ctrl-C at the chaos CLI does not reach the node
        )  # fmt: skip


def _released(var_dir: Path) -> bool:
    """True once no process holds ``VAR/node.lock`` (the node has exited)."""
    fd = os.open(var_dir / "node.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False
    finally:
        os.close(fd)  # closing drops the lock at once
    return True


def _wait_released(
    var_dir: Path, children: Iterable[subprocess.Popen[bytes]], timeout: float
) -> bool:
    deadline = time.monotonic() + timeout
    while not _released(var_dir):
        for child in children:
            child.poll()  # reap our own exited nodes
        if time.monotonic() >= deadline:
            return False
        time.sleep(_POLL_S)  # sleep-ok: bounded wait on another process
    return True
