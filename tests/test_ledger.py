"""The double-entry ledger: balanced, idempotent per fill, and equal to the venue."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import ccxt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from phalanx.actors.venue import PaperVenue
from phalanx.storage import Fill, Ledger, Storage, plan_fill, plan_opening


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
