"""``phalanx dlq``: browse and operate the dead-letter store offline, on ``VAR/state.lmdb``.

Offline redrive queues the record in the store's outbox; the node delivers it
when it next starts (records stay ``pending`` until then).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import phalanx.actors  # noqa: F401 - registers every message type, so stored records decode
from phalanx.cli._state import open_state
from phalanx.errors import ConfigError, DeadLetterError
from phalanx.storage import DeadLetter, DeadLetterStore

__all__ = ["add_parser"]


def add_parser(sub: Any) -> None:
    """Register ``dlq`` and its subcommands."""
    p = sub.add_parser("dlq", help="dead letters, offline on VAR/state.lmdb")
    p.add_argument("--var-dir", default="./var", help="the node's var dir (default ./var)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    dsub = p.add_subparsers(dest="dlq_command", required=True, metavar="ACTION")

    ls = dsub.add_parser("ls", help="list dead letters, oldest first")
    ls.add_argument("--reason")
    ls.add_argument("--target")
    ls.add_argument("--status", choices=("pending", "redriven", "resolved"))
    ls.add_argument("--since", type=float, help="unix time: only failures at or after it")
    ls.add_argument("--limit", type=int, default=100)
    ls.add_argument("--after", help="page after this id")
    ls.set_defaults(func=_ls)

    show = dsub.add_parser("show", help="one record, with traceback and history")
    show.add_argument("id")
    show.set_defaults(func=_show)

    stats = dsub.add_parser("stats", help="depth, by reason, by target, oldest age")
    stats.set_defaults(func=_stats)

    redrive = dsub.add_parser("redrive", help="queue a record for redelivery at next start")
    redrive.add_argument("id")
    redrive.add_argument("--to", help="deliver to this path instead of the original target")
    redrive.set_defaults(func=_redrive)

    resolve = dsub.add_parser("resolve", help="mark a record resolved, with a note")
    resolve.add_argument("id")
    resolve.add_argument("--note", required=True)
    resolve.set_defaults(func=_resolve)

    purge = dsub.add_parser("purge", help="delete records by status and/or age")
    purge.add_argument("--status", choices=("pending", "redriven", "resolved"))
    purge.add_argument("--older-than", type=float, dest="older_than", help="seconds")
    purge.add_argument("--yes", action="store_true", help="required to purge pending records")
    purge.set_defaults(func=_purge)


@contextmanager
def _store(var_dir: str) -> Iterator[DeadLetterStore]:
    with open_state(var_dir) as storage:
        yield DeadLetterStore(storage)


def _print_records(records: list[DeadLetter], as_json: bool) -> None:
    if as_json:
        print(json.dumps([r.model_dump(mode="json") for r in records], indent=2))
        return
    if not records:
        print("no dead letters")
        return
    now = time.time()
    print(f"{'ID':32}  {'REASON':18} {'STATUS':9} {'ATT':>3} {'AGE':>8}  TARGET  MESSAGE")
    for r in records:
        age = f"{now - r.last_failed_at:.0f}s"
        print(
            f"{r.id:32}  {r.reason:18} {r.status:9} {r.attempts:>3} {age:>8}  "
            f"{r.target}  {r.message_type}: {r.payload_repr[:60]}"
        )


def _ls(args: argparse.Namespace) -> int:
    with _store(args.var_dir) as store:
        records = store.list(
            reason=args.reason,
            target=args.target,
            status=args.status,
            since=args.since,
            limit=args.limit,
            after=args.after,
        )
        _print_records(records, args.json)
    return 0


def _get(store: DeadLetterStore, ident: str) -> DeadLetter:
    try:
        return store.get(ident)
    except DeadLetterError as exc:
        raise ConfigError(str(exc)) from exc


def _show(args: argparse.Namespace) -> int:
    with _store(args.var_dir) as store:
        record = _get(store, args.id)
        data = record.model_dump(mode="json")
        if args.json:
            print(json.dumps(data, indent=2))
        else:
            for key, value in data.items():
                if key != "traceback":
                    print(f"{key:16} {value}")
            if record.traceback:
                print("traceback:\n" + record.traceback)
    return 0


def _stats(args: argparse.Namespace) -> int:
    with _store(args.var_dir) as store:
        stats = store.stats()
        if args.json:
            print(json.dumps(stats, indent=2))
        else:
            print(f"pending: {stats['depth']}  oldest: {stats['oldest_age_s']}")
            for name in ("by_reason", "by_target"):
                for key, count in sorted(stats[name].items()):
                    print(f"  {name[3:]:7} {key:40} {count}")
    return 0


def _redrive(args: argparse.Namespace) -> int:
    with _store(args.var_dir) as store:
        _get(store, args.id)
        try:
            record = store.redrive(args.id, to=args.to)
        except DeadLetterError as exc:
            print(f"phalanx: error: {exc}", file=sys.stderr)
            return 1
        if args.json:
            print(json.dumps(record.model_dump(mode="json"), indent=2))
        else:
            print(f"queued {record.id} for redelivery to {args.to or record.target} at next start")
    return 0


def _resolve(args: argparse.Namespace) -> int:
    with _store(args.var_dir) as store:
        _get(store, args.id)
        record = store.resolve(args.id, args.note)
        if args.json:
            print(json.dumps(record.model_dump(mode="json"), indent=2))
        else:
            print(f"resolved {record.id}: {args.note}")
    return 0


def _purge(args: argparse.Namespace) -> int:
    if args.status is None and args.older_than is None:
        raise ConfigError("purge needs --status and/or --older-than")
    if args.status in (None, "pending") and not args.yes:
        raise ConfigError("purging pending dead letters loses them: add --yes to confirm")
    with _store(args.var_dir) as store:
        count = store.purge(older_than_s=args.older_than, status=args.status)
        print(json.dumps({"purged": count}) if args.json else f"purged {count} records")
    return 0
