"""A dead-letter record: the model, its on-disk row (layout version 1) and the txn ops on it.

The row layout is the on-disk format of db ``deadletters`` (see
``_deadletters.py``): a msgpack array ``[1, *_FIELDS]``; positions never
change. The ops at the end are pure functions of the write txn, run by the
store's writer ops.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable, Mapping
from typing import Any, Final, Literal

import msgpack
from pydantic import BaseModel, ConfigDict

from phalanx._ids import id_to_key, key_to_id
from phalanx.errors import CodecError, DeadLetterError
from phalanx.protocols import decode
from phalanx.storage._env import Txn

__all__ = ["REASONS", "DeadLetter", "Deliver"]

REASONS: Final = (
    "mailbox_overflow",
    "dead_target",
    "actor_stopped",
    "circuit_open",
    "retries_exhausted",
    "permanent_error",
    "handler_failed",
    "timeout",
    "validation_failed",
    "compensation_failed",
)
_STATUSES: Final = ("pending", "redriven", "resolved")
_DB: Final = "deadletters"
_OUTBOX: Final = "dl_outbox"
_REPR_LIMIT: Final = 2000
_BATCH_CAP: Final = 10_000  # fresh records per coalesced op: bounds one txn's size
_SCAN_CHUNK: Final = 20_000  # records scanned per purge txn: bounds writer stalls
_VERSION: Final = 1
# Stored array layout after the version; positions are part of the on-disk format.
_FIELDS: Final = (
    "reason", "target", "sender", "message_id", "message_type", "payload", "payload_repr",
    "redrivable", "error_type", "error_message", "traceback", "trace", "attempts", "count",
    "first_failed_at", "last_failed_at", "status", "note", "history",
)  # fmt: skip
_REASON, _TARGET, _STATUS = 1, 2, 17  # array indices used by scans
_FIRST, _LAST = 15, 16


class DeadLetter(BaseModel):
    """One dead-letter record (DESIGN section 5). JSON-safe via ``model_dump(mode="json")``."""

    model_config = ConfigDict(frozen=True)

    id: str
    reason: str
    target: str | None
    sender: str | None
    message_id: str | None
    message_type: str  # codec type name, or the Python qualname if unencodable
    message: Any = None  # decoded payload; None when not redrivable
    payload_repr: str  # repr of the original, at most 2000 chars
    redrivable: bool
    error_type: str | None
    error_message: str | None
    traceback: str | None
    trace: dict[str, str]
    attempts: int
    count: int  # how many times this message failed into the store
    first_failed_at: float
    last_failed_at: float
    status: Literal["pending", "redriven", "resolved"]
    note: str | None
    history: list[dict[str, Any]]  # put / redrive / resolve events, each with "at"


Deliver = Callable[[DeadLetter, str], None]


def _qualname(cls: type) -> str:
    return (
        cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"
    )


def _bounded_repr(obj: Any) -> str:
    try:
        text = repr(obj)
    except Exception as exc:  # a broken __repr__ must not lose the dead letter
        text = f"<{_qualname(type(obj))} (repr failed: {exc!r})>"
    return text if len(text) <= _REPR_LIMIT else text[: _REPR_LIMIT - 3] + "..."


def _describe(error: BaseException) -> tuple[str, str]:
    """(message, traceback) of an error; format_exception never renders locals (secrets)."""
    try:
        return str(error), "".join(traceback.format_exception(error))
    except Exception as exc:  # a broken __str__ must not lose the dead letter
        return f"<str() failed: {exc!r}>", "".join(traceback.format_exception_only(exc))


def _pack(obj: Any) -> bytes:
    packed: bytes = msgpack.packb(obj, use_bin_type=True)
    return packed


def _unpack(raw: bytes) -> Any:
    return msgpack.unpackb(raw, raw=False)


def _to_dict(row: list[Any]) -> dict[str, Any]:
    """Stored array -> field dict, with the implied initial ``put`` event made explicit."""
    rec = dict(zip(_FIELDS, row[1:], strict=True))
    if rec["history"] is None:
        event = {"action": "put", "at": rec["first_failed_at"], "reason": rec["reason"]}
        event.update(target=rec["target"], attempts=rec["attempts"])
        if rec["error_type"] is not None:
            event["error_type"] = rec["error_type"]
        rec["history"] = [event]
    return rec


def _to_row(rec: Mapping[str, Any]) -> bytes:
    return _pack([_VERSION, *(rec[name] for name in _FIELDS)])


def _key(ident: str) -> bytes:
    try:
        return id_to_key(ident)
    except ValueError as exc:
        raise DeadLetterError(f"no dead letter {ident!r} (not an id)") from exc


# -- ops run in the writer thread (pure functions of the txn) ----------------------


def _load(txn: Txn, db: Any, key: bytes) -> dict[str, Any]:
    raw = txn.get(key, db=db)
    if raw is None:
        raise DeadLetterError(f"no dead letter {key_to_id(key)!r}")
    return _to_dict(_unpack(raw))


def _upsert(txn: Txn, *, db: Any, key: bytes, row: list[Any]) -> None:
    """A re-failed record: back to pending, count + 1; keeps payload, first_failed_at, history."""
    raw = txn.get(key, db=db)
    if raw is None:
        txn.put(key, _pack(row), db=db)
        return
    rec, new = _to_dict(_unpack(raw)), _to_dict(row)
    for name in ("reason", "sender", "attempts", "last_failed_at", "status"):
        rec[name] = new[name]
    for name in ("error_type", "error_message", "traceback"):
        rec[name] = new[name]
    rec.update(
        target=new["target"] or rec["target"],
        trace={**rec["trace"], **new["trace"]},
        count=rec["count"] + 1,
    )
    rec["history"].extend(new["history"])
    txn.put(key, _to_row(rec), db=db)


def _redrivable(txn: Txn, db: Any, key: bytes, to: str | None) -> tuple[dict[str, Any], str]:
    rec, ident = _load(txn, db, key), key_to_id(key)
    if rec["status"] != "pending":
        raise DeadLetterError(f"dead letter {ident} is already {rec['status']}, not pending")
    if not rec["redrivable"]:
        raise DeadLetterError(
            f"dead letter {ident} is not redrivable: its {rec['message_type']} message "
            "could not be encoded, only its repr was kept"
        )
    dest = to or rec["target"]
    if not dest:
        raise DeadLetterError(f"dead letter {ident} has no target; pass to=PATH")
    try:
        decode(rec["payload"])  # check before flipping: deliver needs the message
    except CodecError as exc:
        raise DeadLetterError(f"dead letter {ident} payload cannot be decoded: {exc}") from exc
    return rec, dest


def _flip_redriven(
    txn: Txn, outbox: Any, key: bytes, rec: dict[str, Any], *, dest: str, now: float
) -> None:
    rec["status"] = "redriven"
    rec["attempts"] += 1
    rec["history"].append({"action": "redrive", "to": dest, "at": now})
    txn.delete(key, db=outbox)


def _model(key: bytes, rec: list[Any] | dict[str, Any]) -> DeadLetter:
    fields = _to_dict(rec) if isinstance(rec, list) else dict(rec)
    payload = fields.pop("payload")
    message = None
    if payload is not None:
        try:
            message = decode(payload)
        except CodecError as exc:  # e.g. its type is no longer registered
            fields["payload_repr"] = f"<undecodable {fields['message_type']}: {exc}>"
        if fields["payload_repr"] is None:
            fields["payload_repr"] = _bounded_repr(message)
    return DeadLetter.model_validate({**fields, "id": key_to_id(key), "message": message})
