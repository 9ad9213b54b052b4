"""Control-plane fixtures: an in-process server on a tmp ActorSystem, and a node subprocess."""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from phalanx import Actor, ActorSystem, ChildSpec, Retry
from phalanx.cli import main
from phalanx.protocols.control import HEADER, PROTOCOL_VERSION, pack_frame, read_frame
from phalanx.runtime._control import ControlServer

ROOT = Path(__file__).resolve().parents[2]
NODE_CONFIG = """
name = "ctltest"
demo = true
[venue]
seed = 7
[[exchanges]]
name = "paper"
use_venue = true
poll_symbols = []
"""


class Echo(Actor):
    """Answers asks with what it got; counts what it handled."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[Any] = []

    def on_receive(self, message: Any) -> Any:
        if message == "boom":
            raise ConnectionError("echo: transient")
        if message == "bad":
            raise KeyError("echo: handler bug")
        self.seen.append(message)
        return {"echo": message}

    def introspect(self) -> dict[str, Any]:
        return {"class": "Echo", "seen": len(self.seen)}


def short_tmpdir() -> Path:
    """A short directory (Unix socket paths are limited to 107 bytes)."""
    return Path(tempfile.mkdtemp(prefix="phx-", dir="/tmp"))


@pytest.fixture
def ctl_system() -> Iterator[ActorSystem]:
    """A small tree: /svc (one_for_one) with /svc/a and /svc/b, plus a top-level /echo."""
    var = short_tmpdir()
    with ActorSystem(
        name="ctl",
        var_dir=var,
        retry=Retry(max_attempts=3, backoff="fixed", base=0.0, jitter=0.0),
        sync=False,
    ) as system:
        system.supervise("/svc", children=[ChildSpec("a", Echo), ChildSpec("b", Echo)])
        system.spawn(Echo, "/echo")
        yield system
    shutil.rmtree(var, ignore_errors=True)


@pytest.fixture
def server(ctl_system: ActorSystem) -> Iterator[ControlServer]:
    """An in-process control server on ``ctl_system`` (shutdown sets ``server.stopped``)."""
    stopped = threading.Event()
    with ControlServer(
        ctl_system, ctl_system.var_dir / "control.sock", on_shutdown=stopped.set
    ) as srv:
        srv.stopped = stopped  # type: ignore[attr-defined]
        yield srv


class RawClient:
    """Frames by hand, for protocol tests."""

    def __init__(self, path: Path, hello: bool = True) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(10.0)
        self.sock.connect(str(path))
        self.ids = iter(range(1, 10**9))
        if hello:
            self.send({"type": "hello", "version": PROTOCOL_VERSION})
            reply = self.recv()
            assert reply["type"] == "hello", reply

    def send(self, frame: Any) -> None:
        self.sock.sendall(pack_frame(frame))

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def send_body(self, body: bytes) -> None:
        self.sock.sendall(HEADER.pack(len(body)) + body)

    def recv(self) -> dict[str, Any]:
        frame = read_frame(self.sock, 64 << 20)
        assert frame is not None, "timed out waiting for a frame"
        return frame

    def call(self, cmd: str, **args: Any) -> dict[str, Any]:
        ident = next(self.ids)
        self.send({"type": "request", "id": ident, "cmd": cmd, "args": args})
        while True:
            frame = self.recv()
            if frame["type"] == "response":
                return frame

    def close(self) -> None:
        self.sock.close()


# --- a node as a subprocess -----------------------------------------------------


def phalanx_cmd(*args: str) -> list[str]:
    """The command line of ``phalanx ARGS`` from this checkout."""
    return [sys.executable, "-m", "phalanx", *args]


def child_env() -> dict[str, str]:
    """Environment for CLI subprocesses: this checkout first, wide terminal."""
    return {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "200", "TERM": "xterm"}


def run_ctl(var: Path, *args: str, json_out: bool = True, spawn: bool = False) -> Any:
    """Run ``phalanx ctl [--json] ARGS``; the parsed JSON on exit 0, else the process.

    By default the CLI's ``main`` runs in this process (the node is still a
    separate process, reached over its socket): a subprocess costs a second
    or more of imports on a loaded 2-core box. ``spawn=True`` runs the real
    console entry point in a subprocess.
    """
    argv = ["ctl", "--var-dir", str(var), *(["--json"] if json_out else []), *args]
    if spawn:
        proc = subprocess.run(
            phalanx_cmd(*argv),
            capture_output=True,
            text=True,
            timeout=60,
            env=child_env(),
            check=False,
        )
    else:
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(argv)
        proc = subprocess.CompletedProcess(argv, code, out.getvalue(), err.getvalue())
    if proc.returncode != 0 or not json_out:
        return proc
    return json.loads(proc.stdout)


class Node:
    """A ``phalanx run`` subprocess; ``up`` is set once its control socket is bound."""

    def __init__(self, var: Path, seconds: int = 90, config_text: str = NODE_CONFIG) -> None:
        self.var = var
        config = var.parent / f"{var.name}.toml"
        config.write_text(config_text)
        self.proc = subprocess.Popen(
            phalanx_cmd("run", "-c", str(config), "--var-dir", str(var), "--for", str(seconds)),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=child_env(),
        )
        self.lines: list[str] = []
        self.up = threading.Event()
        # Drains stdout so the node never blocks on a full pipe.
        self._reader = threading.Thread(target=self._drain, name="test-node-stdout")
        self._reader.start()
        if not self.up.wait(60):
            self.stop()
            pytest.fail("node did not come up:\n" + "".join(self.lines))

    def _drain(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            line = raw.decode(errors="replace")
            self.lines.append(line)
            if "control:" in line:
                self.up.set()

    def ctl(self, *args: str, json_out: bool = True, spawn: bool = False) -> Any:
        """Run ``phalanx ctl --json ARGS`` against this node (see :func:`run_ctl`)."""
        return run_ctl(self.var, *args, json_out=json_out, spawn=spawn)

    def wait(self, timeout: float = 60) -> int:
        """Wait for the node to exit; its exit code."""
        code = self.proc.wait(timeout)
        self._reader.join(10)
        return code

    def stop(self) -> None:
        """Stop it if still running (SIGTERM, then SIGKILL)."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._reader.join(10)


def poll_until(fn: Any, timeout: float = 30.0) -> Any:
    """Call ``fn`` until it returns something truthy, within ``timeout``.

    Each call is itself a round trip to the node (a ctl subprocess or a
    request), so this loop waits on real work, not on a sleep.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = fn()
        if value:
            return value
    raise AssertionError(f"condition not met within {timeout}s")


@pytest.fixture(scope="module")
def node() -> Iterator[Node]:
    """One node for a whole test module (it takes a second or two to boot)."""
    var = short_tmpdir() / "var"
    n = Node(var)
    yield n
    n.stop()
    shutil.rmtree(var.parent, ignore_errors=True)
