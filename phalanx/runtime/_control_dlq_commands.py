"""The ``dlq.*`` control commands: list, show, stats, redrive, resolve, purge.

Redrive, resolve and purge change state, so each is audited on the event
stream before it acts. Purging pending dead letters loses them, so a purge
that could reach them needs ``confirm``; a purge with no filter is refused.
"""

from __future__ import annotations

from typing import Any

from phalanx.protocols.control import ControlError
from phalanx.runtime._control_args import (
    _DlqId,
    _DlqLs,
    _DlqPurge,
    _DlqRedrive,
    _DlqResolve,
    _NoArgs,
)
from phalanx.runtime._control_session import Session, _audit

__all__ = ["_dlq_ls", "_dlq_purge", "_dlq_redrive", "_dlq_resolve", "_dlq_show", "_dlq_stats"]


def _dlq_ls(session: Session, args: _DlqLs) -> Any:
    records = session.system.dead_letters.list(**args.model_dump())
    return [r.model_dump(mode="json") for r in records]


def _dlq_show(session: Session, args: _DlqId) -> Any:
    return session.system.dead_letters.get(args.id).model_dump(mode="json")


def _dlq_stats(session: Session, args: _NoArgs) -> Any:
    return session.system.dead_letters.stats()


def _dlq_redrive(session: Session, args: _DlqRedrive) -> Any:
    _audit(session, "dlq.redrive", id=args.id, to=args.to)
    return session.system.dead_letters.redrive(args.id, to=args.to).model_dump(mode="json")


def _dlq_resolve(session: Session, args: _DlqResolve) -> Any:
    _audit(session, "dlq.resolve", id=args.id)
    return session.system.dead_letters.resolve(args.id, args.note).model_dump(mode="json")


def _dlq_purge(session: Session, args: _DlqPurge) -> Any:
    if args.status is None and args.older_than_s is None:
        raise ControlError("bad_args", "purge needs status and/or older_than_s")
    if args.status in (None, "pending") and not args.confirm:
        raise ControlError("bad_args", "purging pending dead letters loses them: confirm it")
    _audit(session, "dlq.purge", status=args.status, older_than_s=args.older_than_s)
    count = session.system.dead_letters.purge(older_than_s=args.older_than_s, status=args.status)
    return {"purged": count}
