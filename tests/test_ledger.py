"""The double-entry ledger: balanced, idempotent per fill, and equal to the venue."""

from __future__ import annotations

import dataclasses
import decimal
import threading
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import ccxt
import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from phalanx.actors.venue import PaperVenue
from phalanx.errors import StorageError
from phalanx.storage import Fill, Ledger, Posting, Storage, Transaction, plan_fill, plan_opening


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    storage = Storage(tmp_path / "state.lmdb", sync=False)
    yield Ledger(storage)
    storage.close()


amounts = st.decimals(min_value=Decimal("0.00001"), max_value=Decimal(1000), places=5)


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from(["buy", "sell"]),
    amounts,
    amounts,
    st.decimals(min_value=0, max_value=50, places=8),
)
def test_every_planned_fill_balances_fees_included(
    side: str, qty: Decimal, price: Decimal, fee: Decimal
) -> None:
    txn = plan_fill(Fill("f", side, "BTC", "USDT", qty, price, fee))  # type: ignore[arg-type]
    assert txn.balanced()
    by_account = {p.account: p for p in txn.postings}
    assert by_account["expenses:fees:USDT"].value == fee
    if side == "buy":
        assert by_account["assets:BTC"].side == "debit"
        assert by_account["assets:BTC"].value == qty * price
        assert by_account["assets:USDT"].value == qty * price + fee  # cash: notional plus fee


def test_replaying_a_fill_never_posts_it_twice(ledger: Ledger) -> None:
    fill = Fill(
        "paper:BTCUSDT:1", "buy", "BTC", "USDT", Decimal("0.1"), Decimal(43000), Decimal("4.3")
    )
    assert ledger.post_fill(fill)
    for _ in range(3):
        assert not ledger.post_fill(fill)
    balances = ledger.balances()
    assert balances["assets:BTC"] == (Decimal(4300), Decimal("0.1"))
    assert balances["assets:USDT"] == (Decimal("-4304.3"), Decimal("-4304.3"))
    assert ledger.trial_balance()["difference"] == 0


def test_invalid_fills_are_refused(ledger: Ledger) -> None:
    with pytest.raises(ValueError, match="must be > 0"):
        ledger.post_fill(Fill("x", "buy", "BTC", "USDT", Decimal(0), Decimal(1), Decimal(0)))


def test_ledger_matches_the_venue_after_real_trades(ledger: Ledger) -> None:
    with PaperVenue(seed=5) as venue:
        ex = ccxt.binance(venue.ccxt_config())
        ex.load_markets()
        opening = {a: Decimal(b["free"]) for a, b in venue.engine.balances("paper-key").items()}
        assert ledger.post(
            plan_opening("paper", opening, {"BTC": Decimal(43000), "ETH": Decimal(2300)})
        )
        ex.create_order("BTC/USDT", "market", "buy", 0.13)
        ex.create_order("BTC/USDT", "market", "sell", 0.04)
        ex.create_order("ETH/USDT", "market", "buy", 2.5)
        fills = []
        for symbol, base in (("BTC/USDT", "BTC"), ("ETH/USDT", "ETH")):
            for t in ex.fetch_my_trades(symbol):
                fills.append(
                    Fill(
                        f"paper:{t['symbol']}:{t['id']}", t["side"], base, "USDT",
                        Decimal(str(t["amount"])), Decimal(str(t["price"])),
                        Decimal(str(t["fee"]["cost"])), t["order"],
                    )
                )  # fmt: skip
        assert len(fills) >= 4
        assert all(ledger.post_fill(f) for f in fills)
        assert not any(ledger.post_fill(f) for f in fills)  # a full replay changes nothing
        venue_totals = {
            a: Decimal(b["free"]) + Decimal(b["locked"])
            for a, b in venue.engine.balances("paper-key").items()
        }
    assert ledger.verify(venue_totals) == {}
    trial = ledger.trial_balance()
    assert trial["debits"] == trial["credits"]


