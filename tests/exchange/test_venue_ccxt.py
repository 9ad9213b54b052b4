"""The paper venue through an unmodified ccxt.binance, over real HTTP on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import ccxt
import pytest

from phalanx import Directive
from phalanx.actors.exchange import connection_decider
from phalanx.actors.venue import Fault, PaperVenue, venue_ccxt_config

SYMBOL = "BTC/USDT"


@pytest.fixture
def venue() -> Iterator[PaperVenue]:
    with PaperVenue(seed=7) as v:
        yield v


@pytest.fixture
def exchange(venue: PaperVenue) -> ccxt.binance:
    ex = ccxt.binance(venue.ccxt_config())
    ex.load_markets()
    return ex


def test_load_markets_makes_exactly_one_call(venue: PaperVenue) -> None:
    ex = ccxt.binance(venue.ccxt_config())
    markets = ex.load_markets()
    assert {"BTC/USDT", "ETH/USDT"} <= set(markets)
    assert [r["path"] for r in venue.requests] == ["/api/v3/exchangeInfo"]
    assert markets[SYMBOL]["limits"]["amount"]["min"] == pytest.approx(0.00001)


def test_plain_ccxt_binance_trades_with_correct_unified_results(
    exchange: ccxt.binance,
) -> None:
    ticker = exchange.fetch_ticker(SYMBOL)
    assert ticker["bid"] < ticker["ask"]
    assert exchange.fetch_balance()["USDT"]["free"] == 100_000

    market = exchange.create_order(SYMBOL, "market", "buy", 0.07, params={"clientOrderId": "m-1"})
    assert market["clientOrderId"] == "m-1"
    assert market["status"] == "closed"
    assert market["filled"] == pytest.approx(0.07)
    assert market["remaining"] == pytest.approx(0.0)
    assert len(market["trades"]) == 2  # 0.05 at the best ask level, 0.02 at the next
    assert market["fee"]["currency"] == "USDT"
    assert market["fee"]["cost"] == pytest.approx(market["cost"] * 0.001, rel=1e-6)

    limit = exchange.create_order(
        SYMBOL, "limit", "buy", 0.01, 30000, params={"clientOrderId": "l-1"}
    )
    assert (limit["status"], limit["filled"], limit["remaining"]) == ("open", 0.0, 0.01)
    assert exchange.fetch_order(limit["id"], SYMBOL)["status"] == "open"
    by_client = exchange.fetch_order(None, SYMBOL, {"clientOrderId": "l-1"})
    assert by_client["id"] == limit["id"]
    assert [o["id"] for o in exchange.fetch_open_orders(SYMBOL)] == [limit["id"]]
    canceled = exchange.cancel_order(limit["id"], SYMBOL)
    assert canceled["status"] == "canceled"
    assert exchange.fetch_open_orders(SYMBOL) == []
    with pytest.raises(ccxt.OrderNotFound):
        exchange.cancel_order(limit["id"], SYMBOL)

    trades = exchange.fetch_my_trades(SYMBOL)
    assert [t["order"] for t in trades] == [market["id"], market["id"]]
    assert sum(t["amount"] for t in trades) == pytest.approx(0.07)
    assert all(t["fee"]["currency"] == "USDT" for t in trades)
    balance = exchange.fetch_balance()
    assert balance["BTC"]["free"] == pytest.approx(1.07)
    assert balance["USDT"]["free"] == pytest.approx(
        100_000 - market["cost"] - market["fee"]["cost"]
    )


def test_partial_fill_maps_to_open_and_cancel_keeps_it_and_an_exhausted_market_order_expires(
    exchange: ccxt.binance,
) -> None:
    ask = exchange.fetch_ticker(SYMBOL)["ask"]  # the best ask level holds 0.05 BTC
    partial = exchange.create_order(
        SYMBOL, "limit", "buy", 0.08, ask, params={"clientOrderId": "p-1"}
    )
    assert partial["status"] == "open"  # Binance PARTIALLY_FILLED
    assert (partial["filled"], partial["remaining"]) == (pytest.approx(0.05), pytest.approx(0.03))
    assert partial["fee"]["cost"] == pytest.approx(partial["cost"] * 0.001, rel=1e-6)
    canceled = exchange.cancel_order(None, SYMBOL, {"clientOrderId": "p-1"})
    assert canceled["status"] == "canceled"
    assert (canceled["filled"], canceled["remaining"]) == (pytest.approx(0.05), pytest.approx(0.03))
    # 20 levels x 0.05 = 1 BTC of book: a market buy of 1.2 fills 1 and expires the rest.
    big = exchange.create_order(SYMBOL, "market", "buy", 1.2, params={"clientOrderId": "m-2"})
    assert big["status"] == "expired"
    assert (big["filled"], big["remaining"]) == (pytest.approx(1.0), pytest.approx(0.2))
    assert exchange.fetch_balance()["BTC"]["total"] == pytest.approx(1 + 0.05 + 1.0)


def test_a_resting_limit_order_fills_when_the_walk_crosses_it(
    venue: PaperVenue, exchange: ccxt.binance
) -> None:
    ask = exchange.fetch_ticker(SYMBOL)["ask"]
    order = exchange.create_order(SYMBOL, "limit", "buy", 0.01, round(ask * 0.999, 2))
    assert order["status"] == "open"
    for _ in range(500):
        venue.engine.step()
        if exchange.fetch_order(order["id"], SYMBOL)["status"] == "closed":
            break
    final = exchange.fetch_order(order["id"], SYMBOL)
    assert final["status"] == "closed"
    [trade] = exchange.fetch_my_trades(SYMBOL)
    assert trade["takerOrMaker"] == "maker"


def test_my_trades_by_order_id_returns_only_that_orders_trades(
    venue: PaperVenue, exchange: ccxt.binance
) -> None:
    first = exchange.create_order(SYMBOL, "market", "buy", 0.01)
    second = exchange.create_order(SYMBOL, "market", "buy", 0.02)
    assert {t["order"] for t in exchange.fetch_my_trades(SYMBOL)} == {first["id"], second["id"]}
    only = exchange.fetch_my_trades(SYMBOL, None, None, {"orderId": second["id"]})
    assert only
    assert {t["order"] for t in only} == {second["id"]}
    assert sum(t["amount"] for t in only) == pytest.approx(0.02)
    [request] = [r for r in venue.requests if r["path"] == "/api/v3/myTrades"][-1:]
    assert f"orderId={second['id']}" in request["query"]


@pytest.mark.parametrize(
    ("kind", "error", "directive"),
    [
        ("http_500", ccxt.ExchangeNotAvailable, Directive.RESTART),
        ("http_502", ccxt.ExchangeNotAvailable, Directive.RESTART),
        ("http_503", ccxt.ExchangeNotAvailable, Directive.RESTART),
        ("http_429", ccxt.DDoSProtection, Directive.RESTART),
        ("http_418", ccxt.DDoSProtection, Directive.RESTART),
        ("nonce", ccxt.InvalidNonce, Directive.RESTART),
        ("timeout", ccxt.RequestTimeout, Directive.RESTART),
        ("lost", ccxt.NetworkError, Directive.RESTART),
    ],
)
def test_each_injected_fault_gives_the_ccxt_class_in_notes_and_its_directive(
    venue: PaperVenue,
    exchange: ccxt.binance,
    kind: str,
    error: type[Exception],
    directive: Directive,
) -> None:
    exchange.timeout = 300  # ms: the "timeout" fault holds the request longer
    venue.inject(Fault(kind, endpoint="GET /api/v3/ticker/24hr", hold_s=1.0))
    with pytest.raises(error) as caught:
        exchange.fetch_ticker(SYMBOL)
    assert connection_decider(caught.value) is directive
    assert exchange.fetch_ticker(SYMBOL)["last"] > 0  # one-shot: the next call is clean


def test_ban_responses_carry_retry_after(venue: PaperVenue) -> None:
    import urllib.error
    import urllib.request

    venue.inject(Fault("http_418", endpoint="GET /api/v3/ticker/24hr", retry_after_s=7))
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(f"{venue.url}/api/v3/ticker/24hr?symbol=BTCUSDT", timeout=5)
    assert caught.value.code == 418
    assert caught.value.headers["Retry-After"] == "7"
    assert b"banned until" in caught.value.read()


def test_permanent_errors_reply_without_retry(venue: PaperVenue, exchange: ccxt.binance) -> None:
    with pytest.raises(ccxt.InsufficientFunds) as funds:
        exchange.create_order(SYMBOL, "market", "buy", 99, params={"clientOrderId": "big"})
    assert connection_decider(funds.value) is Directive.RESUME
    with pytest.raises(ccxt.InvalidOrder):  # LOT_SIZE (ccxt itself truncates off-step amounts)
        exchange.create_order(SYMBOL, "limit", "buy", 150, 30000)  # above maxQty 100
    with pytest.raises(ccxt.BadRequest):  # -1013 NOTIONAL: below the minimum notional
        exchange.create_order(SYMBOL, "limit", "buy", 0.0001, 30000)
    bad_signature = ccxt.binance({**venue.ccxt_config(), "secret": "wrong"})
    with pytest.raises(ccxt.AuthenticationError) as auth:
        bad_signature.fetch_balance()
    assert connection_decider(auth.value) is Directive.STOP  # bad keys stop the connection
    unknown_key = ccxt.binance({**venue.ccxt_config(), "apiKey": "who"})
    with pytest.raises(ccxt.AuthenticationError):
        unknown_key.fetch_balance()
    assert venue.engine.accepted == []  # none of these placed anything


def test_duplicate_client_id_is_refused_while_open_and_accepted_after_fill(
    venue: PaperVenue, exchange: ccxt.binance
) -> None:
    exchange.create_order(SYMBOL, "limit", "buy", 0.01, 30000, params={"clientOrderId": "dup"})
    with pytest.raises(ccxt.InvalidOrder, match="Duplicate order sent"):
        exchange.create_order(SYMBOL, "limit", "buy", 0.01, 30000, params={"clientOrderId": "dup"})
    exchange.cancel_order(None, SYMBOL, {"clientOrderId": "dup"})
    again = exchange.create_order(SYMBOL, "market", "buy", 0.01, params={"clientOrderId": "dup"})
    assert again["status"] == "closed"
    assert [a["clientOrderId"] for a in venue.engine.accepted] == ["dup", "dup"]


def test_accepted_but_lost_then_naive_resend_really_fills_twice(
    venue: PaperVenue, exchange: ccxt.binance
) -> None:
    """Why the Order actor must look an order up before it ever resends (DESIGN 6)."""
    venue.inject(Fault("lost", endpoint="POST /api/v3/order", when="after"))
    with pytest.raises(ccxt.NetworkError):
        exchange.create_order(SYMBOL, "market", "buy", 0.01, params={"clientOrderId": "intent-1"})
    resent = exchange.create_order(
        SYMBOL, "market", "buy", 0.01, params={"clientOrderId": "intent-1"}
    )
    assert resent["status"] == "closed"  # the venue accepted the same id again: it had filled
    accepted = [a for a in venue.engine.accepted if a["clientOrderId"] == "intent-1"]
    assert len(accepted) == 2
    assert exchange.fetch_balance()["BTC"]["total"] == pytest.approx(1.02)  # two fills


def _balances(venue: PaperVenue) -> dict[str, Decimal]:
    return {
        a: Decimal(b["free"]) + Decimal(b["locked"])
        for a, b in venue.engine.balances("paper-key").items()
    }


def test_venue_accounting_changes_balances_by_exactly_fills_and_fees(
    venue: PaperVenue, exchange: ccxt.binance
) -> None:
    before = _balances(venue)
    exchange.create_order(SYMBOL, "market", "buy", 0.12, params={"clientOrderId": "a"})
    exchange.create_order(SYMBOL, "market", "sell", 0.05, params={"clientOrderId": "b"})
    ask = exchange.fetch_ticker(SYMBOL)["ask"]
    exchange.create_order(SYMBOL, "limit", "buy", 0.03, round(ask * 1.001, 2))  # crosses
    resting = exchange.create_order(SYMBOL, "limit", "sell", 0.2, round(ask * 1.02, 2))
    exchange.create_order("ETH/USDT", "market", "buy", 1.5)
    venue.engine.step(50)
    exchange.cancel_order(resting["id"], SYMBOL) if exchange.fetch_order(resting["id"], SYMBOL)[
        "status"
    ] == "open" else None
    expected = dict(before)
    raw: list[dict[str, Any]] = []
    for symbol, base in (("BTCUSDT", "BTC"), ("ETHUSDT", "ETH")):
        for t in venue.engine.my_trades("paper-key", symbol):
            raw.append(t)
            qty, quote, fee = Decimal(t["qty"]), Decimal(t["quoteQty"]), Decimal(t["commission"])
            if t["isBuyer"]:
                expected[base] += qty
                expected["USDT"] -= quote + fee
            else:
                expected[base] -= qty
                expected["USDT"] += quote - fee
    assert raw, "the sequence must have produced fills"
    assert _balances(venue) == expected
    assert all(Decimal(b["locked"]) == 0 for b in venue.engine.balances("paper-key").values())


def test_the_same_seed_gives_the_same_prices() -> None:
    def run(seed: int) -> list[str]:
        with PaperVenue(seed=seed) as v:
            return [v.engine.ticker("BTCUSDT")["lastPrice"] for _ in range(50)]

    assert run(11) == run(11)
    assert run(11) != run(12)


def test_phalanx_venue_runs_alone_and_serves_ccxt(tmp_path: Any) -> None:
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    proc = subprocess.Popen(
        [sys.executable, "-m", "phalanx", "venue", "--port", "0", "--seed", "3", "--for", "30"],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(root), "PHALANX_VENUE_SECRET": "s3cret-value"},
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert "s3cret-value" not in line
        url = line.split(" on ")[1].split(" ")[0]
        # The public config builder, as an outside program would use it (trailing "/" too).
        ex = ccxt.binance(venue_ccxt_config(url + "/", "paper-key", "s3cret-value"))
        assert ex.fetch_balance()["USDT"]["free"] == 100_000
    finally:
        proc.terminate()
        assert proc.wait(10) == 0
