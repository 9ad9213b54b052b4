"""Protocols: the pydantic ``Message`` base, the type registry and the msgpack codec."""

from phalanx.errors import CodecError
from phalanx.protocols._codec import PLAIN_TYPE, decode, encode, encode_typed, type_name_of
from phalanx.protocols._message import Message, MessageRegistry, registry

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