def test_arithmetic_is_exact_beyond_the_default_28_digits(ledger: Ledger) -> None:
    qty, price, fee = Decimal("0.12345678901234"), Decimal("43000.123456789012"), Decimal("1e-18")
    txn = plan_fill(Fill("f-exact", "buy", "BTC", "USDT", qty, price, fee))
    notional = Decimal("5308.65716910937319545924440808")  # 30 digits: exactly qty * price
    assert txn.postings[0].value == notional
    assert txn.balanced()
    assert ledger.post(txn)
    huge = Decimal("1e30")
    assert ledger.post(plan_opening("exact", {"USDT": huge}, {}))
    with decimal.localcontext(prec=100):
        exact = huge - (notional + fee)  # 49 significant digits
    assert ledger.balances()["assets:USDT"][1] == exact
    assert decimal.Context(prec=28).subtract(huge, notional + fee) != exact  # what rounding gave
    assert ledger.trial_balance()["difference"] == 0


def test_fast_built_postings_equal_the_dataclass(ledger: Ledger) -> None:
    txn = plan_fill(Fill("f", "sell", "ETH", "USDT", Decimal(2), Decimal(2300), Decimal("0.5")))
    rebuilt = tuple(Posting(**dataclasses.asdict(p)) for p in txn.postings)
    assert txn.postings == rebuilt
    assert [hash(p) for p in txn.postings] == [hash(p) for p in rebuilt]
    assert {f.name for f in dataclasses.fields(Posting)} == set(vars(txn.postings[0]))
    with pytest.raises(dataclasses.FrozenInstanceError):
        txn.postings[0].value = Decimal(0)  # type: ignore[misc]


def test_unbalanced_or_malformed_transactions_are_refused_and_write_nothing(
    ledger: Ledger,
) -> None:
    one = Decimal(1)
    lopsided = Transaction("bad", (Posting("assets:BTC", "debit", one, one),))
    with pytest.raises(StorageError, match="bad does not balance"):
        ledger.post(lopsided)
    sideways = Transaction(
        "odd",
        (
            Posting("assets:BTC", "debit", one, one),
            Posting("assets:USDT", "sideways", one, one),  # type: ignore[arg-type]
        ),
    )
    with pytest.raises(StorageError, match="odd has a posting side 'sideways'"):
        ledger.post(sideways)
    assert ledger.balances() == {}


def test_on_disk_records_keep_their_msgpack_format(ledger: Ledger) -> None:
    fill = Fill(
        "paper:1", "buy", "BTC", "USDT", Decimal("0.1"), Decimal(43000), Decimal("4.3"), "o1"
    )
    assert ledger.post_fill(fill)
    st = ledger._storage
    raw = st.read(lambda t: dict(t.cursor(db=st.db("ledger_balances")).iternext()))
    assert {k: msgpack.unpackb(v) for k, v in raw.items()} == {
        b"assets:BTC": ["4300.0", "0.1"],
        b"expenses:fees:USDT": ["4.3", "4.3"],
        b"assets:USDT": ["-4304.3", "-4304.3"],
    }
    record = st.read(lambda t: t.get(b"fill:paper:1", db=st.db("ledger")))
    assert msgpack.unpackb(record) == {
        "key": "fill:paper:1",
        "memo": "buy o1",
        "postings": [
            ["assets:BTC", "debit", "4300.0", "0.1"],
            ["expenses:fees:USDT", "debit", "4.3", "4.3"],
            ["assets:USDT", "credit", "4304.3", "-4304.3"],
        ],
        "currency": "USDT",  # added (readers that ignore it are unaffected): the values' currency
    }
    assert st.read(lambda t: t.get(b"fill:paper:1", db=st.db("ledger_fills"))) == b"1"


