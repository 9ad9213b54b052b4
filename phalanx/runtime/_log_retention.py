"""Log retention by age, per taxonomy: on a schedule in a node, by hand offline.

The stdlib rotation (``backupCount``) prunes only when a file rotates and
counts files, not days (a second rotation on one day, ``NAME.jsonl.DAY.1.gz``,
uses a slot). This prunes by the day in the rotated file's name:
``<taxonomy>.jsonl.YYYY-MM-DD[.N][.gz]`` is deleted once it is more than
``retention_days[taxonomy]`` days older than today (UTC). The live file
``<taxonomy>.jsonl`` and in-progress ``.part`` files are never touched.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from phalanx.runtime._logging import TAXONOMIES
from phalanx.runtime._timers import Timer

if TYPE_CHECKING:
    from phalanx.runtime._system import ActorSystem

__all__ = [
    "DEFAULT_RETENTION_DAYS",
    "expired_logs",
    "prune_logs",
    "rotated_day",
    "schedule_log_retention",
]

DEFAULT_RETENTION_DAYS = 14  # LogManager's default
_ROTATED = re.compile(
    r"^(?P<taxonomy>[a-z]+)\.jsonl\.(?P<day>\d{4}-\d{2}-\d{2})(?:\.(?P<n>\d+))?(?:\.gz)?$"
)


def rotated_day(path: Path) -> tuple[str, date, int] | None:
    """``(taxonomy, day, n)`` of a rotated log file name, or None for any other file."""
    match = _ROTATED.match(path.name)
    if match is None or match["taxonomy"] not in TAXONOMIES:
        return None
    try:
        day = date.fromisoformat(match["day"])
    except ValueError:
        return None
    return match["taxonomy"], day, int(match["n"] or 0)


def expired_logs(
    log_dir: str | os.PathLike[str],
    retention_days: Mapping[str, int] | None = None,
    *,
    default_days: int = DEFAULT_RETENTION_DAYS,
    today: date | None = None,
) -> list[Path]:
    """The rotated files under ``log_dir`` past their taxonomy's retention, sorted."""
    retention = dict(retention_days or {})
    unknown = sorted(set(retention) - set(TAXONOMIES))
    if unknown:
        raise ValueError(f"unknown log taxonomies {unknown}; valid: {', '.join(TAXONOMIES)}")
    if min([default_days, *retention.values()]) < 1:
        raise ValueError("log retention must be at least 1 day")
    today = today or datetime.now(UTC).date()
    directory = Path(log_dir)
    if not directory.is_dir():
        return []
    out = []
    for path in directory.iterdir():
        parsed = rotated_day(path)
        if parsed is None:
            continue
        taxonomy, day, _ = parsed
        if (today - day).days > retention.get(taxonomy, default_days):
            out.append(path)
    return sorted(out)


def prune_logs(
    log_dir: str | os.PathLike[str],
    retention_days: Mapping[str, int] | None = None,
    *,
    default_days: int = DEFAULT_RETENTION_DAYS,
    today: date | None = None,
    dry_run: bool = False,
) -> list[Path]:
    """Delete (unless ``dry_run``) the expired rotated files; returns them."""
    expired = expired_logs(log_dir, retention_days, default_days=default_days, today=today)
    if dry_run:
        return expired
    removed = []
    for path in expired:
        try:
            path.unlink()
        except FileNotFoundError:  # the stdlib rotation pruned it first
            continue
        removed.append(path)
    return removed


def schedule_log_retention(system: ActorSystem, interval_s: float = 3600.0) -> Timer:
    """Prune ``system``'s logs now and every ``interval_s`` on its timers (per-taxonomy days).

    The retention per taxonomy is the one the node's :class:`LogManager` was
    built with. Each prune that removes files publishes ``logs_pruned``.
    """
    retention = {t: h.backupCount for t, h in system.logs.handlers.items()}

    def prune() -> None:
        removed = prune_logs(system.logs.log_dir, retention)
        if removed:
            system.events.publish("logs_pruned", None, files=[p.name for p in removed])

    prune()
    return system.timers.call_every(interval_s, prune)
