"""``health``: red, yellow or green per subsystem, from what the node already knows.

- storage: red if the writer thread is gone; yellow if failed ops grew since
  the last check or the writer's queue backs up; map usage is reported.
- venue: each exchange connection's own state (``connected`` is green,
  ``connecting``/``degraded``/restarting yellow, ``banned``/stopped red).
- breakers: red if any circuit is open, yellow if half-open.
- dead letters: growth of the record count since the previous check (the
  first check compares with the count when the control server started).
- reconciliation: the last ``reconciliation_result`` event; none yet is yellow.

The overall status is the worst of them.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from phalanx.runtime._events import Subscription
    from phalanx.runtime._system import ActorSystem

__all__ = ["DLQ_RED_GROWTH", "HealthState", "health_report"]

DLQ_RED_GROWTH = 100  # new dead letters between two checks that turn the DLQ red
WRITER_BACKLOG = 10_000  # queued writer ops that turn storage yellow
_RANK = {"green": 0, "yellow": 1, "red": 2}


class HealthState:
    """What ``health`` compares against: the previous check's figures."""

    def __init__(self, system: ActorSystem) -> None:
        self._lock = threading.Lock()
        self.dlq_count = system.dead_letters.count()
        self.checked_at = time.time()
        self.storage_errors = system.storage.stats()["errors"]
        recent = system.events.recent(1000, kind="reconciliation_result")
        self.reconciliation: dict[str, Any] | None = recent[-1].as_dict() if recent else None
        self._sub: Subscription = system.events.subscribe(["reconciliation_result"], maxsize=16)

    def close(self) -> None:
        """Stop following reconciliation events."""
        self._sub.close()

    def latest_reconciliation(self) -> dict[str, Any] | None:
        """The newest ``reconciliation_result`` event seen, as a dict."""
        while (event := self._sub.get(timeout=0)) is not None:
            self.reconciliation = event.as_dict()
        return self.reconciliation


def _entry(status: str, detail: str, **data: Any) -> dict[str, Any]:
    return {"status": status, "detail": detail, **data}


def _storage(system: ActorSystem, state: HealthState) -> dict[str, Any]:
    storage = system.storage
    stats = storage.stats()
    writer = storage._thread
    used = None
    try:
        info, stat = storage._env.info(), storage._env.stat()
        used = (info["last_pgno"] + 1) * stat["psize"]
    except Exception:  # closed env during shutdown: report what we can
        used = None
    data = {
        "map_size": stats["map_size"],
        "map_used": used,
        "map_usage": round(used / stats["map_size"], 4) if used else None,
        "queued": stats["queued"],
        "errors": stats["errors"],
        "grows": stats["grows"],
    }
    errors_grew = stats["errors"] > state.storage_errors
    state.storage_errors = stats["errors"]
    if writer is None or not writer.is_alive():
        return _entry("red", "the storage writer thread is not running", **data)
    if errors_grew:
        return _entry("yellow", "storage writes failed since the last check", **data)
    if stats["queued"] > WRITER_BACKLOG:
        return _entry("yellow", f"{stats['queued']} writes queued behind the writer", **data)
    return _entry("green", "writer running", **data)


def _venue(system: ActorSystem) -> dict[str, Any]:
    with system._lock:
        cells = [c for c in system._cells.values() if c.kind == "ExchangeConnection"]
    if not cells:
        return _entry("green", "no venue connections configured", connections={})
    views: dict[str, str] = {}
    worst = "green"
    for cell in cells:
        actor = cell.actor
        try:
            state = str(actor.introspect().get("state")) if actor is not None else cell.status
        except Exception as exc:
            state = f"introspect failed: {exc!r}"
        if cell.status == "running" and state == "connected":
            status = "green"
        elif cell.status in ("starting", "restarting", "backoff") or state in (
            "connecting",
            "degraded",
        ):
            status = "yellow"
        else:
            status = "red"
        views[cell.path] = state if cell.status == "running" else f"{cell.status} ({state})"
        worst = max(worst, status, key=_RANK.__getitem__)
    bad = {p: s for p, s in views.items() if s != "connected"}
    detail = "all connected" if not bad else ", ".join(f"{p}: {s}" for p, s in bad.items())
    return _entry(worst, detail, connections=views)


def _breakers(system: ActorSystem) -> dict[str, Any]:
    with system._lock:
        cells = list(system._cells.values())
    opened = [c.path for c in cells if c.breaker_state == "open" or c.status == "circuit_open"]
    half = [c.path for c in cells if c.breaker_state == "half_open"]
    if opened:
        return _entry("red", f"open: {', '.join(opened)}", open=opened, half_open=half)
    if half:
        return _entry("yellow", f"half-open: {', '.join(half)}", open=[], half_open=half)
    return _entry("green", "all closed", open=[], half_open=[])


def _dlq(system: ActorSystem, state: HealthState) -> dict[str, Any]:
    count = system.dead_letters.count()
    now = time.time()
    growth, since = count - state.dlq_count, now - state.checked_at
    state.dlq_count, state.checked_at = count, now
    data = {"records": count, "growth": growth, "since_s": round(since, 3)}
    if growth >= DLQ_RED_GROWTH:
        return _entry("red", f"{growth} new dead letters in {since:.0f}s", **data)
    if growth > 0:
        return _entry("yellow", f"{growth} new dead letters in {since:.0f}s", **data)
    return _entry("green", "no new dead letters", **data)


def _reconciliation(state: HealthState) -> dict[str, Any]:
    last = state.latest_reconciliation()
    if last is None:
        return _entry("yellow", "no reconciliation_result yet (unknown)", last=None)
    verdict = next(
        (last[k] for k in ("ok", "matched", "match") if isinstance(last.get(k), bool)), None
    )
    if verdict is None:
        diffs = next((last[k] for k in ("diffs", "differences", "drift") if k in last), None)
        verdict = None if diffs is None else not diffs
    if verdict is None:
        return _entry("yellow", "last reconciliation_result has no verdict field", last=last)
    if verdict:
        return _entry("green", "last reconciliation matched", last=last)
    return _entry("red", "last reconciliation found differences", last=last)


def health_report(system: ActorSystem, state: HealthState) -> dict[str, Any]:
    """The ``health`` result: overall ``status`` and one entry per subsystem."""
    with state._lock:
        subsystems = {
            "storage": _storage(system, state),
            "venue": _venue(system),
            "breakers": _breakers(system),
            "dead_letters": _dlq(system, state),
            "reconciliation": _reconciliation(state),
        }
    overall = max((s["status"] for s in subsystems.values()), key=_RANK.__getitem__)
    return {"status": overall, "subsystems": subsystems}
