"""``phalanx shell`` under a pseudo-terminal: rendering, completion, exit leaves the node up."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import signal
import stat
import struct
import subprocess
import termios
import time
from collections.abc import Iterator

import pytest

from phalanx import ActorSystem
from phalanx.runtime._control import ControlServer

from .conftest import RawClient, child_env, phalanx_cmd

_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b[()][A-Z0-9]|[\r\x07]")


class Pty:
    """A child process on a pty, with expect-style reads bounded by a deadline."""

    def __init__(self, argv: list[str]) -> None:
        master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 200, 0, 0))
        self.proc = subprocess.Popen(
            argv, stdin=slave, stdout=slave, stderr=slave, env=child_env(), start_new_session=True
        )
        os.close(slave)
        self.fd = master
        self.buffer = ""

    def expect(self, *needles: str, timeout: float = 30.0) -> str:
        """Read until every needle has appeared since the last expect; returns that text."""
        deadline = time.monotonic() + timeout
        while not all(n in self.buffer for n in needles):
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"{needles!r} not seen; got:\n{self.buffer[-3000:]!r}")
            ready, _, _ = select.select([self.fd], [], [], left)
            if not ready:
                continue
            try:
                chunk = os.read(self.fd, 65536)
            except OSError:  # EIO: the child closed the terminal
                chunk = b""
            if not chunk:
                raise AssertionError(f"shell ended before {needles!r}:\n{self.buffer[-3000:]}")
            self.buffer += _ANSI.sub("", chunk.decode(errors="replace"))
        seen, self.buffer = self.buffer, ""
        return seen

    def send(self, text: str) -> None:
        os.write(self.fd, text.encode())

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)
        os.close(self.fd)


@pytest.fixture
def shell(server: ControlServer) -> Iterator[Pty]:
    child = Pty(phalanx_cmd("shell", "--var-dir", str(server.path.parent)))
    yield child
    child.close()


def test_shell_renders_tree_ps_and_inspect_and_survives_errors(shell: Pty) -> None:
    shell.expect("attached to node 'ctl'", "phalanx> ")
    shell.send("tree\r")
    out = shell.expect("/svc/b", "phalanx> ")
    assert "one_for_one" in out
    assert "/svc/a" in out
    assert "/echo" in out
    shell.send("ps --sort path\r")
    out = shell.expect("4 actors", "phalanx> ")
    assert "PROCESSED" in out
    assert out.index("/echo") < out.index("/svc/a")
    shell.send("inspect /echo\r")
    out = shell.expect("recent failures", "phalanx> ")
    assert "introspect()" in out
    assert '"class": "Echo"' in out
    # A typo, an error reply and bad JSON each print one error; the session goes on.
    shell.send("frobnicate\r")
    shell.expect("error:", "phalanx> ")
    shell.send("inspect /nope\r")
    out = shell.expect("not_found", "phalanx> ")
    assert "/nope" in out
    shell.send("tell /echo plain {oops\r")
    shell.expect("not valid JSON", "phalanx> ")
    shell.send("ps\r")
    shell.expect("4 actors", "phalanx> ")


def test_shell_completes_commands_and_actor_paths_and_ends_on_eof(
    shell: Pty, server: ControlServer
) -> None:
    shell.expect("phalanx> ")
    shell.send("insp\t")
    shell.expect("inspect")
    shell.send(" /sv\t")  # (libedit and GNU readline differ on the appended space)
    shell.expect("/svc")
    shell.send("/a\r")
    out = shell.expect("recent failures", "phalanx> ")
    assert "/svc/a" in out
    shell.send("\x04")  # Ctrl-D
    assert shell.proc.wait(30) == 0
    assert RawClient(server.path).call("tree")["ok"] is True


def test_events_tail_ends_on_ctrl_c_and_exit_leaves_the_node_running(
    shell: Pty, server: ControlServer, ctl_system: ActorSystem
) -> None:
    shell.expect("phalanx> ")
    ctl_system.events.publish("probe_shell", "/echo", n=41)
    shell.send("events --kind probe_shell --history 5\r")
    shell.expect("probe_shell /echo n=41")
    ctl_system.events.publish("probe_shell", "/echo", n=42)
    shell.expect("probe_shell /echo n=42")
    shell.proc.send_signal(signal.SIGINT)  # what Ctrl-C sends to the foreground process
    shell.expect("phalanx> ")
    shell.send("ps\r")
    shell.expect("4 actors", "phalanx> ")
    shell.send("exit\r")
    assert shell.proc.wait(30) == 0
    client = RawClient(server.path)
    assert client.call("ps")["ok"] is True
    client.close()
    history = server.path.parent / "shell_history"
    assert "ps" in history.read_text().split()
    assert stat.S_IMODE(os.stat(history).st_mode) == 0o600
