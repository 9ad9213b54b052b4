"""The msgpack codec: ``[type_name, body]`` arrays.

A :class:`Message` body is its ``model_dump(mode="json")``, so Decimal,
datetime, UUID and enums travel as JSON-mode values and come back exact through
``model_validate``. Plain data (str, int, float, bool, None, bytes, lists,
str-keyed dicts) travels as itself under the type name ``"plain"``.
Every failure is a :class:`CodecError`; no msgpack or pydantic error escapes.
"""

from __future__ import annotations

from typing import Any, NoReturn

import msgpack

from phalanx.errors import CodecError
from phalanx.protocols._message import PLAIN_TYPE, Message, registry

__all__ = ["PLAIN_TYPE", "decode", "encode", "encode_typed", "type_name_of"]

_EXACT_SCALARS = frozenset({str, float, bool, bytes, type(None)})
_SCALARS = (str, int, float, bool, bytes, type(None))
_INT_MIN, _INT_MAX = -(2**63), 2**64  # msgpack's int range: int64 min .. uint64 max
_MAX_DEPTH = 100


class _NotPlain(Exception):
    """Internal: why a value is not plain data; callers turn it into a CodecError."""


def _check_plain(value: Any, depth: int = 0) -> None:
    # Invariant: only what msgpack round-trips is "plain" (tuples come back as lists).
    # Exact-type checks first: this runs on every dead letter (measured: it was
    # 30% of the spill path with isinstance chains).
    kind = type(value)
    if kind in _EXACT_SCALARS:
        return
    if kind is int:
        if not _INT_MIN <= value < _INT_MAX:
            raise _NotPlain(f"int {value!r}: outside 64 bits")
        return
    if depth > _MAX_DEPTH:
        raise _NotPlain(f"plain data nested deeper than {_MAX_DEPTH} levels")
    if kind is dict:
        for key, item in value.items():
            if type(key) is not str and not isinstance(key, str):
                raise _NotPlain(
                    f"dict key of type {type(key).__qualname__!r}: plain dict keys must be str"
                )
            if type(item) not in _EXACT_SCALARS:
                _check_plain(item, depth + 1)
        return
    if kind is list or kind is tuple:
        for item in value:
            if type(item) not in _EXACT_SCALARS:
                _check_plain(item, depth + 1)
        return
    # Subclasses (str enums, IntEnum, OrderedDict...) travel as their base value.
    if isinstance(value, _SCALARS):
        if isinstance(value, int) and not isinstance(value, bool):
            _check_plain(int(value), depth)
        return
    if isinstance(value, dict):
        _check_plain(dict(value), depth)
        return
    if isinstance(value, list | tuple):
        _check_plain(list(value), depth)
        return
    raise _NotPlain(
        f"object of type {type(value).__qualname__!r}: not a phalanx Message or plain data"
    )


def _message_type_name(obj: Message) -> str:
    cls = type(obj)
    # Invariant: encode only emits names that decode back to this very class.
    if not registry.owns(cls):
        raise CodecError(
            f"cannot encode object of type {cls.__qualname__!r}: its type_name "
            f"{cls.type_name!r} is not registered to it"
        )
    return cls.type_name


def type_name_of(obj: Any) -> str:
    """The codec type name of ``obj``: its registered name, or ``"plain"`` for plain data.

    Raises :class:`CodecError`, naming the Python type, for anything else.
    """
    if isinstance(obj, Message):
        return _message_type_name(obj)
    try:
        _check_plain(obj)
    except _NotPlain as exc:
        raise CodecError(f"cannot encode {exc}") from None
    return PLAIN_TYPE


def encode(obj: Any) -> bytes:
    """Encode a :class:`Message` or plain data as msgpack ``[type_name, body]``.

    Raises :class:`CodecError`, naming the Python type, for anything else.
    """
    return encode_typed(obj)[1]


def encode_typed(obj: Any) -> tuple[str, bytes]:
    """Encode ``obj`` and return ``(type_name, bytes)`` in one pass."""
    body: Any
    if isinstance(obj, Message):
        name = _message_type_name(obj)
        try:
            body = obj.model_dump(mode="json")
        except Exception as exc:
            raise CodecError(f"cannot serialise {name!r}: {exc}") from exc
    else:
        try:
            _check_plain(obj)
        except _NotPlain as exc:
            raise CodecError(f"cannot encode {exc}") from None
        name, body = PLAIN_TYPE, obj
    try:
        return name, msgpack.packb([name, body], use_bin_type=True)
    except Exception as exc:
        raise CodecError(f"cannot encode {name!r}: {exc}") from exc


def _refuse_ext(code: int, data: bytes) -> NoReturn:
    # encode never emits msgpack extension types, so any in the input is corruption.
    raise ValueError(f"unexpected msgpack extension type {code}")


def decode(data: bytes | bytearray | memoryview) -> Any:
    """Decode bytes made by :func:`encode`: a :class:`Message` instance or plain data.

    Corrupt or truncated bytes, a frame that is not ``[str, body]``, an unknown
    type name, or a body the message class rejects raise :class:`CodecError`.
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise CodecError(f"cannot decode object of type {type(data).__qualname__!r}")
    try:
        frame = msgpack.unpackb(data, raw=False, strict_map_key=True, ext_hook=_refuse_ext)
    except Exception as exc:
        raise CodecError(f"corrupt message bytes: {exc}") from exc
    if type(frame) is not list or len(frame) != 2 or type(frame[0]) is not str:
        raise CodecError("corrupt message bytes: not a [type_name, body] frame")
    name, body = frame
    if name == PLAIN_TYPE:
        # Bin map keys and timestamp extensions unpack, but are not plain data.
        if type(body) not in _EXACT_SCALARS:
            try:
                _check_plain(body)
            except _NotPlain as exc:
                raise CodecError(f"corrupt message bytes: plain body holds {exc}") from None
        return body
    cls = registry.lookup(name)
    try:
        return cls.model_validate(body)
    except Exception as exc:  # ValidationError, or whatever a custom validator raised
        raise CodecError(f"invalid body for message type {name!r}: {exc}") from exc
