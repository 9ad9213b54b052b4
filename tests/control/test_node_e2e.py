"""A node as a subprocess, driven only through ``phalanx ctl --json`` (DESIGN section 10)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from typing import Any

from .conftest import Node, poll_until, run_ctl, short_tmpdir

PS_KEYS = {"path", "status", "mailbox_depth", "mailbox_capacity", "processed", "restarts",
           "breaker"}  # fmt: skip
STATUSES = {"starting", "running", "restarting", "backoff", "circuit_open", "stopped"}


def _walk(node: dict[str, Any], parent: dict[str, Any] | None = None) -> Iterator[tuple]:
    yield node, parent
    for child in node["children"]:
        yield from _walk(child, node)


def _ps(node: Node) -> dict[str, dict[str, Any]]:
    rows = node.ctl("ps")
    assert isinstance(rows, list), getattr(rows, "stderr", rows)
    return {r["path"]: r for r in rows}


def test_tree_matches_system_tree_shape(node: Node) -> None:
    tree = node.ctl("tree", spawn=True)  # the real console entry point, once
    assert tree["path"] == "/"
    assert tree["kind"] == "supervisor"
    assert tree["status"] == "running"
    seen = 0
    for entry, parent in _walk(tree):
        assert {"path", "kind", "status", "children"} <= entry.keys()
        if entry["kind"] == "supervisor" and entry["path"] != "/":
            assert entry["strategy"] in ("one_for_one", "one_for_all", "rest_for_one",
                                         "simple_one_for_one")  # fmt: skip
            assert isinstance(entry["intensity"], int)
        if parent is not None and parent["path"] != "/":
            assert entry["path"].startswith(parent["path"] + "/")
        seen += 1
    assert seen > 3


def test_ps_rows_have_exactly_the_design_fields(node: Node) -> None:
    rows = node.ctl("ps")
    assert rows, "a demo node has actors"
    for row in rows:
        assert set(row) == PS_KEYS
        assert row["status"] in STATUSES
        assert row["breaker"] in (None, "closed", "open", "half_open")
        assert 0 <= row["mailbox_depth"] <= row["mailbox_capacity"]
    tree_paths = {e["path"] for e, _ in _walk(node.ctl("tree"))} - {"/"}
    assert {r["path"] for r in rows} <= tree_paths


def test_ps_sorts_server_side(node: Node) -> None:
    rows = node.ctl("ps", "--sort", "processed")
    processed = [r["processed"] for r in rows]
    assert processed == sorted(processed, reverse=True)
    by_path = [r["path"] for r in node.ctl("ps", "--sort", "path", "--limit", "3")]
    assert by_path == sorted(by_path)
    assert len(by_path) == 3


def test_kill_of_a_supervised_actor_raises_its_restart_count(node: Node) -> None:
    tree = node.ctl("tree")
    supervised = [
        e for e, parent in _walk(tree)
        if e["kind"] == "actor" and parent is not None and parent["path"] != "/"
        and e["status"] == "running"
    ]  # fmt: skip
    # Not a demo worker: those crash on purpose now and then, and a kill that
    # lands while one is restarting is (rightly) refused.
    steady = [e for e in supervised if not e["path"].startswith("/demo/worker")]
    assert steady, "the node has a supervised actor that does not crash by itself"
    target = min(steady, key=lambda e: e["restarts"])
    before = _ps(node)[target["path"]]["restarts"]
    reply = node.ctl("kill", target["path"])
    assert isinstance(reply, dict), getattr(reply, "stderr", reply)
    assert reply["killed"] is True
    poll_until(lambda: _ps(node)[target["path"]]["restarts"] > before)
    events = node.ctl("inspect", target["path"])["recent_events"]
    assert any(e["kind"] == "actor_killed" for e in events)


def test_dlq_redrive_of_a_dead_letter_delivers_it(node: Node) -> None:
    # A tell to a path nobody lives at is a dead_target letter...
    told = node.ctl("tell", "/nowhere", "exchange.fetch_ticker", '{"symbol": "BTC/USDT"}')
    assert told["dead_lettered"] is True
    records = node.ctl("dlq", "ls", "--target", "/nowhere", "--reason", "dead_target")
    assert len(records) == 1
    record = records[0]
    assert record["status"] == "pending"
    # ...redriven to the (idle, non-polling) exchange connection, which handles it.
    health = _health(node)
    conn = next(iter(health["subsystems"]["venue"]["connections"]))
    before = _ps(node)[conn]["processed"]
    redriven = node.ctl("dlq", "redrive", record["id"], "--to", conn)
    assert redriven["status"] == "redriven"
    poll_until(lambda: _ps(node)[conn]["processed"] > before)
    after = node.ctl("dlq", "show", record["id"])
    assert after["status"] == "redriven"
    assert after["history"][-1]["action"] == "redrive"


def test_error_replies_and_unreachable_nodes_have_design_exit_codes(node: Node) -> None:
    missing = node.ctl("inspect", "/no/such/actor")
    assert missing.returncode == 1
    assert "not_found" in missing.stderr
    bad = node.ctl("tell", "/x", "exchange.fetch_ticker", '{"sym": 1}')
    assert bad.returncode == 2
    assert "symbol" in bad.stderr
    assert node.ctl("tell", "/x", "plain", "{not json").returncode == 2
    assert node.ctl("ps", "--sort", "sideways").returncode == 2
    nowhere = short_tmpdir()
    try:
        proc = run_ctl(nowhere, "ps", spawn=True)
        assert proc.returncode == 3
        assert "no control socket" in proc.stderr
    finally:
        shutil.rmtree(nowhere, ignore_errors=True)


def _health(node: Node) -> dict[str, Any]:
    proc = node.ctl("health")
    if isinstance(proc, dict):
        return proc
    assert proc.returncode == 1, proc.stderr  # red: the report is still printed
    report: dict[str, Any] = json.loads(proc.stdout)
    return report


def test_health_reports_every_subsystem(node: Node) -> None:
    report = _health(node)
    assert report["status"] in ("green", "yellow", "red")
    assert set(report["subsystems"]) == {
        "storage", "venue", "breakers", "dead_letters", "reconciliation"
    }  # fmt: skip
    assert report["subsystems"]["storage"]["status"] == "green"
    assert report["subsystems"]["venue"]["connections"]


def test_shutdown_exits_0_with_an_orderly_stop() -> None:
    var = short_tmpdir() / "var"
    own = Node(var)
    try:
        assert (var / "node.pid").exists()
        reply = own.ctl("shutdown", spawn=True)
        assert reply["stopping"] is True
        assert own.wait(60) == 0
        output = "".join(own.lines)
        assert "shutting down in order" in output
        assert "phalanx: stopped after" in output
        assert not (var / "node.pid").exists()
        assert not (var / "control.sock").exists()
    finally:
        own.stop()
        shutil.rmtree(var.parent, ignore_errors=True)
