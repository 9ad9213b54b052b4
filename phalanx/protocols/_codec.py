"""The msgpack codec: ``[type_name, body]`` arrays.

A :class:`Message` body is its ``model_dump(mode="json")``, so Decimal,
datetime, UUID and enums travel as JSON-mode values and come back exact through
``model_validate``. Plain data (str, int, float, bool, None, bytes, lists,
str-keyed dicts) travels as itself under the type name ``"plain"``.
Every failure is a :class:`CodecError`; no msgpack or pydantic error escapes.
"""

from __future__ import annotations

from typing import Any

import msgpack
from pydantic import ValidationError

from phalanx.errors import CodecError
from phalanx.protocols._message import Message, registry

__all__ = ["PLAIN_TYPE", "decode", "encode", "type_name_of"]

PLAIN_TYPE = "plain"

_SCALARS = (str, int, float, bool, bytes, type(None))


def _check_plain(value: Any, depth: int = 0) -> None:
    # Invariant: only what msgpack round-trips exactly is "plain" (tuples become lists).
    if depth > 100:
        raise CodecError("cannot encode plain data nested deeper than 100 levels")
    if isinstance(value, _SCALARS):
        if isinstance(value, int) and not isinstance(value, bool):
            if not -(2**63) <= value < 2**64:
                raise CodecError(f"cannot encode int {value}: outside 64 bits")
        return
    if isinstance(value, list | tuple):
        for item in value:
            _check_plain(item, depth + 1)
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise CodecError(
                    f"cannot encode dict key of type {type(key).__qualname__!r}: "
                    "plain dict keys must be str"
                )
            _check_plain(item, depth + 1)
        return
    raise CodecError(
        f"cannot encode object of type {type(value).__qualname__!r}: "
        "not a phalanx Message or plain data"
    )


def type_name_of(obj: Any) -> str:
    """The codec type name of ``obj``: its registered name, or ``"plain"``."""
    if isinstance(obj, Message):
        return type(obj).type_name
    _check_plain(obj)
    return PLAIN_TYPE


def encode(obj: Any) -> bytes:
    """Encode a :class:`Message` or plain data; :class:`CodecError` for anything else."""
    if isinstance(obj, Message):
        name = type(obj).type_name
        try:
            body: Any = obj.model_dump(mode="json")
        except Exception as exc:  # noqa: BLE001 - pydantic serialisation errors vary
            raise CodecError(f"cannot serialise {name!r}: {exc}") from exc
    else:
        _check_plain(obj)
        name, body = PLAIN_TYPE, obj
    try:
        return bytes(msgpack.packb([name, body], use_bin_type=True))
    except (TypeError, ValueError, OverflowError) as exc:
        raise CodecError(f"cannot encode {name!r}: {exc}") from exc


def decode(data: bytes) -> Any:
    """Decode bytes made by :func:`encode`; :class:`CodecError` on anything malformed."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise CodecError(f"cannot decode object of type {type(data).__qualname__!r}")
    try:
        frame = msgpack.unpackb(bytes(data), raw=False, strict_map_key=True)
    except Exception as exc:  # noqa: BLE001 - msgpack raises many unrelated types
        raise CodecError(f"corrupt message bytes: {exc}") from exc
    if not isinstance(frame, list) or len(frame) != 2 or not isinstance(frame[0], str):
        raise CodecError("corrupt message bytes: not a [type_name, body] frame")
    name, body = frame
    if name == PLAIN_TYPE:
        return body
    cls = registry.lookup(name)
    try:
        return cls.model_validate(body)
    except ValidationError as exc:
        raise CodecError(f"invalid body for message type {name!r}: {exc}") from exc
