"""The default decider: classify an exception, map it to a directive (DESIGN section 4).

Classes, decided by the exception's *type* (never its message):

- **transient** -> restart with the full retry budget. ccxt ``OperationFailed``
  and everything under it: ``NetworkError`` (``RequestTimeout``,
  ``ExchangeNotAvailable``/``OnMaintenance``, ``DDoSProtection``,
  ``RateLimitExceeded``, ``InvalidNonce``/``ChecksumError``), and also
  ``BadResponse``/``NullResponse``/``CancelPending``. Bare ``OperationFailed``
  is NOT a ``NetworkError`` in ccxt's tree, but Binance raises it for 503
  ``-1000``/``-1001`` ("unknown error, try again"), so it is retried. Builtin
  ``TimeoutError``, ``ConnectionError`` and ``OSError`` (all of its subclasses,
  ``FileNotFoundError`` included, as DESIGN says).
- **permanent** -> resume: the asker gets the error, a tell is dead-lettered.
  ccxt ``AuthenticationError`` (``PermissionDenied``, ``AccountSuspended``, ...),
  ``InsufficientFunds``, ``InvalidOrder`` (``OrderNotFound``,
  ``DuplicateOrderId``, ...), ``BadRequest``/``BadSymbol``,
  ``ArgumentsRequired``, ``NotSupported``; beyond DESIGN's list also
  ``OperationRejected`` (``MarketClosed``, ``NoChange``, ...) and
  ``InvalidAddress``: the venue refused the request as such, a retry seconds
  later cannot change that. pydantic ``ValidationError``; phalanx
  ``UnknownMessage``.
- **unknown** -> restart with half the retry budget. Everything else,
  including plain ``ValueError``/``TypeError``/``KeyError`` (bugs) and the ccxt
  bases ``BaseError``/``ExchangeError``.
- Not an ``Exception`` (``KeyboardInterrupt``, ``SystemExit``,
  ``GeneratorExit``, ``asyncio.CancelledError``) -> escalate.

**Marker.** A class attribute ``phalanx_error_class = "permanent"`` (or
``"transient"`` / ``"unknown"``), inherited as usual, is checked FIRST and beats
every rule above, even a more specific ccxt base: an explicit declaration such
as ``UnknownOutcome``'s "never retry blindly" must not lose to, say, a
``RequestTimeout`` mixed in. Any other marker value is ignored.

Otherwise the most specific class in the MRO that has a rule wins, so a
subclass of a mapped class inherits its mapping.
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
"""Maps a failure to what the supervisor does; :func:`default_decider` is the default."""

_MARKER = "phalanx_error_class"


class ErrorClass(StrEnum):
    """How a failure is expected to behave on retry."""

    TRANSIENT = "transient"
    PERMANENT = "permanent"
    UNKNOWN = "unknown"


# ccxt classes by name, looked up with getattr so that a ccxt release that
# renames or drops one only loses that rule. DESIGN's named transient classes
# are listed even though OperationFailed covers them: they stay transient if
# ccxt ever moves them in its tree.
_CCXT_RULES: tuple[tuple[str, ErrorClass], ...] = (
    *(
        (name, ErrorClass.TRANSIENT)
        for name in (
            "OperationFailed",
            "NetworkError",
            "RequestTimeout",
            "ExchangeNotAvailable",
            "DDoSProtection",
            "RateLimitExceeded",
            "InvalidNonce",
        )
    ),
    *(
        (name, ErrorClass.PERMANENT)
        for name in (
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
    ),
)
_BUILTIN_RULES: dict[type[BaseException], ErrorClass] = {
    UnknownMessage: ErrorClass.PERMANENT,
    ValidationError: ErrorClass.PERMANENT,
    TimeoutError: ErrorClass.TRANSIENT,
    ConnectionError: ErrorClass.TRANSIENT,
    OSError: ErrorClass.TRANSIENT,
}
_MARKERS = frozenset(c.value for c in ErrorClass)

# Invariant: an entry is final. A type's classification never changes, because
# a ccxt-derived type can only exist after ccxt is loaded (see _ccxt_rules).
_cache: dict[type[BaseException], ErrorClass] = {}
_CACHE_MAX = 4096  # bounds memory if code mints exception classes at runtime
_ccxt: dict[type[BaseException], ErrorClass] | None = None


def _ccxt_rules() -> dict[type[BaseException], ErrorClass]:
    # Read ccxt from sys.modules, never import it: importing costs ~1 s and
    # `import phalanx` must stay fast. No ccxt exception (or subclass) can exist
    # before ccxt.base.errors is loaded, so "not loaded" means "no ccxt rule can
    # apply", and types cached before ccxt loaded are still right afterwards.
    global _ccxt
    if _ccxt is None:
        errors = sys.modules.get("ccxt.base.errors")
        if errors is None:
            return {}
        found = {name: getattr(errors, name, None) for name, _ in _CCXT_RULES}
        _ccxt = {
            kind: cls
            for name, cls in _CCXT_RULES
            if isinstance(kind := found[name], type) and issubclass(kind, BaseException)
        }
    return _ccxt


def _classify_type(kind: type[BaseException]) -> ErrorClass:
    marker = getattr(kind, _MARKER, None)
    if isinstance(marker, str) and marker in _MARKERS:
        return ErrorClass(marker)
    ccxt = _ccxt_rules()
    for klass in kind.__mro__:  # most specific first
        found = ccxt.get(klass) or _BUILTIN_RULES.get(klass)
        if found is not None:
            return found
    return ErrorClass.UNKNOWN


def classify(exc: BaseException) -> ErrorClass:
    """Transient, permanent or unknown, by the exception's class (cached per type)."""
    kind = type(exc)
    found = _cache.get(kind)
    if found is None:
        found = _classify_type(kind)
        if len(_cache) >= _CACHE_MAX:
            _cache.clear()
        _cache[kind] = found  # a racing thread computes the same value: harmless
    return found


def default_decider(exc: BaseException) -> Directive:
    """Permanent: resume. Transient and unknown: restart. Not an ``Exception``: escalate."""
    if not isinstance(exc, Exception):
        return Directive.ESCALATE
    if classify(exc) is ErrorClass.PERMANENT:
        return Directive.RESUME
    return Directive.RESTART


def retry_budget(exc: BaseException, retry: Retry) -> int:
    """Deliveries allowed for the failing message (always >= 1).

    Transient: ``retry.max_attempts``. Unknown: ``max(1, max_attempts // 2)``,
    a bug rarely fixes itself on retry. Permanent: 1, never redelivered.
    """
    cls = classify(exc)
    if cls is ErrorClass.TRANSIENT:
        return retry.max_attempts
    if cls is ErrorClass.UNKNOWN:
        return max(1, retry.max_attempts // 2)
    return 1
