"""The Position actor: fills applied once (replay, kill, restart), PnL with fees, triggers, logs."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from phalanx import Actor, ActorSystem
from phalanx.actors._position_terms import InvalidFill
from phalanx.actors._position_tree import ensure_position, position_path, start_positions
from phalanx.protocols.exchange import SubscribeTicker, Ticker
from phalanx.protocols.trading import (
    ApplyFill,
    GetPosition,
    OrderFill,
    PnlUpdate,
    PositionSnapshot,
    SellTrigger,
)
from phalanx.storage._positions import PositionStore

from ._rig import decision_lines, quick_system

D = Decimal
SYMBOL = "BTC/USDT"
PATH = "/positions/BTC-USDT"


def _system(var_dir: Path) -> ActorSystem:
    return quick_system(var_dir, "position-test")


@pytest.fixture
def var_dir(tmp_path: Path) -> Path:
    return tmp_path / "var"


@pytest.fixture
def node(var_dir: Path) -> Iterator[ActorSystem]:
    with _system(var_dir) as system:
        yield system


class Inbox(Actor):
    """Records every message; ``"all"`` replies the list so far."""

    def on_start(self) -> None:
        self.got: list[Any] = []

    def on_receive(self, message: Any) -> Any:
        if message == "all":
            return list(self.got)
        self.got.append(message)
        return None


def _fill(trade_id: str, side: str, amount: str, price: str, fee: str = "0") -> OrderFill:
    return OrderFill(
        trade_id=trade_id,
        order_req_id=f"o-{trade_id}",
        exchange_order_id=f"x-{trade_id}",
        symbol=SYMBOL,
        side=side,  # type: ignore[arg-type]
        price=D(price),
        amount=D(amount),
        fee=D(fee),
        fee_currency="USDT",
    )


def _ticker(last: str) -> Ticker:
    return Ticker(exchange="paper", symbol=SYMBOL, bid=None, ask=None, last=D(last), timestamp=None)


def _ask(system: ActorSystem, message: Any, path: str = PATH) -> Any:
    return system.ask(path, message, timeout=5.0)


def _decisions(system: ActorSystem, event: str | None = None) -> list[dict[str, Any]]:
    return decision_lines(system, event)


def test_a_replayed_fill_is_applied_once(node: ActorSystem) -> None:
    start_positions(node, [SYMBOL], risk_path=None)
    fill = _fill("t1", "buy", "1", "100", "0.1")
    first = _ask(node, ApplyFill(fill=fill))
    replay = _ask(node, ApplyFill(fill=fill))
    assert isinstance(first, PositionSnapshot)
    assert first == replay
    assert (replay.quantity, replay.fills_applied, replay.fees) == (D(1), 1, D("0.1"))


def test_fills_are_applied_once_across_a_kill_and_a_node_restart(var_dir: Path) -> None:
    fills = [_fill("t1", "buy", "1", "100", "0.1"), _fill("t2", "buy", "1", "110", "0.11")]
    with _system(var_dir) as system:
        start_positions(system, [SYMBOL], risk_path=None)
        for f in fills:
            _ask(system, ApplyFill(fill=f))
        system.kill(PATH)
        after_kill = _ask(system, ApplyFill(fill=fills[1]))  # redelivered after a kill
        assert system.stats(PATH)["incarnation"] == 2
        assert (after_kill.quantity, after_kill.fills_applied) == (D(2), 2)
    with _system(var_dir) as system:
        start_positions(system, [SYMBOL], risk_path=None)
        snap = _ask(system, GetPosition())
        assert (snap.quantity, snap.average_entry, snap.fills_applied) == (D(2), D(105), 2)
        for f in fills:
            _ask(system, ApplyFill(fill=f))
        third = _ask(system, ApplyFill(fill=_fill("t3", "sell", "2", "120", "0.24")))
        assert (third.quantity, third.fills_applied) == (D(0), 3)
        store = PositionStore(system.storage)
        assert sorted(store.fills(SYMBOL)) == ["t1", "t2", "t3"]


def test_realized_pnl_includes_fees_and_unrealized_follows_the_ticker(node: ActorSystem) -> None:
    start_positions(node, [SYMBOL], risk_path=None)
    _ask(node, ApplyFill(fill=_fill("t1", "buy", "2", "100", "0.2")))
    node.tell(PATH, _ticker("110"))
    snap = _ask(node, GetPosition())
    assert (snap.last_price, snap.unrealized_pnl, snap.realized_pnl) == (D(110), D(20), D("-0.2"))
    snap = _ask(node, ApplyFill(fill=_fill("t2", "sell", "1", "120", "0.12")))
    assert snap.realized_pnl == D(20) - D("0.2") - D("0.12")
    assert snap.unrealized_pnl == D(10)  # 1 left at entry 100, mark 110
    assert snap.fees == D("0.32")
    node.tell(PATH, _ticker("90"))
    assert _ask(node, GetPosition()).unrealized_pnl == D(-10)


def test_every_change_tells_pnl_update_to_risk(node: ActorSystem) -> None:
    node.spawn(Inbox, "/risk")
    start_positions(node, [SYMBOL])
    _ask(node, ApplyFill(fill=_fill("t1", "buy", "2", "100", "0.2")))
    node.tell(PATH, _ticker("105"))
    _ask(node, GetPosition())
    got = node.ask("/risk", "all")
    assert [type(m) for m in got] == [PnlUpdate, PnlUpdate]
    opened, marked = got
    assert (opened.quantity, opened.notional, opened.realized_pnl) == (D(2), D(200), D("-0.2"))
    assert (marked.notional, marked.unrealized_pnl) == (D(210), D(10))


def test_take_profit_and_stop_loss_tell_a_sell_trigger_once_per_crossing(
    node: ActorSystem, var_dir: Path
) -> None:
    node.spawn(Inbox, "/strategy")
    start_positions(
        node,
        [SYMBOL],
        notify="/strategy",
        risk_path=None,
        take_profit_pct=D(5),
        stop_loss_pct=D(2),
    )
    _ask(node, ApplyFill(fill=_fill("t1", "buy", "1", "100")))
    for last in ("101", "106", "107", "101", "97.5"):
        node.tell(PATH, _ticker(last))
    _ask(node, GetPosition())
    triggers = node.ask("/strategy", "all")
    assert [(t.reason, t.price) for t in triggers] == [
        ("take_profit", D(106)),
        ("stop_loss", D("97.5")),
    ]
    assert all(isinstance(t, SellTrigger) and t.quantity == D(1) for t in triggers)
    evals = _decisions(node, "sell_trigger_eval")
    assert [e["fired"] for e in evals] == [None, "take_profit", "take_profit", None, "stop_loss"]
    assert [e["told"] for e in evals] == [False, True, False, False, True]


def test_position_opened_updated_and_closed_are_logged(node: ActorSystem, var_dir: Path) -> None:
    start_positions(node, [SYMBOL], risk_path=None)
    _ask(node, ApplyFill(fill=_fill("t1", "buy", "1", "100", "0.1")))
    _ask(node, ApplyFill(fill=_fill("t2", "buy", "1", "102", "0.1")))
    _ask(node, ApplyFill(fill=_fill("t2", "buy", "1", "102", "0.1")))  # replay: no line
    _ask(node, ApplyFill(fill=_fill("t3", "sell", "2", "103", "0.2")))
    events = [
        (e["event"], e["trade_id"], e["quantity"])
        for e in _decisions(node)
        if e["event"].startswith("position_")
    ]
    assert events == [
        ("position_opened", "t1", "1"),
        ("position_updated", "t2", "2"),
        ("position_closed", "t3", "0"),
    ]
    closed = _decisions(node, "position_closed")[0]
    assert closed["actor"] == PATH
    assert closed["order_req_id"] == "o-t3"
    assert D(closed["realized_pnl"]) == D(4) - D("0.4")


def test_a_bad_fill_is_refused_and_the_position_survives(node: ActorSystem) -> None:
    start_positions(node, [SYMBOL], risk_path=None)
    wrong_symbol = _fill("t1", "buy", "1", "100").model_copy(update={"symbol": "ETH/USDT"})
    with pytest.raises(InvalidFill, match="ETH/USDT"):
        _ask(node, ApplyFill(fill=wrong_symbol))
    unpayable = _fill("t2", "buy", "1", "100", "1").model_copy(update={"fee_currency": "BTC"})
    with pytest.raises(InvalidFill, match="leaves nothing"):
        _ask(node, ApplyFill(fill=unpayable))
    with pytest.raises(InvalidFill, match="negative fee"):
        _ask(node, ApplyFill(fill=_fill("t3", "buy", "1", "100", "-0.1")))
    snap = _ask(node, GetPosition())
    assert (snap.quantity, snap.fills_applied) == (D(0), 0)
    assert node.stats(PATH)["incarnation"] == 1


class FakeExchange(Actor):
    """Records SubscribeTicker requests."""

    def on_start(self) -> None:
        self.subs: list[SubscribeTicker] = []

    def on_receive(self, message: Any) -> Any:
        if message == "subs":
            return list(self.subs)
        self.subs.append(message)
        return None


def test_positions_are_added_at_runtime_with_the_tree_defaults(node: ActorSystem) -> None:
    node.spawn(FakeExchange, "/exchanges/paper")
    sup = start_positions(node, [SYMBOL], risk_path=None, exchange="paper")
    ref = ensure_position(node, "ETH/USDT")
    assert ref.path == position_path("ETH/USDT") == "/positions/ETH-USDT"
    assert ensure_position(node, "ETH/USDT") == ref  # idempotent
    assert sup.count_children()["active"] == 2
    eth = _fill("e1", "buy", "3", "10").model_copy(update={"symbol": "ETH/USDT"})
    assert ref.ask(ApplyFill(fill=eth)).quantity == D(3)
    subs = node.ask("/exchanges/paper", "subs")
    assert {(s.symbol, s.subscriber) for s in subs} == {
        (SYMBOL, PATH),
        ("ETH/USDT", "/positions/ETH-USDT"),
    }


def test_a_restarted_position_tells_risk_its_state_again(node: ActorSystem) -> None:
    node.spawn(Inbox, "/risk")
    start_positions(node, [SYMBOL])
    _ask(node, ApplyFill(fill=_fill("t1", "buy", "2", "100", "0.2")))
    node.kill(PATH)
    assert _ask(node, GetPosition()).quantity == D(2)
    got = node.ask("/risk", "all")
    assert [(m.quantity, m.realized_pnl) for m in got] == [(D(2), D("-0.2"))] * 2
