"""Runtime: the actor system, actors, refs, envelopes, mailboxes, timers, events, logs."""

from phalanx.runtime._actor import Actor, ExitReason
from phalanx.runtime._affinity import CpuPinning, pin_to_one_cpu
from phalanx.runtime._context import TRACE_KEYS, current_path, current_trace, trace_scope
from phalanx.runtime._envelope import Envelope
from phalanx.runtime._events import Event, EventStream, Subscription
from phalanx.runtime._gc import GcTuning, freeze_startup_heap
from phalanx.runtime._mailbox import Mailbox
from phalanx.runtime._ref import Ref
from phalanx.runtime._system import ActorSystem
from phalanx.runtime._timers import Timer

__all__ = [
    "TRACE_KEYS",
    "Actor",
    "ActorSystem",
    "CpuPinning",
    "Envelope",
    "Event",
    "EventStream",
    "ExitReason",
    "GcTuning",
    "Mailbox",
    "Ref",
    "Subscription",
    "Timer",
    "current_path",
    "current_trace",
    "freeze_startup_heap",
    "pin_to_one_cpu",
    "trace_scope",
]
