"""A log line's text from its event dict: masked and JSON-encoded, on the writer.

:class:`_LineRenderer` is :class:`~phalanx.runtime._logging.LogManager`'s
rendering half (a mixin, so the writers keep calling one bound method,
``_render``, per line). Its caches live in ``_mask_state``, which the
manager replaces whole when a secret is added (see ``LogManager.add_secret``):
a render that read the old state fills only the old caches, which are dropped.

Invariant: ``_line_text`` (cached ``"key": "value"`` fragments) and
``_line_text_general`` (mask the dict, then encode it) make the same text
(``tests/test_logging_fast_path.py`` checks it), which is what structlog's
``JSONRenderer(serializer=_dumps)`` makes of the masked dict.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from structlog.typing import EventDict

from phalanx.runtime._log_capture import _Deferred
from phalanx.runtime._log_encoding import _encode_line, _encode_str, _iso
from phalanx.runtime._log_masking import _SCALARS, MASK, _is_secret_key, _mask_text, mask_value

_MASK_CACHE_SIZE = 4096  # masked str values kept per manager (cleared when full)
_MASK_CACHE_MAX_LEN = 200  # longer values (messages, reprs) are masked every time
_MASK_JSON = _encode_str(MASK)


class _LineRenderer:
    """Masking and rendering of a line, with per-manager caches of masked text."""

    # (secrets, masked text by str value, line fragment by (key, str value))
    _mask_state: tuple[tuple[str, ...], dict[str, str], dict[Any, str]]

    def _render(self, item: EventDict | _Deferred) -> str:
        # A buffered line, on the writer thread: ts holds the logging call's time.
        event_dict = item[0].expand(item) if isinstance(item, tuple) else item
        try:
            return self._line_text(event_dict)
        except TypeError:  # a key that is not text: the general path below
            return self._line_text_general(event_dict)

    def _line_text_general(self, event_dict: EventDict) -> str:
        masked = self._mask(event_dict)
        masked["ts"] = _iso(event_dict["ts"])
        return _encode_line(masked)  # what structlog's JSONRenderer(serializer=_dumps) does

    def _line_text(self, event_dict: EventDict) -> str:
        """:meth:`_line_text_general`'s text, made from cached ``"key": "value"`` fragments.

        Masking and JSON encoding in one pass, key by key, in order: a str
        value's fragment (masked, then encoded as the C encoder encodes it) is
        kept per (key, value), so the names, endpoints and states every line
        repeats cost one lookup; scalars are written as the encoder writes
        them (``null``, ``true``, ``int.__repr__``, ``float.__repr__``) and
        anything else is masked and encoded as before. Raises TypeError for a
        key that is not a str (the general path handles it).
        ``tests/test_logging_fast_path.py`` checks it against the general path.
        """
        secrets, cache, fragments = self._mask_state
        ts_text = '"ts": "' + _iso(event_dict["ts"]) + '"'  # digits, "-", ":", "T", ".", "Z"
        parts: list[str] = []
        append = parts.append
        for key, value in event_dict.items():
            if key == "ts":
                append(ts_text)
                continue
            kind = type(value)
            if kind is str:
                fragment = fragments.get((key, value))
                if fragment is None:
                    fragment = self._fragment(key, value, secrets, cache, fragments)
                append(fragment)
                continue
            head = _encode_str(key) + ": "  # TypeError unless key is a str
            if _is_secret_key(key):
                append(head + _MASK_JSON)
            elif value is None:
                append(head + "null")
            elif kind is bool:
                append(head + ("true" if value else "false"))
            elif kind is int:
                append(head + int.__repr__(value))
            elif kind is float and math.isfinite(value):
                append(head + float.__repr__(value))
            else:
                append(head + _encode_line(mask_value(value, secrets, 1)))
        return "{" + ", ".join(parts) + "}"

    def _fragment(
        self,
        key: str,
        value: str,
        secrets: Sequence[str],
        cache: dict[str, str],
        fragments: dict[Any, str],
    ) -> str:
        text = MASK if _is_secret_key(key) else cache.get(value) or _mask_text(value, secrets)
        fragment = _encode_str(key) + ": " + _encode_str(text)  # TypeError unless key is a str
        if len(value) <= _MASK_CACHE_MAX_LEN:
            if len(fragments) >= _MASK_CACHE_SIZE:
                fragments.clear()  # unique ids would fill it: start over
            fragments[key, value] = fragment
        return fragment

    def _mask(self, event_dict: EventDict) -> EventDict:
        # mask_secrets, unrolled for the top level (what every line is made of):
        # str values go through a per-manager cache, since the same names, paths,
        # endpoints and states recur on every line. Measured on a tracer line:
        # 24 us -> 7 us for this step.
        secrets, cache, _ = self._mask_state
        masked: EventDict = {}
        for key, value in event_dict.items():
            kind = type(value)
            if _is_secret_key(key):
                masked[key] = MASK
            elif kind is str:
                text = cache.get(value)
                if text is None:
                    text = _mask_text(value, secrets)
                    if len(value) <= _MASK_CACHE_MAX_LEN:
                        if len(cache) >= _MASK_CACHE_SIZE:
                            cache.clear()  # unique ids would fill it: start over
                        cache[value] = text
                masked[key] = text
            elif kind in _SCALARS:
                masked[key] = value
            elif kind is float:  # mask_value's float case, inlined (latencies on every line)
                masked[key] = value if math.isfinite(value) else repr(value)
            else:
                masked[key] = mask_value(value, secrets, 1)
        return masked
