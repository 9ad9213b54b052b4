"""JSON line encoding and ``ts`` text for log lines, without per-line encoder setup.

What structlog's ``JSONRenderer`` and ``datetime.isoformat`` would write,
made cheaper: one C encoder built at import (not one per line), and the
date and time of day formatted once per second. The input of these encoders
is already masked and JSON-ready (see :mod:`phalanx.runtime._log_masking`).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

_encode = json.JSONEncoder().encode  # the masked dict is JSON-ready: no fallback needed


def _line_encoder() -> Callable[[Any], str]:
    """``_encode`` for a masked dict, without building a C encoder per call (~1 us a line).

    The same C encoder and arguments ``JSONEncoder.encode`` uses, made once;
    without the circular-reference check, as a masked value is a fresh tree.
    """
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:  # no C accelerator: the stdlib's own path
        return _encode
    default = json.JSONEncoder().default
    encoder = make(
        None, default, json.encoder.encode_basestring_ascii, None, ": ", ", ", False, False, True
    )
    join = "".join

    def encode(obj: Any) -> str:
        return join(encoder(obj, 0))

    return encode


_encode_line = _line_encoder()
_encode_str = json.encoder.encode_basestring_ascii  # what the C encoder writes for a str


def _dumps(obj: Any, **_kwargs: Any) -> str:
    # JSONRenderer passes default=<fallback>, which makes json.dumps build a new
    # encoder per line; the masked dict never needs it (only JSON types remain),
    # and the fallback is kept only so that a logging call can never raise.
    try:
        return _encode(obj)
    except (TypeError, ValueError):
        return json.dumps(obj, default=repr)


_second: list[tuple[int, str]] = [(-1, "")]  # the last second formatted, swapped whole
_YEAR_10000 = 253402300800  # datetime's limit (its text has four-digit years)


def _iso(timestamp: float) -> str:
    """``datetime.fromtimestamp(ts, UTC).isoformat(timespec="microseconds")`` with a ``Z``.

    The same text (``tests/test_logging_fast_path.py`` pins it), ~3x cheaper:
    the date and time of day are formatted once per second, and the
    microseconds are rounded as datetime rounds them (half to even, carried
    into the second).
    """
    if not 0 <= timestamp < _YEAR_10000:  # datetime's own rounding, or its error
        return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="microseconds")[:-6] + "Z"
    frac, whole = math.modf(timestamp)
    micros = round(frac * 1e6)
    second = int(whole)
    if micros >= 1_000_000:
        second += 1
        micros -= 1_000_000
    cached = _second[0]
    if cached[0] != second:
        cached = _second[0] = (second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)))
    return f"{cached[1]}.{micros:06d}Z"
