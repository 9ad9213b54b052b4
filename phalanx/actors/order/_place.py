"""Starting Order actors: the ``/orders`` supervisor, placement, resume and adoption."""

from __future__ import annotations

import contextlib
from decimal import Decimal
from typing import Any

from phalanx.actors.order._ids import generation_of, order_child_id
from phalanx.actors.order._machine import reply_event, transition
from phalanx.actors.order._order import OrderActor
from phalanx.actors.order._services import OrderServices
from phalanx.actors.order._snapshot import snapshot_of
from phalanx.errors import ActorDead, AlreadyPresent, AlreadyStarted
from phalanx.protocols.exchange import OrderReply
from phalanx.protocols.trading import CancelIntent, OrderIntent, OrderSnapshot
from phalanx.runtime import ActorSystem, Ref
from phalanx.storage._orders import OrderRecord, OrderStore
from phalanx.supervision import ChildSpec, Retry
from phalanx.supervision._supervisor import SupervisorRef

__all__ = [
    "adopt_external",
    "cancel_order",
    "find_owner",
    "intent_of",
    "order_snapshot",
    "order_supervisor_spec",
    "place_order",
    "resume_orders",
    "start_order_supervisor",
]

ORDERS = "/orders"
# Order actors fail independently (a kill, a crash point): a burst of restarts
# across hundreds of orders is not a sign that /orders itself is broken.
_INTENSITY, _PERIOD = 10_000, 1.0


def _template(services: OrderServices, retry: Retry | None) -> ChildSpec:
    return ChildSpec(
        "o",
        OrderActor,
        kwargs={"services": services},
        restart="transient",  # stops normally once terminal; restarted after a crash
        shutdown=5.0,
        # Exponential: a deterministic crash (a bug) re-runs the same drive on every
        # restart; backing off to 2 s keeps it from spinning hot.
        retry=retry or Retry(max_attempts=5, backoff="exponential", base=0.01, max=2.0),
    )


def order_supervisor_spec(
    services: OrderServices,
    *,
    id: str = "orders",
    intensity: int = _INTENSITY,
    period: float = _PERIOD,
    retry: Retry | None = None,
) -> ChildSpec:
    """The ``simple_one_for_one`` supervisor spec whose children are Order actors."""
    return ChildSpec.supervisor(
        id, "simple_one_for_one", intensity, period, children=[_template(services, retry)]
    )


def start_order_supervisor(
    system: ActorSystem,
    services: OrderServices,
    *,
    path: str = ORDERS,
    intensity: int = _INTENSITY,
    period: float = _PERIOD,
    retry: Retry | None = None,
) -> SupervisorRef:
    """Start the orders supervisor at ``path`` (default ``/orders``)."""
    return system.supervise(
        path, "simple_one_for_one", intensity, period, children=[_template(services, retry)]
    )


def _store(system: ActorSystem, store: OrderStore | None) -> OrderStore:
    return store if store is not None else OrderStore(system.storage)


def place_order(
    system: ActorSystem,
    intent: OrderIntent,
    *,
    supervisor: str = ORDERS,
    store: OrderStore | None = None,
    known_absent: bool = False,
) -> Ref:
    """Start the Order actor of ``intent`` unless it runs or its record is terminal.

    Idempotent: calling it again (a saga step re-run after a crash) returns
    the same :class:`Ref` and never places a second order. Raises
    ``ValueError`` naming the field for an ``order_req_id`` that is not a
    path segment, an amount <= 0 or a limit order without a price.

    ``known_absent``: the caller has just read no record for the intent, so
    this call does not read it again. Safe whatever happened since: a record
    registered meanwhile is met by the actor's own check-and-insert, which then
    resolves that record (a terminal one is only confirmed), and never sends.
    """
    child_id = order_child_id(intent.order_req_id)
    if intent.amount <= 0:
        raise ValueError(f"order {intent.order_req_id}: amount must be > 0, got {intent.amount}")
    if intent.type == "limit" and (intent.price is None or intent.price <= 0):
        raise ValueError(f"order {intent.order_req_id}: a limit order needs a price > 0")
    ref = system.ref(f"{supervisor.rstrip('/')}/{child_id}")
    if system.is_alive(ref.path):
        return ref
    record = None if known_absent else _store(system, store).get(intent.order_req_id)
    if record is not None and record.terminal:
        return ref
    # AlreadyStarted/AlreadyPresent: started meanwhile, or restarting after a crash.
    # fresh: no record a moment ago, so the actor's first incarnation need not read it.
    with contextlib.suppress(AlreadyStarted, AlreadyPresent):
        SupervisorRef(system, supervisor).start_child(
            child_id=child_id, intent=intent, fresh=record is None
        )
    return ref


