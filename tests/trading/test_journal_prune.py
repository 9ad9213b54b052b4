"""Journal retention (``phalanx journal prune``): ended sagas lose their records, never their id.

What must hold after a prune: the pruned sagas' records are gone and their
snapshots are compact but still readable; a running or recent saga is not
touched; a pruned id never starts a second saga (no second order); the demo
strategy's id sequence starts past pruned ids; ``phalanx replay`` still
matches; a dry run changes nothing; a second prune finds nothing to do.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import msgpack
import pytest

from phalanx.actors import BUY, buy_input
from phalanx.actors.saga import await_saga, start_saga
from phalanx.actors.saga._state import SagaState
from phalanx.actors.venue import PaperVenue
from phalanx.cli import main
from phalanx.storage import Storage, prune_journal
from phalanx.storage._journal import SagaJournal
from phalanx.storage._journal_prune import compact_snapshot, is_pruned
from tests.chaos import node_config, trading_node, verdict

D = Decimal
TICK = D("0.01")
FUTURE = 4e9  # an ended_before after every saga of these tests


@pytest.fixture
def venue() -> Iterator[PaperVenue]:
    with PaperVenue(seed=21) as v:
        yield v


def _buy(venue: PaperVenue) -> dict[str, object]:
    ask = venue.engine.best_prices("BTCUSDT")[1]
    return buy_input("BTC/USDT", D("0.001"), (ask * D("1.002")).quantize(TICK))


def _run_buys(var: Path, venue: PaperVenue, ids: list[str]) -> None:
    with trading_node(var, venue) as node:
        for saga_id in ids:
            start_saga(node.system, BUY, saga_id, _buy(venue))
        assert [await_saga(node.system, s, timeout=60.0).status for s in ids] == [
            "completed"
        ] * len(ids)


def _venue_orders(venue: PaperVenue) -> int:
    return len(venue.engine.accepted)  # every order the venue ever accepted


def test_prune_drops_the_records_of_ended_sagas_and_keeps_a_readable_compact_snapshot(
    tmp_path: Path, venue: PaperVenue
) -> None:
    var = tmp_path / "var"
    ids = ["keep-a", "keep-b", "keep-c"]
    _run_buys(var, venue, ids)
    with Storage(var / "state.lmdb") as storage:
        journal = SagaJournal(storage)
        before = {s: journal.load(s) for s in ids}
        assert all(len(journal.records(s)) >= 8 for s in ids)
        result = prune_journal(storage, ended_before=FUTURE)
        assert (result.pruned, result.kept_running, result.kept_recent) == (3, 0, 0)
        assert result.records_deleted == sum(int(b["seq"]) for b in before.values() if b)
        for saga_id in ids:
            assert journal.records(saga_id) == []
            snap = journal.load(saga_id)
            assert snap is not None
            assert is_pruned(snap)
            old = before[saga_id]
            assert old is not None
            state = SagaState.from_dict(snap)  # the same shape: every reader still works
            assert (state.status, state.error, state.seq) == ("completed", None, old["seq"])
            assert dict(state.input) == old["input"]
            assert all(s.status == "done" and s.result is None for s in state.steps.values())
            assert state.finalized
            assert not state.active
            assert len(msgpack.packb(snap)) < len(msgpack.packb(old))
        again = prune_journal(storage, ended_before=FUTURE)
        assert (again.pruned, again.already_pruned) == (0, 3)


def test_prune_keeps_running_recent_and_compensation_failed_sagas_unless_asked(
    tmp_path: Path,
) -> None:
    with Storage(tmp_path / "state.lmdb", sync=False) as storage:
        journal = SagaJournal(storage)
        snaps = {
            "old-ended": {"status": "completed", "finalized": True, "updated_at": 100.0},
            "old-unfinalized": {"status": "completed", "finalized": False, "updated_at": 100.0},
            "old-running": {"status": "running", "finalized": False, "updated_at": 100.0},
            "old-compensating": {"status": "compensating", "finalized": False, "updated_at": 1.0},
            "new-ended": {"status": "compensated", "finalized": True, "updated_at": 500.0},
            "old-failed": {"status": "compensation_failed", "finalized": True, "updated_at": 1.0},
        }
        for saga_id, fields in snaps.items():
            steps = {"a": ["done", 1, 0, 9.0, {"r": 1}, None, None]}
            snap = {"saga_id": saga_id, "kind": "k", "input": {}, "seq": 1, "steps": steps,
                    **fields}  # fmt: skip
            record = {"seq": 1, "event": {"tag": "started"}, "status": fields["status"]}
            active = not (fields["finalized"] and fields["status"] != "running")
            journal.commit(journal.plan_op(saga_id, record, snap, active=active))
        result = prune_journal(storage, ended_before=200.0)
        assert result.pruned_ids == ["old-ended"]
        assert (result.kept_running, result.kept_recent, result.kept_failed) == (3, 1, 1)
        for saga_id in snaps:
            assert len(journal.records(saga_id)) == (0 if saga_id == "old-ended" else 1)
            assert is_pruned(journal.load(saga_id) or {}) == (saga_id == "old-ended")
        # Asked for: the compensation_failed saga (its dead letter stays in its own store).
        failed = prune_journal(storage, ended_before=200.0, include_failed=True)
        assert failed.pruned_ids == ["old-failed"]


def test_a_dry_run_counts_what_a_prune_would_do_and_changes_nothing(
    tmp_path: Path, venue: PaperVenue
) -> None:
    var = tmp_path / "var"
    _run_buys(var, venue, ["dry-1", "dry-2"])
    with Storage(var / "state.lmdb") as storage:
        journal = SagaJournal(storage)
        records = {s: journal.records(s) for s in ("dry-1", "dry-2")}
        dry = prune_journal(storage, ended_before=FUTURE, dry_run=True)
        assert {s: journal.records(s) for s in records} == records
        assert not any(is_pruned(journal.load(s) or {}) for s in records)
        real = prune_journal(storage, ended_before=FUTURE)
    assert (dry.pruned, dry.records_deleted, dry.bytes_freed) == (
        real.pruned, real.records_deleted, real.bytes_freed,
    )  # fmt: skip
    assert dry.dry_run
    assert not real.dry_run


def test_a_pruned_saga_id_never_starts_a_second_saga_or_places_a_second_order(
    tmp_path: Path, venue: PaperVenue
) -> None:
    var = tmp_path / "var"
    _run_buys(var, venue, ["once"])
    orders = _venue_orders(venue)
    with Storage(var / "state.lmdb") as storage:
        assert prune_journal(storage, ended_before=FUTURE).pruned == 1
    with trading_node(var, venue) as node:
        start_saga(node.system, BUY, "once", _buy(venue))  # the same id again
        snap = await_saga(node.system, "once", timeout=30.0)
        assert snap.status == "completed"
        assert SagaJournal(node.system.storage).records("once") == []  # nothing ran again
        v = verdict(node, venue, ["once"])
        assert v["duplicates"] == {}
        assert v["ledger_vs_venue"] == {}, v["verdict"]
    assert _venue_orders(venue) == orders


def test_the_strategy_sequence_starts_past_pruned_saga_ids(
    tmp_path: Path, venue: PaperVenue
) -> None:
    var = tmp_path / "var"
    ids = [f"s7-{n:06d}" for n in range(3)]  # the demo strategy's ids for seed 7
    _run_buys(var, venue, ids)
    with Storage(var / "state.lmdb") as storage:
        assert prune_journal(storage, ended_before=FUTURE).pruned == 3
    config = node_config(strategy=True)
    strategy = config.trading.strategy.model_copy(update={"seed": 7, "max_sagas": 3})
    config = config.model_copy(
        update={"trading": config.trading.model_copy(update={"strategy": strategy})}
    )
    with trading_node(var, venue, config=config) as node:
        assert node.strategy is not None
        assert node.strategy.seq == 3  # not 0: no pruned id is launched again
    assert _venue_orders(venue) == 3


def test_replay_matches_after_a_prune_and_reports_the_pruned_sagas(
    tmp_path: Path, venue: PaperVenue, capsys: pytest.CaptureFixture[str]
) -> None:
    var = tmp_path / "var"
    _run_buys(var, venue, ["r-1", "r-2"])
    assert main(["journal", "--var-dir", str(var), "prune", "--keep-days", "0"]) == 0
    capsys.readouterr()
    assert main(["replay", "--var-dir", str(var), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["match"] is True, report["differences"]
    assert report["pruned_sagas"] == 2
    assert report["saga_outcomes"] == {"completed": 2}


def test_the_journal_cli_reports_stats_prunes_and_names_bad_arguments(
    tmp_path: Path, venue: PaperVenue, capsys: pytest.CaptureFixture[str]
) -> None:
    var = tmp_path / "var"
    _run_buys(var, venue, ["c-1"])
    assert main(["journal", "--var-dir", str(var), "--json", "stats"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert (stats["sagas"], stats["pruned"], stats["by_status"]) == (1, 0, {"completed": 1})
    assert stats["records"] >= 8
    # Ended just now: a 1-day retention keeps it.
    assert main(["journal", "--var-dir", str(var), "--json", "prune", "--keep-days", "1"]) == 0
    assert json.loads(capsys.readouterr().out)["kept_recent"] == 1
    assert main(["journal", "--var-dir", str(var), "--json", "prune", "--keep-days", "0"]) == 0
    assert json.loads(capsys.readouterr().out)["pruned"] == 1
    assert main(["journal", "--var-dir", str(var), "--json", "stats"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert (stats["pruned"], stats["records"]) == (1, 0)

    assert main(["journal", "--var-dir", str(var), "prune", "--keep-days", "-1"]) == 2
    assert "must be a finite number >= 0" in capsys.readouterr().err
    assert main(["journal", "--var-dir", str(var), "prune", "--keep-days", "soon"]) == 2
    assert "not a number of days: 'soon'" in capsys.readouterr().err
    assert main(["journal", "--var-dir", str(tmp_path / "nope"), "stats"]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_compact_snapshot_keeps_statuses_attempts_and_errors_and_drops_results() -> None:
    snap = {
        "saga_id": "x", "kind": "k", "status": "compensated", "error": "boom", "seq": 7,
        "steps": {"a": ["compensated", 2, 1, 5.0, {"big": "result"}, "e", 6.0]},
        "outbox": [{"tag": "finished"}], "current": "a", "finalized": True,
    }  # fmt: skip
    compact = compact_snapshot(snap, records=7, at=123.0)
    assert compact["steps"] == {"a": ["compensated", 2, 1, None, None, "e", None]}
    assert (compact["status"], compact["error"], compact["seq"]) == ("compensated", "boom", 7)
    assert (compact["outbox"], compact["current"]) == ([], None)
    assert (compact["pruned_at"], compact["pruned_records"]) == (123.0, 7)
    assert snap["steps"]["a"][4] == {"big": "result"}  # the input is not changed
