"""The Risk actor's fund reservations and free balance (a mixin of ``Risk``).

- ``ReserveFunds`` -> :class:`Reservation`, idempotent by ``reservation_id``
  (a released id stays released); :class:`~phalanx.errors.InsufficientFunds`
  (permanent) when free balance minus held reservations is short;
  :class:`InvalidReservation` (permanent) for an amount <= 0.
- ``ReleaseFunds`` -> None, idempotent.
- ``FundsAtVenue`` -> None: the reservation's order is at the venue, which
  locks its funds itself (see below).

Free balance comes from ``balance`` (a callable returning free amounts per
asset, e.g. ``ledger.holdings``) or, with ``exchange``, from ``FetchBalance``
asked of ``/exchanges/<exchange>`` (cached ``balance_ttl_s``). A venue's free
balance already excludes its open orders, so once the saga reports an order
acknowledged (``FundsAtVenue``), a venue balance read *after* that report gets
the order's locked funds added back before the held reservations are taken
off: counted once, not twice. A balance read before it (a cached one) is left
as is, and the marks live in memory only: after a restart a resting order's
funds count twice again, on the safe side, until its saga releases.

Invariant: ``_reserved`` is derived from ``held``, kept in step by
``_hold`` / ``_unhold`` (its only writers) in the key order a rebuild from
``held`` gives, so sums come out identical (``Risk.usage()`` rebuilds it).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from decimal import Decimal

from structlog.typing import FilteringBoundLogger

from phalanx.actors._risk_checks import _log_value
from phalanx.errors import InsufficientFunds, PhalanxError
from phalanx.protocols.exchange import Balance, FetchBalance
from phalanx.protocols.trading import FundsAtVenue, ReleaseFunds, Reservation, ReserveFunds
from phalanx.runtime import Actor
from phalanx.storage._risk import RiskStore

__all__ = ["InvalidReservation"]

ZERO = Decimal(0)


class InvalidReservation(PhalanxError, ValueError):
    """A reservation request that can never succeed (amount <= 0). Permanent."""

    phalanx_error_class = "permanent"


class _RiskFunds(Actor):
    """Mixin of :class:`~phalanx.actors._risk.Risk`: reservations and the free balance."""

    # Set by Risk.__init__ and Risk.on_start.
    store: RiskStore
    log: FilteringBoundLogger
    _clock: Callable[[], float]
    _balance: Callable[[], Mapping[str, Decimal]] | None
    _exchange: str | None
    _balance_ttl_s: float
    _balance_cache: tuple[float, dict[str, Decimal]] | None
    held: dict[str, tuple[str, Decimal]]
    _reserved: dict[str, dict[str, Decimal]]  # asset -> {id: amount}
    # reservation id -> (asset, locked, monotonic time of FundsAtVenue); memory only.
    at_venue: dict[str, tuple[str, Decimal, float]]

    def _reserve(self, msg: ReserveFunds) -> Reservation:
        if msg.amount <= 0:
            raise InvalidReservation(
                f"reservation {msg.reservation_id}: amount must be > 0, got {msg.amount}"
            )
        free: Decimal | None = None
        if msg.reservation_id not in self.held:
            balances, error = self._free()
            if error is not None:
                raise InsufficientFunds(
                    f"reservation {msg.reservation_id}: balance unavailable ({error})"
                )
            free = None if balances is None else balances.get(msg.asset, ZERO)
        result = self.store.reserve(msg.reservation_id, msg.asset, msg.amount, free, self._clock())
        self.log.info(
            "funds_reserve", reservation_id=msg.reservation_id, asset=msg.asset,
            amount=str(msg.amount), outcome=result.outcome,
            available=_log_value(result.available),
        )  # fmt: skip
        if result.outcome == "short":
            raise InsufficientFunds(
                f"reservation {msg.reservation_id}: {msg.amount} {msg.asset} requested, "
                f"{result.available} available (free minus held reservations)"
            )
        if result.outcome == "held":
            self._hold(msg.reservation_id, msg.asset, msg.amount)
        return Reservation(
            reservation_id=msg.reservation_id, asset=result.asset, amount=result.amount
        )

    def _at_venue(self, msg: FundsAtVenue) -> None:
        held = self.held.get(msg.reservation_id)
        if held is None or msg.reservation_id in self.at_venue or msg.locked <= 0:
            return
        # Invariant: what is added back never exceeds what is held for the order.
        locked = min(msg.locked, held[1])
        self.at_venue[msg.reservation_id] = (held[0], locked, time.monotonic())
        self.log.info("funds_at_venue", reservation_id=msg.reservation_id, asset=held[0],
                      locked=str(locked))  # fmt: skip

    def _release(self, msg: ReleaseFunds) -> None:
        released = self.store.release(msg.reservation_id, self._clock())
        self._unhold(msg.reservation_id)
        self.at_venue.pop(msg.reservation_id, None)
        self.log.info("funds_release", reservation_id=msg.reservation_id, released=released)

    # --- inputs ------------------------------------------------------------------

    def _hold(self, rid: str, asset: str, amount: Decimal) -> None:
        self.held[rid] = (asset, amount)
        self._reserved.setdefault(asset, {})[rid] = amount

    def _unhold(self, rid: str) -> None:
        held = self.held.pop(rid, None)
        if held is not None:
            by_id = self._reserved[held[0]]
            del by_id[rid]
            if not by_id:  # as a rebuild from ``held`` would have it: no empty asset
                del self._reserved[held[0]]

    def _free(self) -> tuple[dict[str, Decimal] | None, str | None]:
        """Free balance per asset (None: no source configured) and an error text."""
        try:
            if self._balance is not None:
                return {a: Decimal(v) for a, v in self._balance().items()}, None
            if self._exchange is None:
                return None, None
            now = time.monotonic()
            cached = self._balance_cache
            if cached is None or now - cached[0] >= self._balance_ttl_s:
                # Taken before the ask: a lock reported before ``now`` is in the reply.
                reply = self.system.ask(
                    f"/exchanges/{self._exchange}", FetchBalance(), timeout=10.0
                )
                if not isinstance(reply, Balance):
                    return None, f"unexpected balance reply {type(reply).__name__}"
                cached = self._balance_cache = (now, dict(reply.free))
            read_at, free = cached[0], dict(cached[1])
            for asset, locked, reported_at in self.at_venue.values():
                if reported_at < read_at:  # the venue's free already excludes it
                    free[asset] = free.get(asset, ZERO) + locked
            return free, None
        except Exception as exc:  # the decision records it; it never passes unchecked
            return None, f"{type(exc).__name__}: {exc}"
