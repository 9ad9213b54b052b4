"""Invariant 1, conservation: sent == handled + dead_lettered + queued + journaled.

Judged on one reading of ``system.counters()`` (:func:`check_counters`, also
what the ``phalanx chaos`` driver uses on ``ctl metrics``), or on a live
system polled until quiescent (:func:`check_conservation`).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from phalanx.runtime import ActorSystem
from phalanx.testing._invariant_result import InvariantResult

__all__ = ["check_conservation", "check_counters"]


def _gap(c: Mapping[str, int]) -> int:
    return int(c["sent"]) - sum(
        int(c[k]) for k in ("handled", "dead_lettered", "queued", "journaled")
    )


def check_counters(counters: Mapping[str, int]) -> InvariantResult:
    """Conservation on one reading of ``system.counters()`` (e.g. from ``ctl metrics``).

    ``details`` carry the counters and the gap (positive: messages
    unaccounted for; negative: counted twice).
    """
    gap = _gap(counters)
    details: dict[str, Any] = {**counters, "gap": gap}
    if gap > 0:
        details["violation"] = (
            f"{gap} message(s) neither handled, dead-lettered, queued nor journaled"
        )
    elif gap < 0:
        details["violation"] = f"{-gap} message(s) counted twice"
    return InvariantResult("conservation", gap == 0, details)


def check_conservation(system: ActorSystem, *, timeout: float = 5.0) -> InvariantResult:
    """sent == handled + dead_lettered + queued + journaled, once quiescent.

    A message being handled is counted as sent but not yet handled, so the
    check polls ``system.counters()`` (every 10 ms, at most ``timeout`` s)
    until the books close, then judges the last reading (:func:`check_counters`).
    """
    deadline = time.monotonic() + timeout
    counters = system.counters()
    while _gap(counters) and time.monotonic() < deadline:
        time.sleep(0.01)  # sleep-ok: bounded polling for quiescence, no event to wait on
        counters = system.counters()
    result = check_counters(counters)
    if not result.ok:
        result.details["violation"] += f" after waiting {timeout}s for quiescence"
    return result
