"""``phalanx journal``: the saga journal's size, and its retention, on ``VAR/state.lmdb``.

Both work offline and next to a running node: ``prune`` touches only sagas
that are finalized (which nothing writes again). See
:mod:`phalanx.storage._journal_prune` for what a pruned saga keeps.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import msgpack

from phalanx.cli._state import open_state
from phalanx.storage import Storage
from phalanx.storage._journal import _JOURNAL, _SNAPSHOTS
from phalanx.storage._journal_prune import is_pruned, prune_journal

__all__ = ["add_parser"]

_DAY_S = 86_400


def add_parser(sub: Any) -> None:
    """Register ``journal`` and its subcommands."""
    p = sub.add_parser("journal", help="saga journal size and retention, on VAR/state.lmdb")
    p.add_argument("--var-dir", default="./var", help="the node's var dir (default ./var)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    jsub = p.add_subparsers(dest="journal_command", required=True, metavar="ACTION")

    stats = jsub.add_parser("stats", help="sagas by status, records, pruned sagas, bytes")
    stats.set_defaults(func=_stats)

    prune = jsub.add_parser(
        "prune", help="drop the step records of sagas that ended more than --keep-days ago"
    )
    prune.add_argument(
        "--keep-days", type=_days, required=True,
        help="keep every saga that ended within this many days (0: prune every ended saga)",
    )  # fmt: skip
    prune.add_argument("--dry-run", action="store_true", help="count, do not delete")
    prune.add_argument(
        "--include-failed", action="store_true",
        help="also prune compensation_failed sagas (kept by default: funds may be stuck)",
    )  # fmt: skip
    prune.set_defaults(func=_prune)


def _days(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of days: {text!r}") from None
    if not value >= 0 or value == float("inf"):  # also refuses NaN
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text!r}")
    return value


def _stats(args: argparse.Namespace) -> int:
    with open_state(args.var_dir) as storage:
        out = journal_stats(storage)
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        by_status = ", ".join(f"{k} {v}" for k, v in sorted(out["by_status"].items())) or "none"
        print(f"sagas: {out['sagas']} ({by_status}); pruned {out['pruned']}")
        print(f"records: {out['records']} ({out['record_bytes']} bytes); "
              f"snapshots {out['snapshot_bytes']} bytes")  # fmt: skip
    return 0


def journal_stats(storage: Storage) -> dict[str, Any]:
    """Sagas by status, pruned sagas, and the records' and snapshots' sizes."""
    journal, snapshots = storage.db(_JOURNAL), storage.db(_SNAPSHOTS)

    def op(txn: Any) -> dict[str, Any]:
        by_status: dict[str, int] = {}
        sagas = pruned = snapshot_bytes = records = record_bytes = 0
        for key, raw in txn.cursor(db=snapshots):
            snap = msgpack.unpackb(raw, raw=False)
            sagas += 1
            status = str(snap.get("status"))
            by_status[status] = by_status.get(status, 0) + 1
            pruned += is_pruned(snap)
            snapshot_bytes += len(key) + len(raw)
        for key, raw in txn.cursor(db=journal):
            records += 1
            record_bytes += len(key) + len(raw)
        return {
            "sagas": sagas, "by_status": by_status, "pruned": pruned, "records": records,
            "record_bytes": record_bytes, "snapshot_bytes": snapshot_bytes,
        }  # fmt: skip

    result: dict[str, Any] = storage.read(op)
    return result


def _prune(args: argparse.Namespace) -> int:
    cutoff = time.time() - args.keep_days * _DAY_S
    with open_state(args.var_dir) as storage:
        result = prune_journal(
            storage, ended_before=cutoff, dry_run=args.dry_run, include_failed=args.include_failed
        )
    if args.json:
        print(json.dumps({**result.to_dict(), "ended_before": cutoff}, indent=2))
    else:
        verb = "would prune" if args.dry_run else "pruned"
        print(f"{verb} {result.pruned} saga(s): {result.records_deleted} records, "
              f"{result.bytes_freed} bytes; kept {result.kept_recent} recent, "
              f"{result.kept_running} running, {result.kept_failed} compensation_failed; "
              f"{result.already_pruned} already pruned")  # fmt: skip
    return 0
