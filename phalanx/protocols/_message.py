"""The pydantic v2 :class:`Message` base and the type registry."""

from __future__ import annotations

import threading
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict

from phalanx.errors import CodecError

__all__ = ["Message", "MessageRegistry", "registry"]


class MessageRegistry:
    """Type name -> :class:`Message` subclass, for decoding and the shell's ``tell``.

    Invariant: a name maps to exactly one class for the life of the process.
    """

    def __init__(self) -> None:
        self._types: dict[str, type[Message]] = {}
        self._lock = threading.Lock()

    def register(self, cls: type[Message]) -> None:
        """Register ``cls`` under ``cls.type_name``; a different class on that name is an error."""
        name = cls.type_name
        with self._lock:
            existing = self._types.get(name)
            if existing is not None and existing is not cls:
                raise CodecError(
                    f"message type name {name!r} is already used by "
                    f"{existing.__module__}.{existing.__qualname__}; "
                    f"{cls.__module__}.{cls.__qualname__} needs its own type_name"
                )
            self._types[name] = cls

    def lookup(self, name: str) -> type[Message]:
        """The class registered under ``name``; :class:`CodecError` if none."""
        try:
            return self._types[name]
        except KeyError:
            raise CodecError(f"unknown message type {name!r}") from None

    def names(self) -> list[str]:
        """Every registered type name, sorted."""
        return sorted(self._types)

    def __contains__(self, name: object) -> bool:
        return name in self._types


registry = MessageRegistry()


class Message(BaseModel):
    """Base class of typed protocol messages: frozen, no extra fields, registered by name.

    The registered name is ``type_name`` when a subclass sets it in its body,
    else ``module.QualName``. Set it explicitly for anything that is stored
    (dead letters, durable mailboxes) so a refactor does not orphan records.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    type_name: ClassVar[str] = "phalanx.Message"

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        if "type_name" not in cls.__dict__:
            cls.type_name = f"{cls.__module__}.{cls.__qualname__}"
        registry.register(cls)
