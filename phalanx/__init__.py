"""phalanx: an Erlang/OTP-grade supervised actor runtime for Python, built on pykka.

The names in ``__all__`` are the public embedding API (DESIGN section 9).
"""

# Only the error types are imported eagerly. Everything else loads on first use
# (PEP 562), so `phalanx ctl` does not pay for pykka, pydantic, structlog and LMDB
# (measured: `import phalanx` 0.5 s idle, most of it pydantic and structlog).
from importlib import import_module
from typing import TYPE_CHECKING, Any

from phalanx.errors import (
    ActorDead,
    AlreadyPresent,
    AlreadyStarted,
    AskTimeout,
    ChildError,
    ChildNotFound,
    ChildRestarting,
    ChildRunning,
    CircuitOpen,
    CodecError,
    ConfigError,
    DeadLetterError,
    DeliveryError,
    MailboxFull,
    PhalanxError,
    StorageError,
    SupervisorStartFailed,
    UnknownMessage,
)

if TYPE_CHECKING:
    from phalanx.protocols import Message
    from phalanx.runtime import (
        Actor,
        ActorSystem,
        Envelope,
        Event,
        Mailbox,
        Ref,
        Timer,
        current_trace,
        trace_scope,
    )
    from phalanx.storage import DeadLetter
    from phalanx.supervision import Breaker, ChildSpec, CircuitBreaker, Directive, Retry
    from phalanx.supervision._supervisor import Supervisor, SupervisorRef

_LAZY: dict[str, str] = {
    "Message": "phalanx.protocols",
    "Actor": "phalanx.runtime",
    "ActorSystem": "phalanx.runtime",
    "Envelope": "phalanx.runtime",
    "Event": "phalanx.runtime",
    "Mailbox": "phalanx.runtime",
    "Ref": "phalanx.runtime",
    "Timer": "phalanx.runtime",
    "current_trace": "phalanx.runtime",
    "trace_scope": "phalanx.runtime",
    "DeadLetter": "phalanx.storage",
    "Breaker": "phalanx.supervision",
    "ChildSpec": "phalanx.supervision",
    "CircuitBreaker": "phalanx.supervision",
    "Directive": "phalanx.supervision",
    "Retry": "phalanx.supervision",
    "Supervisor": "phalanx.supervision._supervisor",
    "SupervisorRef": "phalanx.supervision._supervisor",
}


def __getattr__(name: str) -> Any:
    """Load a public name (or a subpackage) on first use."""
    module = _LAZY.get(name)
    if module is None:
        if name.startswith("_"):
            raise AttributeError(f"module 'phalanx' has no attribute {name!r}")
        try:
            return import_module(f"phalanx.{name}")
        except ModuleNotFoundError:
            raise AttributeError(f"module 'phalanx' has no attribute {name!r}") from None
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


__version__ = "0.1.0"

__all__ = [
    "Actor",
    "ActorDead",
    "ActorSystem",
    "AlreadyPresent",
    "AlreadyStarted",
    "AskTimeout",
    "Breaker",
    "ChildError",
    "ChildNotFound",
    "ChildRestarting",
    "ChildRunning",
    "ChildSpec",
    "CircuitBreaker",
    "CircuitOpen",
    "CodecError",
    "ConfigError",
    "DeadLetter",
    "DeadLetterError",
    "DeliveryError",
    "Directive",
    "Envelope",
    "Event",
    "Mailbox",
    "MailboxFull",
    "Message",
    "PhalanxError",
    "Ref",
    "Retry",
    "StorageError",
    "Supervisor",
    "SupervisorRef",
    "SupervisorStartFailed",
    "Timer",
    "UnknownMessage",
    "__version__",
    "current_trace",
    "trace_scope",
]
