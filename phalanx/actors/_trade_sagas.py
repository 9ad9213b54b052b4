"""The buy and sell sagas (docs/trading-core.md, "The buy saga"; DESIGN section 6).

Steps, in order: ``validate``, ``risk_check``, ``reserve_funds`` (compensation:
release), ``place_order`` (compensation: cancel), ``await_fill``,
``update_position``, ``post_ledger``, ``finalize``. A sell mirrors a buy and
reserves the base asset instead of the quote.

Every effect is keyed by the saga id, so a resumed saga that re-runs the step
in flight repeats nothing: the reservation id, the order's ``order_req_id``
(hence its client order id) and the fills' trade ids are all derived from it.

The steps live by concept: :mod:`phalanx.actors._trade_input` (the journaled
input), :mod:`~phalanx.actors._trade_admission` (validate, risk, reserve),
:mod:`~phalanx.actors._trade_orders` (place, await, cancel) and
:mod:`~phalanx.actors._trade_settle` (position, ledger, finalize). The step
functions are looked up here when :func:`trade_saga` builds the definition.
"""

from __future__ import annotations

from phalanx.actors._trade_admission import _release_funds, _reserve_funds, _risk_check, _validate
from phalanx.actors._trade_orders import (
    _HARD_TIMEOUT_S,
    _await_fill,
    _await_timeout,
    _cancel_order,
    _place_order,
    _place_timeout,
)
from phalanx.actors._trade_settle import _finalize, _post_ledger, _update_position
from phalanx.actors.saga._model import SagaDefinition, Step, register_saga
from phalanx.supervision import Retry

__all__ = ["BUY", "SELL", "register_trade_sagas", "trade_saga"]

BUY, SELL = "buy_order", "sell_order"


def trade_saga(kind: str) -> SagaDefinition:
    """The buy or sell saga definition (the side comes from the input)."""
    ask_retry = Retry(max_attempts=6, backoff="exponential", base=0.05, max=1.0, jitter=0.1)
    # Polls outlive kills and lost asks: a placement step that gave up would leave
    # its order unwatched, so its budget is large (about a minute of backoff).
    poll_retry = Retry(max_attempts=60, backoff="exponential", base=0.05, max=1.0, jitter=0.1)
    return SagaDefinition(
        kind,
        [
            # Effect-free (Step.effects): their success records ride on the commit
            # made before reserve_funds runs. validate is pure; risk_check's ask
            # changes nothing but today's trade count, keyed by order_req_id (the
            # saga id) in /risk's store: a re-run after a crash counts nothing twice.
            # finalize is NOT effect-free (it releases the reservation): replay-safe.
            Step("validate", _validate, retry=Retry(max_attempts=1), effects=False),
            Step("risk_check", _risk_check, retry=ask_retry, depends_on=("validate",),
                 effects=False),
            # A reserve whose every ask timed out may still have been held by
            # /risk: releasing an unknown id is a no-op, so release on failure too.
            Step("reserve_funds", _reserve_funds, compensation=_release_funds,
                 retry=ask_retry, depends_on=("risk_check",), compensate_on_failure=True),
            # The cancel gets the polls' budget too: the default (5 attempts, ~0.8 s
            # of backoff) ended compensation_failed in a one-second venue brownout.
            Step("place_order", _place_order, compensation=_cancel_order, timeout_s=120.0,
                 retry=poll_retry, compensation_retry=poll_retry, depends_on=("reserve_funds",),
                 on_timeout=_place_timeout),
            Step("await_fill", _await_fill, timeout_s=_HARD_TIMEOUT_S, retry=poll_retry,
                 depends_on=("place_order",), on_timeout=_await_timeout),
            # Replay-safe (Step.replay_safe): past the point of no return, no
            # compensation, every effect keyed (positions and ledger by trade id,
            # the release by the saga id), so a crash that loses their held
            # success records re-runs them and nothing is applied, posted or
            # released twice. All three records ride on finalize's commit.
            Step("update_position", _update_position, retry=ask_retry,
                 depends_on=("await_fill",), replay_safe=True),
            Step("post_ledger", _post_ledger, retry=ask_retry, depends_on=("update_position",),
                 replay_safe=True),
            Step("finalize", _finalize, retry=ask_retry, depends_on=("post_ledger",),
                 replay_safe=True),
        ],
    )  # fmt: skip


def register_trade_sagas() -> tuple[SagaDefinition, SagaDefinition]:
    """Register the ``buy_order`` and ``sell_order`` kinds (idempotent)."""
    return register_saga(trade_saga(BUY)), register_saga(trade_saga(SELL))
