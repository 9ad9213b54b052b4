"""The campaign runner: execute a plan against a :class:`Driver` at its offsets.

:func:`run_campaign` executes a plan (:func:`~phalanx.testing.plan_campaign`)
at the planned offsets, reports progress, and ends with ``driver.verdict()``.

What a driver must do (the in-process one is :class:`InProcessDriver`; a
control-socket driver for ``phalanx chaos`` maps each method to the node):

- ``list_paths()``: every live actor path (control command ``paths``);
- ``kill(path)``: end that incarnation abruptly, True if it was live
  (``kill``; ``not_found`` -> False);
- ``inject_fault(fault)``: ``POST /__venue/faults`` with ``fault`` as the
  JSON body (the fields of ``phalanx.actors.venue.Fault``);
- ``flood(path, n)``: tell ``n`` messages the actor does not handle (each is
  dead-lettered ``validation_failed``, or ``mailbox_overflow``); the number sent;
- ``sigkill_and_restart()``: SIGKILL the node process, start ``phalanx run``
  again on the same var dir, wait for its control socket; raise
  :class:`ChaosUnsupported` if it cannot;
- ``verdict()``: end the chaos (``DELETE /__venue/faults``), stop the
  strategy, wait (bounded) for running sagas, take the conservation counters
  (control command ``metrics``: ``counters``), stop the node, then
  ``check_all(Storage(var/state.lmdb, readonly=True), VenueState.fetch(url))``
  and add the conservation result (``Verdict.of([...])`` merges results).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from phalanx.testing._campaign_plan import ChaosAction
from phalanx.testing._monkey import matching
from phalanx.testing._verdict import Verdict

__all__ = ["ChaosUnsupported", "Driver", "run_campaign"]


class ChaosUnsupported(NotImplementedError):
    """The driver cannot perform this action (e.g. SIGKILL its own process)."""


class Driver(Protocol):
    """What :func:`run_campaign` needs from a node (see the module docstring)."""

    def list_paths(self) -> list[str]:
        """Every live actor path."""
        ...

    def kill(self, path: str) -> bool:
        """Kill the incarnation at ``path``; True if one was live."""
        ...

    def inject_fault(self, fault: Mapping[str, Any]) -> None:
        """Inject one venue fault (the fields of ``Fault``)."""
        ...

    def flood(self, path: str, n: int) -> int:
        """Tell ``n`` unhandled messages to ``path``; how many were sent."""
        ...

    def sigkill_and_restart(self) -> None:
        """SIGKILL the node and start it again (or raise :class:`ChaosUnsupported`)."""
        ...

    def verdict(self) -> Verdict:
        """End the chaos, let the node settle (bounded), check every invariant."""
        ...


@dataclass
class _Tally:
    executed: dict[str, int] = field(default_factory=dict)
    kills: int = 0
    missed: int = 0  # kill targets with no live match at that moment
    flooded: int = 0
    skipped: dict[str, str] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    def count(self, kind: str) -> None:
        self.executed[kind] = self.executed.get(kind, 0) + 1


def _targets(driver: Driver, action: ChaosAction, n: int) -> list[str]:
    live = matching(driver.list_paths(), [action.glob])
    if not live:
        return []
    return [live[(action.pick + i) % len(live)] for i in range(min(n, len(live)))]


def _execute(driver: Driver, action: ChaosAction, tally: _Tally) -> str:
    """Run one action; a progress line describing what happened."""
    if action.kind in ("kill", "restart_storm"):
        targets = _targets(driver, action, action.count)
        if not targets:
            tally.missed += 1
            return f"{action.kind} {action.glob}: nothing live matches"
        killed = [p for p in targets if driver.kill(p)]
        tally.kills += len(killed)
        return f"{action.kind} {', '.join(killed) or '(all already down)'}"
    if action.kind == "venue_fault":
        assert action.fault is not None
        driver.inject_fault(action.fault)
        return f"venue_fault {action.fault['kind']} on {action.fault.get('endpoint', '*')}"
    if action.kind == "flood":
        targets = _targets(driver, action, 1)
        if not targets:
            tally.missed += 1
            return f"flood {action.glob}: nothing live matches"
        sent = driver.flood(targets[0], action.count)
        tally.flooded += sent
        return f"flood {targets[0]} with {sent} messages"
    driver.sigkill_and_restart()
    return "node SIGKILLed and restarted"


def run_campaign(
    plan: Sequence[ChaosAction],
    driver: Driver,
    progress: Callable[[str], object] = print,
    *,
    halt: threading.Event | None = None,
) -> Verdict:
    """Execute ``plan`` at its offsets against ``driver``; the verdict, with campaign facts.

    A driver error on one action is recorded (``campaign.errors``) and the
    campaign goes on; an action the driver cannot do (:class:`ChaosUnsupported`)
    is recorded under ``campaign.skipped``. Setting ``halt`` ends the schedule
    early (the verdict is still taken).
    """
    halt = halt or threading.Event()
    tally = _Tally()
    start = time.monotonic()
    for action in sorted(plan, key=lambda a: a.at_s):
        if halt.wait(max(0.0, start + action.at_s - time.monotonic())):
            break
        try:
            line = _execute(driver, action, tally)
            tally.count(action.kind)
        except ChaosUnsupported as exc:
            tally.skipped[action.kind] = str(exc)
            line = f"{action.kind} skipped: {exc}"
        except Exception as exc:
            tally.errors.append(f"{action.kind} at {action.at_s}s: {exc!r}")
            line = f"{action.kind} failed: {exc!r}"
        progress(f"[{time.monotonic() - start:7.2f}s] {line}")
    elapsed = round(time.monotonic() - start, 3)
    progress(f"[{elapsed:7.2f}s] schedule done ({len(plan)} actions); checking invariants")
    verdict = driver.verdict()
    facts = {**asdict(tally), "planned": len(plan), "duration_s": elapsed}
    progress(f"verdict: {'ok' if verdict.ok else 'VIOLATED ' + ', '.join(verdict.violations)}")
    return verdict.with_campaign(**facts)
