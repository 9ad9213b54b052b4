"""The README's phalanx.testing example, as written there, passes."""

from __future__ import annotations

from decimal import Decimal

from phalanx.actors import BUY, TradingNode, buy_input
from phalanx.actors.saga import await_saga, start_saga
from phalanx.actors.venue import PaperVenue
from phalanx.testing import ChaosMonkey, check_all


def test_buys_survive_kills(trading_node: TradingNode, paper_venue: PaperVenue) -> None:
    system = trading_node.system
    ask = Decimal(paper_venue.engine.ticker("BTCUSDT")["askPrice"])
    ids = [f"buy-{i}" for i in range(20)]
    with ChaosMonkey(system, ["/orders/*", "/sagas/*"], rate_per_s=20, seed=7) as monkey:
        for saga_id in ids:
            start_saga(system, BUY, saga_id, buy_input("BTC/USDT", Decimal("0.001"), ask * 2))
        for saga_id in ids:
            await_saga(system, saga_id, timeout=60)
    verdict = check_all(system, paper_venue, saga_ids=ids)
    assert verdict.ok, verdict.dumps(indent=1)
    assert verdict.invariants["sagas_terminal"].details["statuses"] == {"completed": 20}
    assert all(k.path.startswith(("/orders/o-buy-", "/sagas/s-buy-")) for k in monkey.kills)
