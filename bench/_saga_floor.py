"""The buy saga's message flow in bare pykka + ccxt + LMDB: the floor under ``buy_sagas``.

Same venue, same ccxt call and the same actors as the phalanx buy saga, with
none of phalanx's guarantees: no supervision, no journal-before-send
ordering across incarnations, no idempotency check-and-insert, no logs, no
dead letters, no timeouts or retries, no group-commit writer (each actor
writes its own LMDB transaction). What it measures is what this interpreter
and this VM charge for the irreducible part: 2 actor spawns (saga, order),
6 asks (saga to Risk twice, to the order actor, which asks the exchange
actor once, to Position and to Ledger; phalanx makes ~10), one
``ccxt.create_order`` over loopback HTTP and 13 small LMDB writes per saga.
It is a baseline, printed next to the headline figure from the same run;
nothing trades through it.

The writes per saga: 7 saga records (start, validate + risk_check in one, as
phalanx's two effect-free steps share a commit, reserve_funds, place_order,
update_position, post_ledger, the end); Risk: the check and the
reservation; Order: ``submitting`` before the send and the filled record
after; Position and Ledger: one each.
"""

from __future__ import annotations

import contextlib
import tempfile
from decimal import Decimal
from typing import Any

import ccxt
import lmdb
import msgpack
import pykka
from _common import windowed_round

from phalanx.actors.venue import PaperVenue

TICK = Decimal("0.01")


def marketable_price(venue: PaperVenue) -> Decimal:
    """A limit 1% over the ask: it fills in the create reply, at the book, not the limit.

    Read without advancing the walk, so the bench adds no venue work of its own.
    """
    return (venue.engine.best_prices("BTCUSDT")[1] * Decimal("1.01")).quantize(TICK)


def _put(env: lmdb.Environment, db: Any, key: str, value: dict[str, Any]) -> None:
    with env.begin(write=True, db=db) as txn:
        txn.put(key.encode(), msgpack.packb(value, default=str))


class _Exchange(pykka.ThreadingActor):
    def __init__(self, venue: PaperVenue) -> None:
        super().__init__()
        self.client = ccxt.binance(venue.ccxt_config("floor-key"))
        self.client.load_markets()

    def on_receive(self, message: Any) -> Any:
        client_id, price = message
        return self.client.create_order(
            "BTC/USDT", "limit", "buy", 0.001, float(price), {"clientOrderId": client_id}
        )


class _Risk(pykka.ThreadingActor):
    def __init__(self, env: lmdb.Environment, dbs: dict[str, Any]) -> None:
        super().__init__()
        self.env, self.db = env, dbs["risk"]
        self.counted: set[str] = set()
        self.reserved: dict[str, Decimal] = {}

    def on_receive(self, message: Any) -> Any:
        kind, req_id, amount = message
        if kind == "check":
            self.counted.add(req_id)
            _put(self.env, self.db, f"c/{req_id}", {"n": len(self.counted)})
            return True
        self.reserved[req_id] = amount
        _put(self.env, self.db, f"r/{req_id}", {"amount": amount})
        return True


class _Order(pykka.ThreadingActor):
    def __init__(self, env: lmdb.Environment, db: Any, exchange: pykka.ActorRef[Any]) -> None:
        super().__init__()
        self.env, self.db, self.exchange = env, db, exchange

    def on_receive(self, message: Any) -> Any:
        req_id, price = message
        _put(self.env, self.db, req_id, {"status": "submitting", "price": price})
        order = self.exchange.ask((f"f-{req_id}", price))
        fills = [[t["id"], t["amount"], t["price"]] for t in order.get("trades") or []]
        _put(self.env, self.db, req_id, {"status": order["status"], "fills": fills})
        self.actor_ref.stop(block=False)
        return order


class _Book(pykka.ThreadingActor):
    """Position and Ledger: one write per fill each."""

    def __init__(self, env: lmdb.Environment, db: Any) -> None:
        super().__init__()
        self.env, self.db = env, db
        self.total = Decimal(0)

    def on_receive(self, message: Any) -> Any:
        req_id, filled = message
        self.total += filled
        _put(self.env, self.db, req_id, {"filled": filled, "total": self.total})
        return True


class _Saga(pykka.ThreadingActor):
    def __init__(
        self, env: lmdb.Environment, dbs: dict[str, Any], peers: dict[str, pykka.ActorRef[Any]]
    ) -> None:
        super().__init__()
        self.env, self.dbs, self.db, self.peers = env, dbs, dbs["journal"], peers

    def _record(self, saga_id: str, step: str, result: Any) -> None:
        _put(self.env, self.db, f"{saga_id}/{step}", {"step": step, "result": result})

    def on_receive(self, message: Any) -> Any:
        saga_id, price = message
        amount = Decimal("0.001")
        self._record(saga_id, "start", {"price": price})
        if amount <= 0 or price <= 0:
            raise ValueError("invalid")
        self._record(saga_id, "validate+risk_check", self.peers["risk"].ask(("check", saga_id, 0)))
        self._record(saga_id, "reserve", self.peers["risk"].ask(("reserve", saga_id, price)))
        order_ref = _Order.start(self.env, self.dbs["orders"], self.peers["exchange"])
        order = order_ref.ask((saga_id, price))
        filled = Decimal(str(order["filled"]))
        self._record(saga_id, "place_order", {"status": order["status"], "filled": filled})
        self._record(saga_id, "update_position", self.peers["position"].ask((saga_id, filled)))
        self._record(saga_id, "post_ledger", self.peers["ledger"].ask((saga_id, filled)))
        self._record(saga_id, "end", "completed")
        self.actor_ref.stop(block=False)
        return order["status"]


class BareFlow:
    """The venue, LMDB env and long-lived actors of the bare flow; :meth:`round` runs sagas."""

    def __init__(self) -> None:
        self._stack = contextlib.ExitStack()
        self.venue = self._stack.enter_context(
            PaperVenue(seed=7, keys={"floor-key": "floor-secret"})
        )
        tmp = self._stack.enter_context(tempfile.TemporaryDirectory())
        self.env = lmdb.open(tmp, map_size=2**30, max_dbs=8, sync=False)
        self._stack.callback(self.env.close)
        # Opened once, before any actor writes: open_db runs a write txn of its own.
        names = ("risk", "orders", "positions", "ledger", "journal")
        self.dbs = {name: self.env.open_db(name.encode()) for name in names}
        self.peers: dict[str, Any] = {
            "exchange": _Exchange.start(self.venue),
            "risk": _Risk.start(self.env, self.dbs),
            "position": _Book.start(self.env, self.dbs["positions"]),
            "ledger": _Book.start(self.env, self.dbs["ledger"]),
        }
        for ref in self.peers.values():  # only ours: phalanx's actors may share the process
            self._stack.callback(ref.stop)

    def __enter__(self) -> BareFlow:
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()

    def round(self, n: int, concurrency: int, prefix: str) -> dict[str, Any]:
        """``n`` bare buy flows, ``concurrency`` in flight; the same fields as phalanx's rounds.

        The statuses are the venue's order status: all "closed" (filled) here.
        """

        def start(i: int) -> Any:
            saga = _Saga.start(self.env, self.dbs, self.peers)
            return saga.ask((f"{prefix}-{i:05d}", marketable_price(self.venue)), block=False)

        return windowed_round(n, concurrency, start, lambda future: future.get(timeout=120))


if __name__ == "__main__":
    import json

    with BareFlow() as flow:
        print(json.dumps([flow.round(400, 32, f"floor{r}") for r in range(3)], indent=2))
