"""The control commands: validated arguments in, JSON-safe results out.

Every command is a pydantic argument model plus a function of the session
and those arguments. :func:`run_command` turns every failure into a
:class:`ControlError` with a typed code; nothing a client sends can raise
anything else out of here.

This module holds the command table (:data:`COMMANDS`, whose order is the
``commands`` listing), argument validation, the failure translation and the
node-wide commands. The actor commands are in :mod:`._control_actor_commands`,
the ``dlq.*`` ones in :mod:`._control_dlq_commands`, the argument models in
:mod:`._control_args`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import ValidationError

from phalanx.errors import (
    ActorDead,
    AskTimeout,
    ChildError,
    ChildNotFound,
    CircuitOpen,
    CodecError,
    DeadLetterError,
    MailboxFull,
    PhalanxError,
)
from phalanx.protocols.control import ControlError
from phalanx.runtime._control_actor_commands import (
    _ask,
    _breakers,
    _inspect,
    _kill,
    _paths,
    _ps,
    _restart,
    _stop,
    _tell,
    _tree,
)
from phalanx.runtime._control_args import (
    _Args,
    _Ask,
    _DlqId,
    _DlqLs,
    _DlqPurge,
    _DlqRedrive,
    _DlqResolve,
    _Events,
    _NoArgs,
    _Path,
    _Ps,
    _summary,
    _Tell,
    _Unsubscribe,
)
from phalanx.runtime._control_dlq_commands import (
    _dlq_ls,
    _dlq_purge,
    _dlq_redrive,
    _dlq_resolve,
    _dlq_show,
    _dlq_stats,
)
from phalanx.runtime._control_health import health_report
from phalanx.runtime._control_session import AfterReply, Session, _audit
from phalanx.runtime._metrics import render_metrics

__all__ = ["COMMANDS", "run_command", "validate_args"]


def _metrics(session: Session, args: _NoArgs) -> Any:
    system = session.system
    return {
        "counters": system.counters(),
        "totals": system.totals(),
        "storage": system.storage.stats(),
        "actors": len(system._cells),
        "prometheus": render_metrics(system),  # the same text the metrics port serves
    }


def _health(session: Session, args: _NoArgs) -> Any:
    return health_report(session.system, session.health)


def _events(session: Session, args: _Events) -> Any:
    raise AssertionError("events is dispatched with its request id")  # pragma: no cover


def _unsubscribe(session: Session, args: _Unsubscribe) -> Any:
    if not session.unsubscribe(args.id):
        raise ControlError("not_found", f"no subscription {args.id} on this connection")
    return {"unsubscribed": args.id}


def _shutdown(session: Session, args: _NoArgs) -> Any:
    trigger = session.request_shutdown()
    if trigger is None:
        raise ControlError("not_supported", "this control server cannot stop its node")
    _audit(session, "shutdown")
    return AfterReply({"stopping": True, "node": session.system.name}, trigger)


def _commands(session: Session, args: _NoArgs) -> Any:
    return {name: help_ for name, (_, _, help_) in COMMANDS.items()}


Handler = Callable[[Session, Any], Any]

COMMANDS: dict[str, tuple[type[_Args], Handler, str]] = {
    "tree": (_NoArgs, _tree, "the supervision tree (system.tree())"),
    "ps": (_Ps, _ps, "every actor: status, mailbox, processed, restarts, breaker"),
    "paths": (_NoArgs, _paths, "every actor path, in spawn order"),
    "inspect": (_Path, _inspect, "introspect(), stats, recent failures and events of one actor"),
    "tell": (_Tell, _tell, "send a message (type 'plain' or a registered Message type)"),
    "ask": (_Ask, _ask, "send a message and wait for the reply"),
    "kill": (_Path, _kill, "end an incarnation abruptly (a crash with reason killed)"),
    "restart": (_Path, _restart, "stop an actor in order and start it afresh"),
    "stop": (_Path, _stop, "stop an actor for good (terminate_child when supervised)"),
    "breakers": (_NoArgs, _breakers, "every circuit breaker and its state"),
    "metrics": (_NoArgs, _metrics, "counters, totals, storage writer stats, Prometheus text"),
    "health": (_NoArgs, _health, "red/yellow/green per subsystem"),
    "dlq.ls": (_DlqLs, _dlq_ls, "list dead letters, oldest first"),
    "dlq.show": (_DlqId, _dlq_show, "one dead letter with traceback and history"),
    "dlq.stats": (_NoArgs, _dlq_stats, "depth, by reason, by target, oldest age"),
    "dlq.redrive": (_DlqRedrive, _dlq_redrive, "deliver a dead letter again, now"),
    "dlq.resolve": (_DlqResolve, _dlq_resolve, "mark a dead letter resolved, with a note"),
    "dlq.purge": (_DlqPurge, _dlq_purge, "delete dead letters by status and/or age"),
    "events": (_Events, _events, "subscribe to the event stream (filters: kinds, path glob)"),
    "unsubscribe": (_Unsubscribe, _unsubscribe, "end an event subscription"),
    "shutdown": (_NoArgs, _shutdown, "stop the node in order"),
    "commands": (_NoArgs, _commands, "the command names with one line of help"),
}


def validate_args(cmd: str, args: Any) -> tuple[Handler, Any]:
    """The handler and parsed arguments; ``unknown_command``/``bad_args`` otherwise."""
    entry = COMMANDS.get(cmd)
    if entry is None:
        raise ControlError("unknown_command", f"unknown command {cmd!r} (try 'commands')")
    model, handler, _ = entry
    if args is None:
        args = {}
    if not isinstance(args, dict):
        raise ControlError("bad_args", f"{cmd}: args must be a map, got {type(args).__name__}")
    try:
        return handler, model.model_validate(args)
    except ValidationError as exc:
        raise ControlError("bad_args", f"{cmd}: {_summary(exc)}") from None


def run_command(session: Session, handler: Handler, args: Any) -> Any:
    """Run one validated command; every failure becomes a typed :class:`ControlError`."""
    try:
        return handler(session, args)
    except ControlError:
        raise
    except AskTimeout as exc:
        raise ControlError("timeout", str(exc)) from None
    except MailboxFull as exc:
        raise ControlError("mailbox_full", str(exc)) from None
    except CircuitOpen as exc:
        raise ControlError("circuit_open", str(exc)) from None
    except ActorDead as exc:
        raise ControlError("actor_dead", str(exc)) from None
    except (ChildNotFound, LookupError) as exc:
        text = str(exc).strip("'\"")
        if isinstance(exc, DeadLetterError) and not text.startswith("no dead letter"):
            raise ControlError("conflict", text) from None
        raise ControlError("not_found", text) from None
    except ChildError as exc:
        raise ControlError("conflict", f"{type(exc).__name__}: {exc}") from None
    except (CodecError, ValueError) as exc:
        raise ControlError("bad_args", str(exc)) from None
    except PhalanxError as exc:
        raise ControlError("internal", f"{type(exc).__name__}: {exc}") from None
    except Exception as exc:
        raise ControlError("internal", f"{type(exc).__qualname__}: {exc}") from None
