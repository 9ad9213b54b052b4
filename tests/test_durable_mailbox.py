"""Durable mailboxes survive SIGKILL: every message handled at least once, in order."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from phalanx import Actor, ActorSystem, CodecError, Mailbox

CHILD = Path(__file__).with_name("durable_child.py")
N = 3000


def _spawn(var_dir: Path, out: Path, mode: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(CHILD), str(var_dir), str(out), str(N), mode],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)},
    )


def test_sigkill_mid_stream_then_restart_handles_every_message_in_order(
    tmp_path: Path,
) -> None:
    var_dir, out = tmp_path / "var", tmp_path / "handled.txt"
    sender = _spawn(var_dir, out, "send")
    assert sender.stdout is not None
    assert sender.stdout.readline().strip() == "sent"  # all N journaled and acknowledged
    sender.send_signal(signal.SIGKILL)
    sender.wait(30)
    first_run = [int(x) for x in out.read_text().split()]
    assert len(first_run) < N, "the kill should land while a backlog remains"

    recover = _spawn(var_dir, out, "recover")
    stdout, _ = recover.communicate(timeout=120)
    assert stdout.strip() == "done"
    handled = [int(x) for x in out.read_text().split()]
    second_run = handled[len(first_run) :]

    assert first_run == list(range(len(first_run)))
    assert set(handled) == set(range(N)), "a durable message was lost"
    # The replay starts at or before the first unfinished message and runs in order.
    start = second_run[0]
    assert start <= len(first_run)
    assert second_run == list(range(start, N))


class Echo(Actor):
    def on_receive(self, message: Any) -> Any:
        return message


def test_durable_entries_are_removed_once_handled(system: ActorSystem) -> None:
    system.spawn(Echo, "/echo", mailbox=Mailbox(durable=True))
    for i in range(100):
        system.tell("/echo", i)
    assert system.ask("/echo", "last", timeout=5) == "last"
    system.storage.flush()
    assert system.post.journal.depth("/echo") == 0


def test_unencodable_message_to_a_durable_mailbox_is_refused_loudly(system: ActorSystem) -> None:
    system.spawn(Echo, "/echo", mailbox=Mailbox(durable=True))
    with pytest.raises(CodecError, match="object"):
        system.tell("/echo", object())


def test_node_shutdown_keeps_queued_durable_messages_for_the_next_boot(tmp_path: Path) -> None:
    gate = threading.Event()
    entered = threading.Event()
    got: list[Any] = []
    done = threading.Event()

    class Slow(Actor):
        def on_receive(self, message: Any) -> Any:
            if message == "hold":
                entered.set()
                gate.wait(10)
                return None
            got.append(message)
            if message == 4:
                done.set()
            return None

    with ActorSystem(var_dir=tmp_path, sync=False) as system:
        system.spawn(Slow, "/slow", mailbox=Mailbox(durable=True))
        system.tell("/slow", "hold")
        assert entered.wait(10)
        system.tell_many("/slow", range(5))
        releaser = threading.Timer(0.05, gate.set)
        releaser.start()
    releaser.join()
    counters = system.counters()
    assert counters["journaled"] == 5
    assert counters["sent"] == counters["handled"] + counters["dead_lettered"] + 5
    assert got == []

    with ActorSystem(var_dir=tmp_path, sync=False) as system:
        system.spawn(Slow, "/slow", mailbox=Mailbox(durable=True))
        assert done.wait(10)
        system.storage.flush()
        assert system.dead_letters.list() == []
    assert got == [0, 1, 2, 3, 4]
