"""When the buy/sell saga takes an order's snapshot as final (``_snapshot``)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from phalanx import ActorSystem
from phalanx.actors import _trade_orders as trade
from phalanx.actors._trade_sagas import BUY
from phalanx.actors.saga import StepContext
from phalanx.protocols.trading import OrderFill
from phalanx.runtime import Actor
from phalanx.storage._orders import OrderRecord, OrderStore

SAGA = "fin-1"


class Lingering(Actor):
    """Stands in for an Order actor that has journaled its end but not stopped yet."""

    def on_receive(self, message: Any) -> Any:
        raise AssertionError(f"a final record must not be asked: {message!r}")


def _fill(trade_id: str, amount: str) -> OrderFill:
    return OrderFill(
        trade_id=trade_id, order_req_id=SAGA, exchange_order_id="9", symbol="BTC/USDT",
        side="buy", price=Decimal("100"), amount=Decimal(amount), fee=Decimal("0.01"),
        fee_currency="USDT",
    )  # fmt: skip


def _record(status: str, fills: list[OrderFill], filled: str) -> OrderRecord:
    return OrderRecord(
        order_req_id=SAGA, client_order_id="c-1", generation=1, status=status,  # type: ignore[arg-type]
        symbol="BTC/USDT", side="buy", type="limit", amount=Decimal("0.002"),
        price=Decimal("100"), exchange_order_id="9", saga_id=SAGA,
        fills={f.trade_id: f for f in fills}, filled=Decimal(filled),
    )  # fmt: skip


def _ctx(system: ActorSystem) -> StepContext:
    return StepContext(
        system=system, saga_id=SAGA, kind=BUY, step="await_fill", input={},
        results={}, attempt=1, deadline=None, path="/sagas/s-fin-1", phase="action",
        result=None,
    )  # fmt: skip


@pytest.fixture
def lingering(system: ActorSystem) -> ActorSystem:
    system.spawn(Lingering, trade.order_path(SAGA))
    return system


def test_a_filled_order_with_trades_for_its_whole_amount_is_final_while_its_actor_lives(
    lingering: ActorSystem,
) -> None:
    fills = [_fill("t1", "0.0015"), _fill("t2", "0.0005")]
    assert OrderStore(lingering.storage).register(_record("filled", fills, "0.002"))
    snap = trade._snapshot(_ctx(lingering))
    assert snap is not None
    assert snap.status == "filled"
    assert [f.trade_id for f in snap.fills] == ["t1", "t2"]


@pytest.mark.parametrize(
    ("status", "fills", "filled"),
    [
        ("filled", [("t1", "0.0015")], "0.002"),  # a trade not journaled yet
        ("canceled", [("t1", "0.0015")], "0.0015"),  # a late fill may still come
        ("expired", [], "0"),
    ],
)
def test_another_terminal_order_waits_until_its_actor_has_stopped(
    lingering: ActorSystem, status: str, fills: list[tuple[str, str]], filled: str
) -> None:
    record = _record(status, [_fill(t, a) for t, a in fills], filled)
    assert OrderStore(lingering.storage).register(record)
    assert trade._snapshot(_ctx(lingering)) is None
