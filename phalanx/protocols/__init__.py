"""Protocols: the pydantic ``Message`` base, the type registry and the msgpack codec.

The names below load on first use (PEP 562): the control protocol
(``phalanx.protocols.control``) needs only msgpack, and `phalanx ctl` must not
pay for pydantic.
"""

from importlib import import_module
from typing import TYPE_CHECKING, Any

from phalanx.errors import CodecError

if TYPE_CHECKING:
    from phalanx.protocols._codec import PLAIN_TYPE, decode, encode, encode_typed, type_name_of
    from phalanx.protocols._message import Message, MessageRegistry, registry

_LAZY: dict[str, str] = {
    "PLAIN_TYPE": "phalanx.protocols._codec",
    "decode": "phalanx.protocols._codec",
    "encode": "phalanx.protocols._codec",
    "encode_typed": "phalanx.protocols._codec",
    "type_name_of": "phalanx.protocols._codec",
    "Message": "phalanx.protocols._message",
    "MessageRegistry": "phalanx.protocols._message",
    "registry": "phalanx.protocols._message",
}


def __getattr__(name: str) -> Any:
    """Load a public name on first use."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'phalanx.protocols' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "PLAIN_TYPE",
    "CodecError",
    "Message",
    "MessageRegistry",
    "decode",
    "encode",
    "encode_typed",
    "registry",
    "type_name_of",
]
