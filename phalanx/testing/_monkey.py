"""The :class:`ChaosMonkey`: kills actors matching path globs on a seeded schedule.

Determinism: the wait before attempt ``k`` is the ``k``-th draw of an
exponential distribution seeded by ``seed`` (mean ``1 / rate_per_s``), and
the target of attempt ``k`` is :func:`choose_target` (``seed``, ``k``, the
sorted live matching paths). So the same seed and the same live paths at
each attempt give the same kills, whatever the thread timing.
"""

from __future__ import annotations

import fnmatch
import random
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from types import TracebackType
from typing import Any

from phalanx.runtime import ActorSystem

__all__ = ["ChaosMonkey", "Kill", "choose_target", "matching"]


@dataclass(frozen=True)
class Kill:
    """One kill: path, seconds since the monkey started, the incarnation live when it was sent."""

    seq: int
    path: str
    at_s: float
    incarnation: int

    def to_json(self) -> dict[str, Any]:
        """The kill as a plain dict."""
        return asdict(self)


def matching(paths: Iterable[str], globs: Sequence[str]) -> list[str]:
    """The sorted ``paths`` matching any of ``globs`` (``fnmatch``: ``*`` spans ``/`` too)."""
    return sorted({p for p in paths if any(fnmatch.fnmatchcase(p, g) for g in globs)})


def choose_target(seed: int, attempt: int, candidates: Sequence[str]) -> str | None:
    """Pure: the path attempt ``attempt`` kills among ``candidates`` (None if empty)."""
    ordered = sorted(candidates)
    if not ordered:
        return None
    return ordered[random.Random(seed * 1_000_003 + attempt).randrange(len(ordered))]


class ChaosMonkey:
    """Kill live actors whose paths match ``globs`` at ``rate_per_s`` (a context manager).

    Runs in a ``phalanx-chaos`` thread, joined by :meth:`stop`. Stops by itself
    after ``max_kills``. Every kill is recorded in :attr:`kills`::

        with ChaosMonkey(system, ["/orders/*", "/sagas/*"], rate_per_s=20, seed=7) as monkey:
            run_workload()
        assert monkey.kills, "the workload ran under fire"
    """

    def __init__(
        self,
        system: ActorSystem,
        globs: Sequence[str] = ("/orders/*", "/sagas/*"),
        rate_per_s: float = 10.0,
        seed: int = 0,
        max_kills: int | None = None,
    ) -> None:
        if rate_per_s <= 0:
            raise ValueError(f"rate_per_s must be > 0, got {rate_per_s}")
        if not globs:
            raise ValueError("globs must name at least one path pattern")
        self.system = system
        self.globs = tuple(globs)
        self.rate_per_s = rate_per_s
        self.seed = seed
        self.max_kills = max_kills
        self.attempts = 0
        self._kills: list[Kill] = []
        self._lock = threading.Lock()
        self._halt = threading.Event()
        self._killed = threading.Condition(self._lock)
        self._thread: threading.Thread | None = None
        self._started_at = 0.0

    @property
    def kills(self) -> list[Kill]:
        """Every kill so far, in order (a copy)."""
        with self._lock:
            return list(self._kills)

    def start(self) -> ChaosMonkey:
        """Start the killing thread; returns self."""
        if self._thread is not None:
            raise RuntimeError("this ChaosMonkey was already started")
        self._started_at = time.monotonic()
        self._thread = threading.Thread(target=self._run, name="phalanx-chaos", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> list[Kill]:
        """Stop and join the thread (a kill in progress completes); every kill."""
        self._halt.set()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                raise RuntimeError(f"phalanx-chaos thread did not stop within {timeout}s")
        return self.kills

    def wait_kills(self, n: int, timeout: float) -> bool:
        """Block until ``n`` kills happened (or ``timeout`` s passed); True if they did."""
        with self._killed:
            return self._killed.wait_for(lambda: len(self._kills) >= n, timeout)

    def __enter__(self) -> ChaosMonkey:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _run(self) -> None:
        waits = random.Random(self.seed)
        while not self._halt.wait(waits.expovariate(self.rate_per_s)):
            if self.max_kills is not None and len(self._kills) >= self.max_kills:
                return
            self.kill_one()

    def kill_one(self) -> Kill | None:
        """One attempt now (the thread calls this; tests may too): the kill, or None."""
        attempt = self.attempts
        self.attempts += 1
        live = [p for p in self.system.paths() if self.system.is_alive(p)]
        path = choose_target(self.seed, attempt, matching(live, self.globs))
        if path is None:
            return None
        try:
            incarnation = int(self.system.stats(path)["incarnation"])
            if not self.system.kill(path):
                return None
        except LookupError:  # it stopped between listing and killing
            return None
        with self._killed:
            kill = Kill(len(self._kills), path, time.monotonic() - self._started_at, incarnation)
            self._kills.append(kill)
            self._killed.notify_all()
        return kill
