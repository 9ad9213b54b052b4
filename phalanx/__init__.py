"""phalanx: an Erlang/OTP-grade supervised actor runtime for Python, built on pykka.

The names in ``__all__`` are the public embedding API (DESIGN section 9).
"""

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
