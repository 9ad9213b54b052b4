"""A seeded, bounded chaos campaign plan: pure, the same arguments give the same actions.

:func:`plan_campaign` returns a list of :class:`ChaosAction` sorted by time
(each stream - kills, storms, faults, floods, node kills - draws from its own
``random.Random(f"{seed}:{stream}")``, so changing one rate never reshuffles
the others). A kill names a glob and a seeded ``pick``; the runner
(:func:`~phalanx.testing.run_campaign`) resolves it against the live paths at
that moment (``sorted(matching)[pick % len]``), so the same seed and the same
live set kill the same actor. A plan is bounded: more than ``MAX_ACTIONS``
expected actions is refused.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

__all__ = ["ACTION_KINDS", "FAULT_MIX", "ChaosAction", "fault_body", "plan_campaign"]

ActionKind = Literal["kill", "restart_storm", "venue_fault", "flood", "node_sigkill"]
ACTION_KINDS: tuple[ActionKind, ...] = (
    "kill",
    "restart_storm",
    "venue_fault",
    "flood",
    "node_sigkill",
)
FAULT_MIX: Mapping[str, float] = {"5xx": 0.4, "lost": 0.3, "timeout": 0.2, "ban": 0.1}
"""Default weights of the venue fault kinds (see :func:`fault_body`)."""

MAX_ACTIONS = 100_000  # a campaign is bounded: refuse plans larger than this


@dataclass(frozen=True)
class ChaosAction:
    """One planned action at ``at_s`` seconds after the campaign starts.

    ``glob`` and ``pick`` choose the target of ``kill``, ``restart_storm`` and
    ``flood``; ``count`` is the storm's kills or the flood's messages;
    ``fault`` is the venue fault body of ``venue_fault``.
    """

    at_s: float
    kind: ActionKind
    glob: str = ""
    pick: int = 0
    count: int = 1
    fault: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        """The action as a plain dict."""
        return asdict(self)


def fault_body(
    kind: str, rng: random.Random, *, hold_s: float = 1.0, ban_s: int = 1
) -> dict[str, Any]:
    """The ``/__venue/faults`` body of a fault kind: ``5xx``, ``lost``, ``timeout`` or ``ban``.

    ``lost``: the venue accepts the order, then drops the response;
    ``timeout``: an order lookup is held ``hold_s`` then dropped unanswered
    (longer than the client timeout, so it is a timeout); ``ban``: HTTP 418
    with ``Retry-After: ban_s``.
    """
    if kind == "5xx":
        return {"kind": rng.choice(("http_500", "http_502", "http_503")), "endpoint": "*"}
    if kind == "lost":
        return {"kind": "lost", "endpoint": "POST /api/v3/order", "when": "after"}
    if kind == "timeout":
        endpoint = rng.choice(("GET /api/v3/order", "POST /api/v3/order"))
        return {"kind": "timeout", "endpoint": endpoint, "hold_s": hold_s}
    if kind == "ban":
        return {"kind": "http_418", "endpoint": "*", "retry_after_s": ban_s}
    raise ValueError(f"unknown fault kind {kind!r}; valid: 5xx, lost, timeout, ban")


def _times(rng: random.Random, rate: float, duration_s: float) -> list[float]:
    """A Poisson process of ``rate`` per second on [0, duration_s)."""
    out: list[float] = []
    t = rng.expovariate(rate) if rate > 0 else duration_s
    while t < duration_s:
        out.append(round(t, 6))
        t += rng.expovariate(rate)
    return out


def _node_kill_times(rng: random.Random, n: int, duration_s: float) -> list[float]:
    """``n`` SIGKILLs spread over the campaign, one per slot, jittered inside it."""
    slot = duration_s / (n + 1)
    return [round(slot * (i + 1) + rng.uniform(-slot / 4, slot / 4), 6) for i in range(n)]


def plan_campaign(
    seed: int,
    duration_s: float,
    kill_rate: float,
    fault_rate: float,
    node_kills: int = 0,
    globs: Sequence[str] = ("/orders/*", "/sagas/*"),
    *,
    storm_rate: float = 0.0,
    storm_size: int = 5,
    flood_rate: float = 0.0,
    flood_size: int = 100,
    flood_globs: Sequence[str] | None = None,
    fault_mix: Mapping[str, float] = FAULT_MIX,
    timeout_hold_s: float = 1.0,
    ban_s: int = 1,
) -> list[ChaosAction]:
    """The campaign's actions, sorted by time. Pure and deterministic in its arguments.

    Rates are per second (Poisson): ``kill_rate`` single kills of an actor
    matching one of ``globs`` (chosen per kill), ``storm_rate`` restart storms
    (``storm_size`` kills back to back), ``fault_rate`` venue faults drawn
    from ``fault_mix``, ``flood_rate`` mailbox floods of ``flood_size``
    messages to an actor matching ``flood_globs`` (default ``globs``).
    ``node_kills`` node SIGKILL+restarts are spread over the duration.
    """
    if duration_s <= 0:
        raise ValueError(f"duration_s must be > 0, got {duration_s}")
    rates = {"kill_rate": kill_rate, "fault_rate": fault_rate,
             "storm_rate": storm_rate, "flood_rate": flood_rate}  # fmt: skip
    for name, rate in rates.items():
        if rate < 0:
            raise ValueError(f"{name} must be >= 0, got {rate}")
    if node_kills < 0 or storm_size < 1 or flood_size < 1:
        raise ValueError("node_kills must be >= 0, storm_size and flood_size >= 1")
    if not globs and (kill_rate or storm_rate):
        raise ValueError("kills need at least one path glob")
    expected = duration_s * sum(rates.values()) + node_kills
    if expected > MAX_ACTIONS:
        raise ValueError(f"campaign too large: ~{expected:.0f} actions > {MAX_ACTIONS}")
    kinds = [k for k, w in fault_mix.items() if w > 0]
    for k in kinds:
        fault_body(k, random.Random(0))  # names an unknown kind now, not mid-campaign
    weights = [fault_mix[k] for k in kinds]
    flood_targets = tuple(flood_globs) if flood_globs is not None else tuple(globs)

    def stream(name: str) -> random.Random:
        return random.Random(f"{seed}:{name}")

    actions: list[ChaosAction] = []
    rng = stream("kill")
    for t in _times(rng, kill_rate, duration_s):
        actions.append(ChaosAction(t, "kill", rng.choice(globs), rng.randrange(2**31)))
    rng = stream("storm")
    for t in _times(rng, storm_rate, duration_s):
        glob, pick = rng.choice(globs), rng.randrange(2**31)
        actions.append(ChaosAction(t, "restart_storm", glob, pick, count=storm_size))
    rng = stream("fault")
    if kinds:
        for t in _times(rng, fault_rate, duration_s):
            kind = rng.choices(kinds, weights)[0]
            body = fault_body(kind, rng, hold_s=timeout_hold_s, ban_s=ban_s)
            actions.append(ChaosAction(t, "venue_fault", fault=body))
    rng = stream("flood")
    if flood_targets:
        for t in _times(rng, flood_rate, duration_s):
            glob, pick = rng.choice(flood_targets), rng.randrange(2**31)
            actions.append(ChaosAction(t, "flood", glob, pick, count=flood_size))
    for t in _node_kill_times(stream("node"), node_kills, duration_s):
        actions.append(ChaosAction(t, "node_sigkill"))
    actions.sort(key=lambda a: (a.at_s, ACTION_KINDS.index(a.kind)))
    return actions
