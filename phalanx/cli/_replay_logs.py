"""Replay's read of the ``order`` and ``decision`` logs (``*.jsonl`` and their rotated ``.gz``).

The ``order_fill`` lines are the fills replay cross-checks against the
order records, the ``saga_started`` lines name each saga's kind, and the
oldest ``order`` line is how far back the log still covers (retention
deletes older files). A line that is not a JSON object, or a file that
cannot be read, is an error line naming it.

Log lines written before this state's epoch (the first ledger opening, in
db ``reconcile``) belong to an earlier ``state.lmdb`` (``phalanx run`` moves
it aside on the embedded venue) and are skipped.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator, Mapping
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

from phalanx.cli._replay_db import Loaded

__all__: list[str] = []

_INF = float("inf")


def _log_files(log_dir: Path, taxonomy: str) -> list[Path]:
    if not log_dir.is_dir():
        return []
    return sorted(p for p in log_dir.glob(f"{taxonomy}.jsonl*") if not p.name.endswith(".part"))


def _lines(path: Path, errors: list[str]) -> Iterator[tuple[int, dict[str, Any]]]:
    opener: Any = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt", encoding="utf-8") as fh:
            for n, text in enumerate(fh, 1):
                if not text.strip():
                    continue
                try:
                    line = json.loads(text)
                except json.JSONDecodeError as exc:
                    errors.append(f"log {path.name} line {n} is not JSON: {exc.msg}")
                    continue
                if isinstance(line, dict):
                    yield n, line
                else:
                    errors.append(f"log {path.name} line {n} is not a JSON object")
    except (OSError, EOFError, UnicodeDecodeError) as exc:
        errors.append(f"log {path.name} cannot be read: {exc}")


def _ts(line: Mapping[str, Any]) -> float | None:
    try:
        return datetime.fromisoformat(str(line["ts"]).replace("Z", "+00:00")).timestamp()
    except (KeyError, ValueError):
        return None


def _read_logs(var_dir: Path, epoch: float | None, loaded: Loaded) -> None:
    log_dir = var_dir / "logs"
    fills: list[dict[str, Any]] = []
    kinds: dict[str, str] = {}
    skipped = 0
    since: float | None = None  # the oldest order line: what retention left
    order_files = _log_files(log_dir, "order")
    for taxonomy, event in (("order", "order_fill"), ("decision", "saga_started")):
        for path in order_files if taxonomy == "order" else _log_files(log_dir, taxonomy):
            for _, line in _lines(path, loaded.errors):
                ts = _ts(line)
                if taxonomy == "order" and ts is not None:
                    since = ts if since is None else min(since, ts)
                if line.get("event") != event:
                    continue
                if epoch is not None and ts is not None and ts < epoch:
                    skipped += 1
                    continue
                if event == "order_fill":
                    fills.append(line)
                elif line.get("saga_id") and line.get("saga_kind"):
                    kinds[str(line["saga_id"])] = str(line["saga_kind"])
    if skipped:
        loaded.notes.append(f"{skipped} log lines older than this state (an earlier run) skipped")
    loaded.sources = replace(
        loaded.sources, log_fills=fills, saga_kinds=kinds,
        log_since=None if not order_files else (since if since is not None else _INF),
    )  # fmt: skip


def _epoch(raw: Mapping[str, list[tuple[str, Any]]]) -> float | None:
    ats = [
        float(v["at"])
        for k, v in raw["reconcile"]
        if k.startswith("opening:") and isinstance(v, dict) and "at" in v
    ]
    # The opening's marker is written just after the opening is posted; a second of
    # slack keeps the lines of that same boot.
    return min(ats) - 1.0 if ats else None
