"""PositionStore: marker and state commit together; an op run twice counts the fill once."""

from __future__ import annotations

import contextlib
from decimal import Decimal
from pathlib import Path

from phalanx.actors._position_model import PositionState
from phalanx.storage import Storage
from phalanx.storage._positions import PositionStore

D = Decimal


def test_an_op_run_twice_in_one_transaction_applies_the_fill_once(tmp_path: Path) -> None:
    with Storage(tmp_path / "db", sync=False) as storage:
        store = PositionStore(storage)
        op = store.apply_fill_op("BTC/USDT", "t1", "buy", D(1), D(100), D("0.1"))

        def twice(txn: object) -> tuple[object, object]:
            return op(txn), op(txn)  # type: ignore[arg-type]

        (applied, state), (again, same) = storage.write_now(twice)
        assert (applied, again) == (True, False)
        assert state == same == store.load("BTC/USDT")
        assert (state.quantity, state.realized_pnl, state.fills) == (D(1), D("-0.1"), 1)


def test_a_failed_transaction_keeps_neither_marker_nor_state(tmp_path: Path) -> None:
    with Storage(tmp_path / "db", sync=False) as storage:
        store = PositionStore(storage)
        op = store.apply_fill_op("BTC/USDT", "t1", "buy", D(1), D(100), D(0))

        def then_fail(txn: object) -> None:
            op(txn)  # type: ignore[arg-type]
            raise RuntimeError("crash after the writes, before the commit")

        with contextlib.suppress(RuntimeError):
            storage.write_now(then_fail)
        assert not store.applied("BTC/USDT", "t1")
        assert store.load("BTC/USDT") == PositionState("BTC/USDT")
        assert store.apply_fill("BTC/USDT", "t1", "buy", D(1), D(100), D(0))[0] is True


def test_trade_ids_are_scoped_by_symbol(tmp_path: Path) -> None:
    with Storage(tmp_path / "db", sync=False) as storage:
        store = PositionStore(storage)
        assert store.apply_fill("BTC/USDT", "1", "buy", D(1), D(100), D(0))[0]
        assert store.apply_fill("ETH/USDT", "1", "buy", D(2), D(10), D(0))[0]
        assert sorted(store.symbols()) == ["BTC/USDT", "ETH/USDT"]
        assert store.load("ETH/USDT").quantity == D(2)
        assert list(store.fills("BTC/USDT")) == ["1"]
