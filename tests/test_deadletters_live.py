"""Dead-letter operations through a live node, and the offline CLI view of the same store."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest

from phalanx import Actor, ActorSystem, DeadLetterError, Message
from phalanx.cli import main


class Order(Message):
    type_name = "test.order"
    qty: int


class Collector(Actor):
    def __init__(self, got: list[Any], seen: threading.Event) -> None:
        super().__init__()
        self.got = got
        self.seen = seen

    def on_receive(self, message: Any) -> Any:
        self.got.append(message)
        self.seen.set()
        return None


def test_redrive_delivers_exactly_once_and_keeps_history_across_failures(
    system: ActorSystem,
) -> None:
    system.tell("/later", Order(qty=3))
    system.storage.flush()
    [record] = system.dead_letters.list(reason="dead_target")
    assert record.redrivable
    assert record.message == Order(qty=3)

    got: list[Any] = []
    seen = threading.Event()
    system.spawn(Collector, "/later", got, seen)
    system.dead_letters.redrive(record.id)
    assert seen.wait(5)
    with pytest.raises(DeadLetterError):
        system.dead_letters.redrive(record.id)
    system.stop("/later")
    assert got == [Order(qty=3)]
    system.storage.flush()
    redriven = system.dead_letters.get(record.id)
    assert redriven.status == "redriven"
    assert redriven.attempts == 2

    # A redriven record cannot be redriven again, to any target.
    with pytest.raises(DeadLetterError):
        system.dead_letters.redrive(record.id, to="/nobody")


def test_redriven_message_that_fails_again_keeps_one_record_with_history(
    system: ActorSystem,
) -> None:
    system.tell("/nobody", {"n": 1})
    system.storage.flush()
    [record] = system.dead_letters.list()
    system.dead_letters.redrive(record.id, to="/still-nobody")
    system.storage.flush()
    [again] = system.dead_letters.list()
    assert again.id == record.id
    assert again.status == "pending"
    assert again.count == 2
    assert again.target == "/still-nobody"
    actions = [h.get("action") for h in again.history]
    assert "redrive" in actions
    assert len(again.history) >= 3


def test_offline_dlq_ls_json_matches_the_live_api(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with ActorSystem(var_dir=tmp_path, sync=False) as system:
        for i in range(5):
            system.tell(f"/ghost-{i % 2}", Order(qty=i))
        system.tell("/ghost-0", object())
        system.storage.flush()
        live = [r.model_dump(mode="json") for r in system.dead_letters.list()]
        live_filtered = [
            r.model_dump(mode="json") for r in system.dead_letters.list(target="/ghost-1")
        ]
    assert len(live) == 6
    assert main(["dlq", "--var-dir", str(tmp_path), "--json", "ls"]) == 0
    assert json.loads(capsys.readouterr().out) == live
    assert main(["dlq", "--var-dir", str(tmp_path), "--json", "ls", "--target", "/ghost-1"]) == 0
    assert json.loads(capsys.readouterr().out) == live_filtered


def test_offline_redrive_is_delivered_when_the_node_starts(tmp_path: Path) -> None:
    with ActorSystem(var_dir=tmp_path, sync=False) as system:
        system.tell("/inbox", Order(qty=9))
        system.storage.flush()
        [record] = system.dead_letters.list()
    assert main(["dlq", "--var-dir", str(tmp_path), "redrive", record.id]) == 0
    got: list[Any] = []
    seen = threading.Event()

    with ActorSystem(var_dir=tmp_path, sync=False) as system:
        # The outbox drains at start, before /inbox exists: it is dead-lettered
        # again into the same record, still redrivable.
        system.storage.flush()
        again = system.dead_letters.get(record.id)
        assert again.status == "pending"
        system.spawn(Collector, "/inbox", got, seen)
        system.dead_letters.redrive(record.id)
        assert seen.wait(5)
    assert got == [Order(qty=9)]