def intent_of(record: OrderRecord) -> OrderIntent:
    """The intent a stored record was placed for (to restart its actor)."""
    return OrderIntent(
        order_req_id=record.order_req_id, symbol=record.symbol, side=record.side,
        type=record.type, amount=record.amount, price=record.price,
        exchange=record.exchange, saga_id=record.saga_id, notify=record.notify,
    )  # fmt: skip


def find_owner(store: OrderStore, client_id: str | None) -> OrderRecord | None:
    """The record whose intent a venue client order id belongs to (any generation).

    Reconciliation uses it to tell this node's orders (adopt into their own
    record) from external ones (:func:`adopt_external`).
    """
    if not client_id:
        return None
    for record in store.list():
        if record.client_order_id == client_id or (
            not record.external and generation_of(record.order_req_id, client_id) is not None
        ):
            return record
    return None


def resume_orders(
    system: ActorSystem, *, supervisor: str = ORDERS, store: OrderStore | None = None
) -> list[Ref]:
    """Start an actor for every non-terminal record (node start, before trading).

    Each resolves itself: ``submitting``/``unknown`` by lookup, live orders by polling.
    """
    store = _store(system, store)
    return [
        place_order(system, intent_of(r), supervisor=supervisor, store=store)
        for r in store.list(non_terminal=True)
    ]


def adopt_external(
    system: ActorSystem,
    reply: OrderReply,
    *,
    exchange: str = "paper",
    notify: str | None = None,
    supervisor: str = ORDERS,
    store: OrderStore | None = None,
    start: bool = True,
) -> OrderRecord:
    """Record a venue order this node does not know, marked ``external`` (reconciliation).

    Its ``order_req_id`` is ``ext-<exchange>-<venue id>``, so adopting the same
    venue order twice is a no-op. With ``start`` its actor tracks it: polls it
    until terminal and hands its fills to the sink like any other order.
    """
    if reply.side not in ("buy", "sell"):
        # A guessed side would book the fills the wrong way round.
        raise ValueError(f"cannot adopt venue order {reply.id}: side is {reply.side!r}")
    store = _store(system, store)
    now = store.clock()
    record = OrderRecord(
        order_req_id=f"ext-{exchange}-{reply.id}",
        client_order_id=reply.client_order_id or f"venue-{reply.id}", generation=0,
        status=transition("unknown", reply_event(reply)), symbol=reply.symbol,
        side=reply.side,
        type=reply.type if reply.type in ("limit", "market") else "limit",
        amount=reply.amount if reply.amount is not None else Decimal(0), price=reply.price,
        exchange_order_id=reply.id, created_at=now, updated_at=now, external=True,
        exchange=exchange, notify=notify,
    )  # fmt: skip
    created = store.register(record)
    if not created:
        existing = store.get(record.order_req_id)
        assert existing is not None
        record = existing
    # A new external order is tracked even when terminal: its fills count once.
    if start and (created or not record.terminal):
        with contextlib.suppress(AlreadyStarted, AlreadyPresent):
            SupervisorRef(system, supervisor).start_child(
                child_id=order_child_id(record.order_req_id), intent=intent_of(record)
            )
    return record


def order_snapshot(
    system: ActorSystem, order_req_id: str, *, store: OrderStore | None = None
) -> OrderSnapshot | None:
    """The order's snapshot from its journaled record (None if unknown).

    The same data a ``GetOrder`` to the live actor replies (the actor's state
    IS its last journaled record), but it never waits behind a venue call the
    actor is blocked in. ``terminal`` implies every venue fill is journaled.
    """
    record = _store(system, store).get(order_req_id)
    return snapshot_of(record) if record is not None else None


def cancel_order(
    system: ActorSystem,
    order_req_id: str,
    reason: str = "requested",
    *,
    supervisor: str = ORDERS,
    store: OrderStore | None = None,
    timeout: float = 30.0,
) -> OrderSnapshot | None:
    """``CancelIntent`` to the order's actor, restarting it if its record is live.

    Idempotent: a terminal order's snapshot comes back unchanged; an unknown
    ``order_req_id`` gives None.
    """
    store = _store(system, store)
    record = store.get(order_req_id)
    if record is None:
        return None
    if record.terminal:
        return snapshot_of(record)
    ref = place_order(system, intent_of(record), supervisor=supervisor, store=store)
    try:
        snap: Any = ref.ask(CancelIntent(reason=reason), timeout=timeout)
    except ActorDead:
        final = store.get(order_req_id)
        return snapshot_of(final) if final is not None else None
    return snap  # type: ignore[no-any-return]
