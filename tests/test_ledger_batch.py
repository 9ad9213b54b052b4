"""Ledger batches: post_fills/post_many post each fill once, all or nothing, exactly."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator
from decimal import Decimal, localcontext
from pathlib import Path
from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from phalanx.errors import StorageError
from phalanx.storage import Fill, Ledger, Storage, plan_fill, plan_opening
from phalanx.storage._ledger import _EXACT, _entry, _fill_entry

D = Decimal


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    storage = Storage(tmp_path / "state.lmdb", sync=False)
    yield Ledger(storage)
    storage.close()


def _fill(n: int, side: str = "buy", base: str = "BTC") -> Fill:
    return Fill(f"paper:{base}USDT:{n}", side, base, "USDT", D("0.001"), D("43000.1"),  # type: ignore[arg-type]
                D("0.043"), f"o{n}")  # fmt: skip


def _expected(fills: list[Fill]) -> dict[str, tuple[Decimal, Decimal]]:
    out: dict[str, tuple[Decimal, Decimal]] = {}
    for f in fills:
        for p in plan_fill(f).postings:
            value, quantity = out.get(p.account, (D(0), D(0)))
            signed = p.value if p.side == "debit" else -p.value
            out[p.account] = (value + signed, quantity + p.quantity)
    return out


decimals = st.decimals(
    allow_nan=False, allow_infinity=False, min_value=D("1e-12"), max_value=D(10**9)
)


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(["buy", "sell"]),
    decimals,
    decimals,
    st.one_of(st.just(D(0)), decimals),
    st.sampled_from(["BTC", "ETH"]),
    st.one_of(st.none(), st.text(max_size=5)),
)
def test_the_fast_fill_encoding_equals_the_planned_transaction(
    side: str, qty: Decimal, price: Decimal, fee: Decimal, base: str, order_id: str | None
) -> None:
    fill = Fill("f:1", side, base, "USDT", qty, price, fee, order_id)  # type: ignore[arg-type]
    with localcontext(_EXACT):
        fast = _fill_entry(fill)
    assert fast == _entry(plan_fill(fill))  # same marker, record bytes, deltas


def test_a_batch_posts_each_fill_once_duplicates_and_replays_included(ledger: Ledger) -> None:
    a, b, c = _fill(1), _fill(2, "sell"), _fill(3)
    assert ledger.post_fill(a)
    commits = ledger._storage.stats()["commits"]
    assert ledger.post_fills([a, b, b, c, b]) == [False, True, False, True, False]
    assert ledger._storage.stats()["commits"] == commits + 1  # one write op, one commit
    assert ledger.post_fills([c, b, a]) == [False, False, False]  # a later batch: replays
    assert not ledger.post_fill(b)
    assert ledger.balances() == _expected([a, b, c])
    assert ledger.trial_balance()["difference"] == 0
    assert all(ledger.has_fill(f.fill_id) for f in (a, b, c))


def test_an_empty_batch_commits_nothing(ledger: Ledger) -> None:
    commits = ledger._storage.stats()["commits"]
    assert ledger.post_fills([]) == []
    assert ledger.post_many([]) == []
    assert ledger._storage.stats()["commits"] == commits


def test_an_invalid_fill_refuses_the_whole_batch_and_writes_nothing(ledger: Ledger) -> None:
    bad = Fill("paper:BTCUSDT:bad", "buy", "BTC", "USDT", D(0), D(1), D(0))
    with pytest.raises(ValueError, match="fill paper:BTCUSDT:bad: quantity and price"):
        ledger.post_fills([_fill(1), bad, _fill(2)])
    assert ledger.balances() == {}
    assert not ledger.has_fill(_fill(1).fill_id)
    assert ledger.post_fills([_fill(1), _fill(2)]) == [True, True]  # nothing half-applied


def test_an_unbalanced_transaction_refuses_the_whole_post_many(ledger: Ledger) -> None:
    good = plan_fill(_fill(1))
    lopsided = plan_fill(_fill(2)).postings[:2]
    bad = type(good)("bad", lopsided)
    with pytest.raises(StorageError, match="bad does not balance"):
        ledger.post_many([good, bad])
    assert ledger.balances() == {}
    assert ledger.post_many([good, good]) == [True, False]
    assert ledger.balances() == _expected([_fill(1)])


def test_a_batch_that_cannot_be_stored_posts_none_of_its_fills(tmp_path: Path) -> None:
    with Storage(tmp_path / "small", map_size=2**16, max_map_size=2**16, sync=False) as st:
        ledger = Ledger(st)
        fills = [_fill(n) for n in range(2000)]
        with pytest.raises(StorageError, match="would exceed"):
            ledger.post_fills(fills)
        assert ledger.balances() == {}
        assert not any(ledger.has_fill(f.fill_id) for f in fills[:10])
        assert ledger.post_fills(fills[:3]) == [True, True, True]  # the ledger still works
        assert ledger.balances() == _expected(fills[:3])


def test_a_batch_that_outgrows_the_map_is_retried_whole_after_growth(tmp_path: Path) -> None:
    with Storage(tmp_path / "grow", map_size=2**16, sync=False) as st:
        ledger = Ledger(st)
        fills = [_fill(n, "buy" if n % 2 else "sell") for n in range(2000)]
        assert ledger.post_fills(fills) == [True] * 2000
        assert st.stats()["grows"] >= 1
        assert ledger.balances() == _expected(fills)
        assert ledger.trial_balance()["difference"] == 0


def test_batch_arithmetic_is_exact_beyond_the_default_28_digits(ledger: Ledger) -> None:
    huge = D("1e30")
    assert ledger.post(plan_opening("exact", {"USDT": huge}, {}))
    fill = Fill("f-exact", "buy", "BTC", "USDT", D("0.12345678901234"), D("43000.123456789012"),
                D("1e-18"))  # fmt: skip
    assert ledger.post_fills([fill]) == [True]
    with localcontext(prec=100):
        exact = huge - (fill.quantity * fill.price + fill.fee)
    assert ledger.balances()["assets:USDT"][1] == exact
    assert ledger.trial_balance()["difference"] == 0


pool = [_fill(n, "buy" if n % 3 else "sell", "BTC" if n % 2 else "ETH") for n in range(12)]


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(st.lists(st.integers(0, len(pool) - 1), max_size=8), max_size=8))
def test_any_mix_of_batches_and_replays_posts_each_fill_exactly_once(
    tmp_path_factory: pytest.TempPathFactory, batches: list[list[int]]
) -> None:
    with Storage(tmp_path_factory.mktemp("mix") / "s", sync=False) as st:
        ledger = Ledger(st)
        seen: list[int] = []
        for i, batch in enumerate(batches):
            fills = [pool[n] for n in batch]
            if i % 3 == 2:  # single posts too: the same markers guard both paths
                results = [ledger.post_fill(f) for f in fills]
            else:
                results = ledger.post_fills(fills)
            for n, posted in zip(batch, results, strict=True):
                assert posted == (n not in seen)
                if posted:
                    seen.append(n)
        assert ledger.balances() == _expected([pool[n] for n in seen])
        assert ledger.trial_balance()["difference"] == 0


def test_balances_written_by_another_process_between_posts_are_kept(tmp_path: Path) -> None:
    # The ledger caches the balances it committed; a txn committed in between by
    # another writer (here another process) must make it read them again.
    path = tmp_path / "state.lmdb"
    with Storage(path, sync=False) as st:
        ledger = Ledger(st)
        assert ledger.post_fill(_fill(1))
        script = (
            "import lmdb, msgpack, sys\n"
            "env = lmdb.open(sys.argv[1], max_dbs=32, subdir=True)\n"
            "db = env.open_db(b'ledger_balances')\n"
            "with env.begin(write=True) as t:\n"
            "    t.put(b'assets:BTC', msgpack.packb(['1000', '5']), db=db)\n"
            "env.close()\n"
        )
        subprocess.run([sys.executable, "-c", script, str(path)], check=True, timeout=60)
        assert ledger.post_fill(_fill(2, "buy"))
        notional = D("0.001") * D("43000.1")
        assert ledger.balances()["assets:BTC"] == (D(1000) + notional, D(5) + D("0.001"))
        raw = st.read(lambda t: t.get(b"assets:BTC", db=st.db("ledger_balances")))
        assert msgpack.unpackb(raw) == [str(D(1000) + notional), "5.001"]


def test_a_batch_grouped_with_a_failing_op_commits_once_and_whole(
    ledger: Ledger, monkeypatch: pytest.MonkeyPatch
) -> None:
    st = ledger._storage
    ops: list[Any] = []
    monkeypatch.setattr(st, "write_now", lambda op, timeout=None: ops.append(op) or [])
    batch, single = [_fill(1), _fill(2, "sell"), _fill(1)], _fill(3)
    ledger.post_fills(batch)
    ledger.post_fill(single)
    monkeypatch.undo()

    def failing(t: Any) -> None:
        raise ValueError("neighbour fails: the txn holding the batch aborts")

    gate, parked = threading.Event(), threading.Event()
    st.submit(lambda t: (parked.set(), gate.wait()))
    assert parked.wait(10)
    futures = [st.submit(ops[0]), st.submit(failing), st.submit(ops[1])]
    gate.set()
    st.flush()
    assert futures[0].result() == [True, True, False]
    assert isinstance(futures[1].exception(), ValueError)
    assert futures[2].result() is True
    assert ledger.balances() == _expected([_fill(1), _fill(2, "sell"), single])
    assert ledger.trial_balance()["difference"] == 0
