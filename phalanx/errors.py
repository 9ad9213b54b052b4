"""The phalanx exception tree, typed by how callers react.

One shallow tree. Library errors (``lmdb.*``, ``msgpack.*``, ``ccxt.*``) are
translated at the boundary into one of these, so callers never need to import
a third-party exception type to handle a phalanx failure.

- :class:`DeliveryError` and its subclasses: the message did not reach a
  handler. The caller may retry later, or look for it in the dead-letter
  store (every one of these cases also produces a dead letter).
- :class:`CodecError`: bytes or objects that cannot be (de)serialised. Not
  retryable; the input is wrong.
- :class:`StorageError`: LMDB failed in a way growth and retry did not fix.
- :class:`ConfigError`: bad configuration or bad CLI arguments (exit code 2).
- :class:`DeadLetterError`: a dead-letter operation on a record that is
  missing or in the wrong state.
"""

from __future__ import annotations

__all__ = [
    "ActorDead",
    "AlreadyPresent",
    "AlreadyStarted",
    "AskTimeout",
    "ChildError",
    "ChildNotFound",
    "ChildRestarting",
    "ChildRunning",
    "CircuitOpen",
    "CodecError",
    "ConfigError",
    "DeadLetterError",
    "DeliveryError",
    "InsufficientFunds",
    "MailboxFull",
    "PhalanxError",
    "StorageError",
    "SupervisorStartFailed",
    "UnknownMessage",
    "UnknownOutcome",
]


class PhalanxError(Exception):
    """Base class of every error phalanx raises on purpose."""


class DeliveryError(PhalanxError):
    """A message could not be delivered to, or answered by, its target."""


class MailboxFull(DeliveryError):
    """The target's bounded mailbox overflowed; the message was dead-lettered."""


class CircuitOpen(DeliveryError):
    """The target's circuit breaker is open; the call failed fast.

    Permanent for the decider: the failure goes back to the caller (or the
    DLQ as ``circuit_open``) at once; retrying into an open circuit is wrong.
    """

    phalanx_error_class = "permanent"


class UnknownOutcome(DeliveryError):
    """A call whose effect is unknown (timeout, lost response, reply without id).

    Never treat it as success or failure: look the outcome up (DESIGN 6).
    Permanent for the decider: retrying a placement blindly could double it.
    """

    phalanx_error_class = "permanent"


class ActorDead(DeliveryError):
    """No live actor is at the path, or it stopped before answering."""


class AskTimeout(DeliveryError, TimeoutError):
    """An ``ask`` got no reply within its timeout.

    The message may still be handled later: the outcome is unknown, not failed.
    """


class CodecError(PhalanxError, ValueError):
    """A value cannot be encoded, or bytes cannot be decoded."""


class StorageError(PhalanxError):
    """The LMDB store failed, after map growth and retry were tried."""


class ConfigError(PhalanxError, ValueError):
    """Bad configuration or bad command-line input."""


class DeadLetterError(PhalanxError, LookupError):
    """A dead-letter record is missing, or not in a state that allows the operation."""


class ChildError(PhalanxError):
    """A supervisor refused a child operation (one subclass per OTP error return)."""


class AlreadyStarted(ChildError):
    """A live actor or child already holds that path or id (OTP ``already_started``)."""


class AlreadyPresent(ChildError):
    """A child spec with that id exists but is not running (OTP ``already_present``)."""


class ChildNotFound(ChildError, LookupError):
    """No child with that id or path (OTP ``not_found``)."""


class ChildRunning(ChildError):
    """The child is running, so it cannot be restarted or deleted (OTP ``running``)."""


class ChildRestarting(ChildError):
    """The child is being restarted (OTP ``restarting``)."""


class SupervisorStartFailed(ChildError):
    """A static child failed to start, so its supervisor did not start."""


class UnknownMessage(PhalanxError, TypeError):
    """An actor received a message type it does not handle.

    Classified as a permanent error: the actor keeps running, an asker gets
    this error, and a told message is dead-lettered with ``validation_failed``.
    """


class InsufficientFunds(PhalanxError):
    """Free balance minus existing reservations cannot cover a reservation.

    Permanent for the decider: the asker gets it at once; retrying the same
    reservation seconds later will not free funds (the saga compensates).
    """

    phalanx_error_class = "permanent"


class InvalidTransition(PhalanxError):
    """An order event that the Order state machine does not allow in its current state.

    Permanent for the decider: the same event in the same state is refused
    again. The Order actor logs and audits it and keeps its state.
    """

    phalanx_error_class = "permanent"

    def __init__(self, state: str, event: str) -> None:
        super().__init__(f"order event {event!r} is not allowed in state {state!r}")
        self.state = state
        self.event = event
