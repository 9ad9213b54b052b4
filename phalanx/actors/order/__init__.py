"""Order actors: one per order, exactly-once placement (DESIGN 6, docs/trading-core.md).

Each order is an :class:`OrderActor` at ``/orders/o-<order_req_id>`` under a
``simple_one_for_one`` supervisor. It registers the idempotency record
(``submitting``) before it sends, sends once, resolves an ambiguous outcome
by client-id lookup (a new client id only after repeated misses plus an
open-orders/trades check), journals every fill by trade id, hands it to the
fill sink, tells ``OrderUpdate`` to ``intent.notify``, and stops once
terminal with every fill journaled. ``GetOrder`` -> ``OrderSnapshot``;
``CancelIntent`` cancels at the venue, fetches late fills, replies the snapshot.

Usage (the connection runs at ``/exchanges/paper``)::

    from phalanx.actors.order import OrderServices, OrderStore, place_order,
        start_order_supervisor, order_snapshot, cancel_order

    store = OrderStore(system.storage)
    services = OrderServices(store=store, fill_sink=lambda fill: ...)  # idempotent by trade_id
    start_order_supervisor(system, services)                 # /orders
    intent = OrderIntent(order_req_id=saga_id, symbol="BTC/USDT", side="buy",
                         type="limit", amount=Decimal("0.01"), price=Decimal("43000"),
                         saga_id=saga_id, notify=saga_path)
    ref = place_order(system, intent)                        # idempotent
    snap = order_snapshot(system, saga_id)                   # the journaled record: never blocks
    snap = cancel_order(system, saga_id)                     # idempotent
    resume_orders(system)                                    # node start: every live record
    find_owner(store, venue_order.client_order_id)           # reconciliation: ours?
    adopt_external(system, order_reply)                      # ... else adopt as external

``OrderFill.trade_id`` is the venue's trade id (unique per venue trade on the
paper venue; per symbol on Binance): a ledger key should add exchange and symbol.
The actor stops once the order is terminal and every fill is journaled and
sunk; a ``GetOrder`` then gets ``ActorDead``. :func:`order_snapshot` reads the
record instead (same data, and it never waits behind a venue call the actor
is blocked in, up to ``ask_timeout_s``). A terminal status is journaled only
together with every fill the venue reports executed, so a terminal snapshot's
``filled`` and ``fills`` are final. A fill the sink refuses permanently is
dead-lettered (``permanent_error``, target the order's path) instead of being
retried forever. A sink may return its own write as a :data:`SinkOp` instead
of committing it: the actor commits it in the transaction that journals the
fill sunk (one write per fill fewer; the two commit together or not at all).
``OrderServices.settle_s`` (default 11 s: ccxt's Binance ``recvWindow`` of
10 s plus 1 s) must exceed the longest a request can sit at
the venue before it acts: a new generation is sent only after that long
without a trace of the previous one.
"""

from phalanx.actors.order._ids import (
    client_order_id,
    generation_of,
    intent_prefix,
    order_child_id,
    order_path,
)
from phalanx.actors.order._machine import (
    EVENTS,
    STATES,
    TERMINAL,
    TRANSITIONS,
    OrderEvent,
    is_terminal,
    reply_event,
    transition,
)
from phalanx.actors.order._order import OrderActor
from phalanx.actors.order._place import (
    adopt_external,
    cancel_order,
    find_owner,
    intent_of,
    order_snapshot,
    order_supervisor_spec,
    place_order,
    resume_orders,
    start_order_supervisor,
)
from phalanx.actors.order._services import CRASH_POINTS, OrderServices, SinkOp
from phalanx.actors.order._snapshot import snapshot_of
from phalanx.errors import InvalidTransition
from phalanx.storage._orders import OrderRecord, OrderStore

__all__ = [
    "CRASH_POINTS",
    "EVENTS",
    "STATES",
    "TERMINAL",
    "TRANSITIONS",
    "InvalidTransition",
    "OrderActor",
    "OrderEvent",
    "OrderRecord",
    "OrderServices",
    "OrderStore",
    "SinkOp",
    "adopt_external",
    "cancel_order",
    "client_order_id",
    "find_owner",
    "generation_of",
    "intent_of",
    "intent_prefix",
    "is_terminal",
    "order_child_id",
    "order_path",
    "order_snapshot",
    "order_supervisor_spec",
    "place_order",
    "reply_event",
    "resume_orders",
    "snapshot_of",
    "start_order_supervisor",
    "transition",
]
