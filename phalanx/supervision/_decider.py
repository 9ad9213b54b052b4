"""The default decider: classify an exception, map it to a directive (DESIGN section 4).

- transient -> restart (retry with redelivery): ccxt ``NetworkError`` and its
  subclasses, bare ccxt ``OperationFailed`` (Binance 503 -1000/-1001 "unknown
  error, try again": NOT a NetworkError in ccxt's tree, but retryable), and
  builtin ``TimeoutError``, ``ConnectionError``, ``OSError``;
- permanent -> resume (the asker gets the error; a tell is dead-lettered):
  ccxt ``AuthenticationError``, ``InsufficientFunds``, ``InvalidOrder``,
  ``BadSymbol``, ``BadRequest``, ``ArgumentsRequired``, ``NotSupported``,
  ``OperationRejected``, ``InvalidAddress``; pydantic ``ValidationError``;
  phalanx ``UnknownMessage``;
- unknown -> restart, with half the retry budget;
- ``KeyboardInterrupt``/``SystemExit`` -> escalate.

A domain exception opts in with a class attribute
``phalanx_error_class = "permanent"`` (or ``"transient"``), checked first.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from enum import StrEnum

from pydantic import ValidationError

from phalanx.errors import UnknownMessage
from phalanx.supervision._policy import Directive, Retry

__all__ = ["Decider", "ErrorClass", "classify", "default_decider", "retry_budget"]

Decider = Callable[[BaseException], Directive]


class ErrorClass(StrEnum):
    """How a failure is expected to behave on retry."""

    TRANSIENT = "transient"
    PERMANENT = "permanent"
    UNKNOWN = "unknown"


_CCXT_TRANSIENT = ("NetworkError", "OperationFailed")
_CCXT_PERMANENT = (
    "AuthenticationError",
    "InsufficientFunds",
    "InvalidOrder",
    "BadSymbol",
    "BadRequest",
    "ArgumentsRequired",
    "NotSupported",
    "OperationRejected",
    "InvalidAddress",
)
_BUILTIN: dict[type[BaseException], ErrorClass] = {
    UnknownMessage: ErrorClass.PERMANENT,
    ValidationError: ErrorClass.PERMANENT,
    TimeoutError: ErrorClass.TRANSIENT,
    ConnectionError: ErrorClass.TRANSIENT,
    OSError: ErrorClass.TRANSIENT,
}
# Invariant: one classification per exception type, computed once (it runs on every failure).
_cache: dict[type[BaseException], ErrorClass] = {}


def _ccxt_rules() -> dict[type[BaseException], ErrorClass]:
    # Read from sys.modules, never imported here: a ccxt exception (or a
    # subclass of one) can only exist once ccxt is loaded, and `import phalanx`
    # must not pay for importing ccxt (about a second).
    errors = sys.modules.get("ccxt.base.errors")
    if errors is None:
        return {}
    rules: dict[type[BaseException], ErrorClass] = {}
    for name in _CCXT_TRANSIENT:
        rules[getattr(errors, name)] = ErrorClass.TRANSIENT
    for name in _CCXT_PERMANENT:
        rules[getattr(errors, name)] = ErrorClass.PERMANENT
    return rules


def _classify_type(kind: type[BaseException]) -> ErrorClass:
    ccxt = _ccxt_rules()
    # The most specific class in the MRO with a rule wins.
    for klass in kind.__mro__:
        marker = klass.__dict__.get("phalanx_error_class")
        if marker is not None:
            return ErrorClass(marker)
        if klass in ccxt:
            return ccxt[klass]
        if klass in _BUILTIN:
            return _BUILTIN[klass]
    return ErrorClass.UNKNOWN


def classify(exc: BaseException) -> ErrorClass:
    """Transient, permanent or unknown, by the exception's class."""
    kind = type(exc)
    found = _cache.get(kind)
    if found is None:
        found = _cache[kind] = _classify_type(kind)
    return found


def default_decider(exc: BaseException) -> Directive:
    """Transient and unknown: restart. Permanent: resume. Non-Exception: escalate."""
    if not isinstance(exc, Exception):
        return Directive.ESCALATE
    if classify(exc) is ErrorClass.PERMANENT:
        return Directive.RESUME
    return Directive.RESTART


def retry_budget(exc: BaseException, retry: Retry) -> int:
    """Deliveries allowed for a failing message: full for transient, half for unknown."""
    cls = classify(exc)
    if cls is ErrorClass.TRANSIENT:
        return retry.max_attempts
    if cls is ErrorClass.UNKNOWN:
        return max(1, retry.max_attempts // 2)
    return 1
