"""``dataclasses.replace`` without re-running ``__init__``, for the hot-path records.

The saga state, its step states, the order record and the dynamic child spec
are frozen dataclasses copied with a change on every transition. Their
``__init__`` only assigns the fields, so a blank instance given the old
values and the changes is what ``replace`` builds. Measured on 2 cores,
py3.11: ``replace`` ~11 us on a SagaState, ~14 us on an OrderRecord, ~15 us
on a ChildSpec; :func:`evolve` ~3-5 us (~0.4 us more than the per-class
copies it replaced, for one implementation instead of three).

Invariants:
- the copy equals what ``dataclasses.replace`` gives (same type, equal
  fields), and an unknown field name raises ``TypeError`` as it does;
- only for classes whose ``__init__`` takes exactly the fields (no
  ``InitVar``, no ``init=False`` field: checked once per class);
- a class with a ``__post_init__`` is refused by :func:`evolve`; a caller
  whose ``__post_init__`` only validates, and who has validated the changed
  fields itself, uses :func:`evolve_validated`.
"""

from __future__ import annotations

import dataclasses
import inspect
from typing import Any, NamedTuple, TypeVar

__all__ = ["evolve", "evolve_validated"]

_T = TypeVar("_T")


class _Layout(NamedTuple):
    names: tuple[str, ...]
    name_set: frozenset[str]
    slots: bool  # no instance __dict__: fields are set one by one
    post_init: bool


_LAYOUTS: dict[type, _Layout] = {}


def _layout(cls: type) -> _Layout:
    layout = _LAYOUTS.get(cls)
    if layout is not None:
        return layout
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"evolve needs a dataclass, got {cls.__qualname__}")
    names = tuple(f.name for f in dataclasses.fields(cls))
    params = tuple(inspect.signature(cls.__init__).parameters)[1:]  # without self
    if params != names:  # an InitVar or an init=False field: __init__ does more
        raise TypeError(f"{cls.__qualname__}.__init__ does not take exactly its fields")
    slots = not hasattr(object.__new__(cls), "__dict__")
    layout = _LAYOUTS[cls] = _Layout(names, frozenset(names), slots, hasattr(cls, "__post_init__"))
    return layout


def _copy(record: _T, layout: _Layout, changes: dict[str, Any]) -> _T:
    unknown = changes.keys() - layout.name_set
    if unknown:
        raise TypeError(f"{type(record).__name__} has no field {', '.join(sorted(unknown))}")
    new: _T = object.__new__(type(record))
    if layout.slots:
        put = object.__setattr__  # frozen only guards the class's own __setattr__
        for name in layout.names:
            put(new, name, changes[name] if name in changes else getattr(record, name))
        return new
    values = new.__dict__
    values.update(record.__dict__)
    values.update(changes)
    return new


def evolve(record: _T, /, **changes: Any) -> _T:
    """``dataclasses.replace(record, **changes)`` without ``__init__`` (see the module doc)."""
    layout = _layout(type(record))
    if layout.post_init:
        raise TypeError(
            f"{type(record).__qualname__} has a __post_init__: use dataclasses.replace, "
            "or evolve_validated once the changed fields are validated"
        )
    return _copy(record, layout, changes)


def evolve_validated(record: _T, /, **changes: Any) -> _T:
    """:func:`evolve` for a class whose ``__post_init__`` only validates.

    The caller has validated the changed fields; the others were validated
    when ``record`` was built, so the copy is what ``replace`` would give.
    """
    return _copy(record, _layout(type(record)), changes)
