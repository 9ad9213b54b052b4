"""The pydantic v2 :class:`Message` base and the type registry."""

from __future__ import annotations

import threading
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict

from phalanx.errors import CodecError

__all__ = ["PLAIN_TYPE", "Message", "MessageRegistry", "registry"]

PLAIN_TYPE = "plain"
"""The codec type name of plain data; reserved, so no Message class may take it."""


def _qualified(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


class MessageRegistry:
    """Type name -> :class:`Message` subclass, for decoding and the shell's ``tell``.

    Invariant: a name maps to exactly one class for the life of the process, and
    no class is registered under :data:`PLAIN_TYPE`.
    """

    def __init__(self) -> None:
        self._types: dict[str, type[Message]] = {}
        # Guards writes and iteration; single-key reads are atomic dict lookups.
        self._lock = threading.Lock()

    def register(self, cls: type[Message]) -> None:
        """Register ``cls`` under ``cls.type_name``.

        Re-registering the same class is a no-op. Raises :class:`CodecError` if
        another class already holds the name, or the name is empty or reserved.
        """
        name = cls.type_name
        if not isinstance(name, str) or not name:
            raise CodecError(f"{_qualified(cls)}.type_name must be a non-empty str, not {name!r}")
        if name == PLAIN_TYPE:
            raise CodecError(
                f"{_qualified(cls)} cannot use type_name {PLAIN_TYPE!r}: "
                "it is reserved for plain data"
            )
        with self._lock:
            existing = self._types.get(name)
            if existing is not None and existing is not cls:
                raise CodecError(
                    f"message type name {name!r} is already used by {_qualified(existing)}; "
                    f"{_qualified(cls)} needs its own type_name"
                )
            self._types[name] = cls

    def lookup(self, name: str) -> type[Message]:
        """The class registered under ``name``; :class:`CodecError` if none."""
        try:
            return self._types[name]
        except KeyError:
            raise CodecError(f"unknown message type {name!r}") from None

    def owns(self, cls: type[Message]) -> bool:
        """True if ``cls`` is the class registered under its own ``type_name``."""
        return self._types.get(cls.type_name) is cls

    def names(self) -> list[str]:
        """Every registered type name, sorted."""
        with self._lock:
            return sorted(self._types)

    def __contains__(self, name: object) -> bool:
        """True if a class is registered under ``name``."""
        return name in self._types


registry = MessageRegistry()
"""The process-wide registry every :class:`Message` subclass joins when defined."""


class Message(BaseModel):
    """Base class of typed protocol messages: frozen, no extra fields, registered by name.

    The registered name is ``type_name`` when a subclass sets it in its body,
    else ``module.QualName`` (a subclass of a named message gets its own
    default name; it does not inherit its parent's). Set it explicitly for
    anything that is stored (dead letters, durable mailboxes) so a refactor
    does not orphan records. Defining a second, different class under a name
    already taken raises :class:`CodecError` at class creation.

    Fields round-trip through the codec via ``model_dump(mode="json")`` and
    lax ``model_validate``, so Decimal, aware datetime, UUID and Enum values
    come back equal. Do not make message models strict: strict mode rejects
    the JSON-mode strings those types travel as.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    type_name: ClassVar[str] = "phalanx.Message"

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        """Name the new subclass (unless its body did) and register it."""
        super().__pydantic_init_subclass__(**kwargs)
        if "type_name" not in cls.__dict__:
            cls.type_name = _qualified(cls)
        registry.register(cls)
