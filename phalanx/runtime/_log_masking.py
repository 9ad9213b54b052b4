"""Secret masking for log lines: secret-named keys, registered literals, inline secrets.

A value is masked into a JSON-ready copy: values JSON cannot hold are turned
into text first (``repr`` for arbitrary objects), so a secret inside an
object's repr is masked too; structures deeper than ``_MAX_DEPTH`` become
(masked) text. A key whose name contains a secret part (``api_key``,
``secret``, ``signature``...) has its value replaced whole by :data:`MASK`;
a registered literal (at least ``_MIN_SECRET_LEN`` characters, longest first)
is replaced wherever it occurs; ``name=value`` / ``"name": "value"`` /
``Name: value`` patterns are masked inline. :class:`~phalanx.runtime._logging.LogManager`
runs this after exceptions are rendered, so nothing reaches a file unmasked.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import date, datetime
from decimal import Decimal
from enum import Enum
from pathlib import PurePath
from typing import Any
from uuid import UUID

from structlog.typing import EventDict

__all__ = ["MASK", "mask_secrets", "mask_value"]

MASK = "***"

_SECRET_NAMES = r"api_?key|secret|signature|password|passphrase|token|private_?key"
_SECRET_KEY_PARTS = ("api_key", "apikey", "secret", "signature", "password", "passphrase",
                     "token", "x-mbx-apikey", "private_key")  # fmt: skip
# ``signature=abc`` (URLs, reprs), ``"apiKey": "abc"`` / ``'secret': 'abc'`` (JSON, dict reprs),
# ``X-MBX-APIKEY: abc`` (headers). The name may carry a prefix/suffix (newSecret, api_key_2).
_INLINE_SECRET = re.compile(
    rf"(?i)((?:{_SECRET_NAMES})[\w-]*[\"']?\s*[=:]\s*[\"']?)([^&\s\"',;}}\]]+)"
)
_MIN_SECRET_LEN = 4  # shorter registered values would mask ordinary words everywhere
_MAX_DEPTH = 20  # deeper structures are rendered as (masked) text
_SCALARS = frozenset({int, bool, type(None)})


@functools.lru_cache(maxsize=4096)
def _is_secret_key(key: object) -> bool:
    # Cached: the same few dozen field names come by on every line.
    return isinstance(key, str) and any(part in key.lower() for part in _SECRET_KEY_PARTS)


def _mask_literals(text: str, secrets: Sequence[str]) -> str:
    for secret in secrets:  # longest first, so a secret containing another is masked whole
        if secret in text:
            text = text.replace(secret, MASK)
    return text


def _mask_text(text: str, secrets: Sequence[str]) -> str:
    text = _mask_literals(text, secrets)
    if "=" in text or ":" in text:  # cheap pre-check; the regex is ~1 us per string
        text = _INLINE_SECRET.sub(rf"\g<1>{MASK}", text)
    return text


def _mask_dict(items: Iterable[tuple[Any, Any]], secrets: Sequence[str], depth: int) -> EventDict:
    # Keys of nested data are text too (an account map keyed by api key), so literals
    # are masked in them; top-level keys are kwarg names written in code (~10% faster).
    return {
        (_mask_literals(k if type(k) is str else str(k), secrets) if depth else k): (
            MASK if _is_secret_key(k) else mask_value(v, secrets, depth)
        )
        for k, v in items
    }


def mask_value(value: Any, secrets: Sequence[str] = (), _depth: int = 0) -> Any:
    """A JSON-ready copy of ``value`` with secret-named keys, ``secrets`` and inline secrets masked.

    Values JSON cannot hold are turned into text first (``repr`` for arbitrary
    objects), so a secret inside an object's repr is masked too.
    """
    kind = type(value)
    if kind is str:
        return _mask_text(value, secrets)
    if kind in _SCALARS:
        return value
    if kind is float:
        return value if math.isfinite(value) else repr(value)  # NaN/Infinity are not JSON
    if _depth < _MAX_DEPTH:
        if kind is dict or isinstance(value, Mapping):
            return _mask_dict(value.items(), secrets, _depth + 1)
        if kind is list or isinstance(value, list | tuple | set | frozenset):
            return [mask_value(v, secrets, _depth + 1) for v in value]
    if isinstance(value, Enum):
        return mask_value(value.value, secrets, _depth + 1)
    if isinstance(value, datetime | date):
        return value.isoformat()
    text = str(value) if isinstance(value, str | Decimal | UUID | PurePath) else repr(value)
    return _mask_text(text, secrets)


def mask_secrets(
    logger: Any, method_name: str, event_dict: EventDict, *, secrets: Sequence[str] = ()
) -> EventDict:
    """structlog processor: mask secret-named fields, literal ``secrets`` and inline secrets.

    Put it after exception rendering and before the renderer. It returns a
    JSON-ready copy. Without ``secrets`` it masks by name and pattern only; a
    :class:`LogManager` passes its node's registered values (see :meth:`LogManager.mask`).
    """
    return _mask_dict(event_dict.items(), secrets, 0)