def _fills(prefix: str, n: int) -> list[Fill]:
    return [
        Fill(f"{prefix}{i}", "buy" if i % 2 else "sell", "BTC", "USDT",
             Decimal("0.001"), Decimal("43000.1"), Decimal("0.043"))
        for i in range(n)
    ]  # fmt: skip


def _expected(fills: list[Fill]) -> dict[str, tuple[Decimal, Decimal]]:
    out: dict[str, tuple[Decimal, Decimal]] = {}
    for f in fills:
        for p in plan_fill(f).postings:
            value, quantity = out.get(p.account, (Decimal(0), Decimal(0)))
            signed = p.value if p.side == "debit" else -p.value
            out[p.account] = (value + signed, quantity + p.quantity)
    return out


def test_two_ledgers_posting_in_one_transaction_see_each_others_balances(
    ledger: Ledger, monkeypatch: pytest.MonkeyPatch
) -> None:
    st = ledger._storage
    other = Ledger(st)
    ops: list[Any] = []
    monkeypatch.setattr(st, "write_now", lambda op, timeout=None: ops.append(op) or True)
    fills = _fills("mixed-", 6)
    for i, f in enumerate(fills):
        (ledger if i % 2 else other).post_fill(f)
    monkeypatch.undo()
    assert st.write(lambda t: [op(t) for op in ops]) == [True] * 6  # all in ONE txn
    assert ledger.balances() == _expected(fills)
    assert ledger.post_fill(_fills("after-", 1)[0])  # a later txn reads what was committed
    assert ledger.balances() == _expected(fills + _fills("after-", 1))


def test_a_posting_rerun_after_an_aborted_transaction_counts_once(
    ledger: Ledger, monkeypatch: pytest.MonkeyPatch
) -> None:
    st = ledger._storage
    ops: list[Any] = []
    monkeypatch.setattr(st, "write_now", lambda op, timeout=None: ops.append(op) or True)
    fills = _fills("rerun-", 4)
    for f in fills:
        ledger.post_fill(f)
    monkeypatch.undo()

    def failing(t: Any) -> None:
        raise ValueError("neighbour fails: the txn holding the first postings aborts")

    gate = threading.Event()
    parked = threading.Event()
    st.submit(lambda t: (parked.set(), gate.wait()))
    assert parked.wait(10)
    futures = [st.submit(op) for op in ops[:2]] + [st.submit(failing)]
    futures += [st.submit(op) for op in ops[2:]]
    gate.set()
    st.flush()
    assert [f.exception() is None for f in futures] == [True, True, False, True, True]
    assert ledger.balances() == _expected(fills)


def test_concurrent_posters_keep_the_books_exact(tmp_path: Path) -> None:
    with Storage(tmp_path / "state.lmdb", sync=False) as st:
        ledger = Ledger(st)
        per_thread = [_fills(f"t{n}-", 40) for n in range(8)]
        results: list[bool] = []

        def post(fills: list[Fill]) -> None:
            for f in fills:
                results.append(ledger.post_fill(f))
                results.append(ledger.post_fill(f))  # a replay: False

        threads = [threading.Thread(target=post, args=(fills,)) for fills in per_thread]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert results.count(True) == 320
        assert results.count(False) == 320
        assert ledger.balances() == _expected([f for fills in per_thread for f in fills])
        assert ledger.trial_balance()["difference"] == 0


def test_has_fill_is_true_exactly_once_the_fill_is_posted(tmp_path: Path) -> None:
    with Storage(tmp_path / "s.lmdb", sync=False) as storage:
        ledger = Ledger(storage)
        fill = Fill("paper:BTCUSDT:9", "buy", "BTC", "USDT", Decimal("0.5"), Decimal("100"),
                    Decimal("0.05"))  # fmt: skip
        assert not ledger.has_fill(fill.fill_id)
        assert ledger.post_fill(fill)
        assert ledger.has_fill(fill.fill_id)
        assert not ledger.has_fill("paper:BTCUSDT:10")
