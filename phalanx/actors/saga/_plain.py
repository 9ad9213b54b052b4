"""Plain data for the journal: what step results and saga inputs may contain.

The journal is msgpack, so results are converted once, at the edge:
``Decimal`` -> ``str``, a pydantic model -> its JSON-mode dump, tuples and
sets -> lists, mappings -> dicts with ``str`` keys. Anything else is refused
with a :class:`SagaError` naming the path of the bad value.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from pydantic import BaseModel

from phalanx.actors.saga._definition import SagaError

__all__ = ["to_plain"]

_SCALARS = (str, int, float, bool, bytes, type(None))


def to_plain(value: Any, where: str = "result") -> Any:
    """``value`` as msgpack-able plain data (see the module docstring)."""
    if isinstance(value, _SCALARS):
        return value
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, Mapping):
        out = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise SagaError(f"{where}: key {key!r} is not a str")
            out[key] = to_plain(item, f"{where}.{key}")
        return out
    if isinstance(value, list | tuple | set | frozenset):
        items = sorted(value, key=repr) if isinstance(value, set | frozenset) else value
        return [to_plain(item, f"{where}[{i}]") for i, item in enumerate(items)]
    raise SagaError(
        f"{where}: {type(value).__qualname__} is not plain data "
        "(use str, int, float, bool, None, bytes, Decimal, list, dict or a pydantic model)"
    )
