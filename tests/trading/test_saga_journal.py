"""The saga journal in LMDB: records, snapshots, the active index, atomic plan commits."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgpack
import pytest

from phalanx.storage import Storage
from phalanx.storage._journal import JournalConflict, SagaJournal, record_key


@pytest.fixture
def journal(tmp_path: Path) -> Any:
    with Storage(tmp_path / "state.lmdb", sync=False) as storage:
        yield SagaJournal(storage), storage


def _snap(saga_id: str, status: str, seq: int) -> dict[str, Any]:
    return {"saga_id": saga_id, "kind": "k", "status": status, "seq": seq}


def test_records_are_ordered_by_big_endian_seq_per_saga(journal: Any) -> None:
    j, _ = journal
    for seq in (1, 2, 256, 3):
        j.commit(j.record_op("a", {"seq": seq}))
    j.commit(j.record_op("a-1", {"seq": 1}))  # a longer id sharing the prefix "a"
    assert [r["seq"] for r in j.records("a")] == [1, 2, 3, 256]
    assert [r["seq"] for r in j.records("a-1")] == [1]
    assert record_key("a", 256) == b"a\x00" + (256).to_bytes(8, "big")


def test_a_second_record_with_the_same_seq_is_a_conflict_and_writes_nothing(
    journal: Any,
) -> None:
    j, _ = journal
    j.commit(j.plan_op("a", {"seq": 1, "v": "first"}, _snap("a", "running", 1), active=True))
    with pytest.raises(JournalConflict, match="record 1 exists"):
        j.commit(
            j.plan_op("a", {"seq": 1, "v": "second"}, _snap("a", "completed", 1), active=False)
        )
    assert j.records("a") == [{"seq": 1, "v": "first"}]
    assert j.load("a")["status"] == "running"  # the snapshot of the failed plan was not kept
    assert j.active_ids() == ["a"]


def test_create_is_check_and_insert(journal: Any) -> None:
    j, _ = journal
    assert j.commit(j.create_op("a", {"seq": 1}, _snap("a", "running", 1))) is True
    assert j.commit(j.create_op("a", {"seq": 1}, _snap("a", "completed", 1))) is False
    assert j.load("a")["status"] == "running"
    assert len(j.records("a")) == 1


def test_active_index_and_outcome_counts_follow_the_snapshots(journal: Any) -> None:
    j, _ = journal
    rows = [("a", "running", True), ("b", "compensating", True), ("c", "completed", False),
            ("d", "compensated", False), ("e", "compensation_failed", False),
            ("f", "completed", True)]  # fmt: skip
    for saga_id, status, active in rows:
        j.commit(j.snapshot_op(saga_id, _snap(saga_id, status, 1), active=active))
    assert j.active_ids() == ["a", "b", "f"]
    assert j.outcomes() == {
        "completed": 2, "compensated": 1, "running": 2, "compensation_failed": 1,
    }  # fmt: skip
    j.commit(j.snapshot_op("f", _snap("f", "completed", 2), active=False))
    assert j.active_ids() == ["a", "b"]
    assert j.load("zzz") is None
    assert [j.is_active(s) for s in ("a", "b", "c", "f", "zzz")] == [
        True,
        True,
        False,
        False,
        False,
    ]


def test_op_builders_commit_with_a_callers_own_writes_in_one_transaction(journal: Any) -> None:
    j, storage = journal
    other = storage.db("other")
    plan = j.plan_op("a", {"seq": 1}, _snap("a", "running", 1), active=True)

    def op(txn: Any) -> None:
        plan(txn)
        txn.put(b"command", b"sent", db=other)
        raise RuntimeError("abort the whole transaction")

    with pytest.raises(RuntimeError):
        storage.write_now(op)
    assert j.load("a") is None
    assert j.records("a") == []
    assert j.active_ids() == []
    assert storage.read(lambda txn: txn.get(b"command", db=other)) is None


def test_a_packed_snapshot_is_stored_as_is_and_loads_like_the_dict(journal: Any) -> None:
    j, _ = journal
    j.commit(j.snapshot_op("a", _snap("a", "running", 1), active=True))
    packed = msgpack.packb(_snap("b", "running", 1), use_bin_type=True)
    j.commit(j.snapshot_op("b", packed, active=True))
    assert j.load("b") == _snap("b", "running", 1)
    assert j.active_ids() == ["a", "b"]


def test_an_indexed_saga_stays_indexed_across_snapshots_until_it_is_inactive(
    journal: Any,
) -> None:
    j, _ = journal
    for seq in (1, 2, 3):  # the index entry is written once, then found in place
        j.commit(j.plan_op("a", {"seq": seq}, _snap("a", "running", seq), active=True))
        assert j.active_ids() == ["a"]
    j.commit(j.plan_op("a", {"seq": 4}, _snap("a", "completed", 4), active=False))
    assert j.active_ids() == []
    assert j.load("a") == _snap("a", "completed", 4)
