"""The control commands on actors: list, inspect, message, kill, stop, restart.

``ps`` reads the cells directly (no per-actor ask, one pass, one sort), so it
stays O(n log n) and answers 5,000 actors in a few milliseconds (see
``bench/control.py``).

``tell`` and ``ask`` validate the message against the protocol registry
before anything is sent, and refuse with ``shutting_down`` once the node is
sealed. A supervised actor is stopped and restarted through its supervisor,
so its child spec and shutdown spec apply; a restart that would lose the
child's spec is refused with ``conflict``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import ValidationError
from pykka import Timeout

from phalanx.errors import AskTimeout, CodecError, DeliveryError
from phalanx.protocols import PLAIN_TYPE, encode, registry
from phalanx.protocols.control import ControlError
from phalanx.runtime._control_args import _Ask, _NoArgs, _Path, _Ps, _summary, _Tell
from phalanx.runtime._control_session import Session, _audit
from phalanx.runtime._envelope import Envelope
from phalanx.supervision._supervisor import Supervisor, SupervisorRef

if TYPE_CHECKING:
    from phalanx.runtime._cell import ActorCell
    from phalanx.runtime._system import ActorSystem

__all__ = [
    "CONTROL_SENDER",
    "_ask",
    "_breakers",
    "_inspect",
    "_kill",
    "_paths",
    "_ps",
    "_restart",
    "_stop",
    "_tell",
    "_tree",
]

CONTROL_SENDER = "/_control"  # the sender path of messages told or asked by an operator


# --- helpers ------------------------------------------------------------------


def _cells(system: ActorSystem) -> list[ActorCell]:
    """Live cells in spawn order (one dict copy and one sort under the registry lock)."""
    with system._lock:
        order = system._spawn_order
        return sorted(system._cells.values(), key=lambda c: order.get(c.path, 0))


def _cell(system: ActorSystem, path: str) -> ActorCell:
    cell = system._cells.get(path)
    if cell is None:
        raise ControlError("not_found", f"no actor at {path}")
    return cell


def _message(args: _Tell) -> Any:
    """The message named by ``type``/``body``, validated against the protocol registry."""
    if args.type == PLAIN_TYPE:
        try:
            encode(args.body)
        except CodecError as exc:
            raise ControlError("bad_args", f"body is not plain data: {exc}") from None
        return args.body
    if args.type not in registry:
        known = ", ".join([PLAIN_TYPE, *registry.names()][:40])
        raise ControlError("bad_args", f"unknown message type {args.type!r} (known: {known})")
    cls = registry.lookup(args.type)
    try:
        return cls.model_validate(args.body if args.body is not None else {})
    except ValidationError as exc:
        raise ControlError("bad_args", f"{args.type}: {_summary(exc)}") from None


def _parent_supervisor(system: ActorSystem, path: str) -> SupervisorRef | None:
    parent_path = path.rsplit("/", 1)[0]
    parent = system._cells.get(parent_path) if parent_path else None
    if parent is not None and isinstance(parent.actor, Supervisor):
        return SupervisorRef(system, parent_path)
    return None


# --- commands -----------------------------------------------------------------


def _tree(session: Session, args: _NoArgs) -> Any:
    return session.system.tree()


def _ps(session: Session, args: _Ps) -> Any:
    rows: list[dict[str, Any]] = [
        {
            "path": c.path,
            "status": c.status,
            "mailbox_depth": len(c.inbox),
            "mailbox_capacity": c.inbox.mailbox.capacity,
            "processed": c.processed,
            "restarts": c.restarts,
            "breaker": c.breaker_state,
        }
        for c in _cells(session.system)
        if args.prefix is None or c.path.startswith(args.prefix)
    ]
    if args.sort == "path":
        rows.sort(key=lambda r: r["path"])
    elif args.sort != "spawn":
        key = "mailbox_depth" if args.sort == "depth" else args.sort
        rows.sort(key=lambda r: -r[key])  # stable: ties stay in spawn order
    return rows[: args.limit] if args.limit else rows


def _paths(session: Session, args: _NoArgs) -> Any:
    return session.system.paths()


def _inspect(session: Session, args: _Path) -> Any:
    system = session.system
    try:
        view = system.inspect(args.path)
    except LookupError:
        raise ControlError("not_found", f"no actor at {args.path}") from None
    parent = _cell(system, args.path).parent
    view["parent"] = getattr(parent, "path", "/") if parent is not None else None
    view["recent_events"] = [
        e.as_dict() for e in system.events.recent(1000) if e.path == args.path
    ][-20:]
    return view


def _deliverable(session: Session, args: _Tell, verb: str) -> Any:
    """The frame's message, once the node still delivers; the delivery audited as ``verb``."""
    message = _message(args)
    if session.system._sealed:
        raise ControlError("shutting_down", "the node is shutting down: nothing can be delivered")
    _audit(session, verb, path=args.path, type=args.type)
    return message


def _tell(session: Session, args: _Tell) -> Any:
    message = _deliverable(session, args, "tell")
    system = session.system
    queued = system.post.send(args.path, Envelope.outgoing(message, sender=CONTROL_SENDER))
    if not queued:
        system.storage.flush()  # the reply says "dead-lettered": make it visible to dlq ls
    return {"path": args.path, "type": args.type, "queued": queued, "dead_lettered": not queued}


def _ask(session: Session, args: _Ask) -> Any:
    message = _deliverable(session, args, "ask")
    system = session.system
    try:
        future = system.ask_future(args.path, message)
        return {"path": args.path, "reply": future.get(timeout=args.timeout)}
    except Timeout:
        raise AskTimeout(f"no reply from {args.path} within {args.timeout}s") from None
    except DeliveryError:
        raise
    except Exception as exc:  # the handler's own error (directive resume)
        raise ControlError(
            "handler_error", f"{args.path} raised {type(exc).__qualname__}: {exc}"
        ) from None


def _kill(session: Session, args: _Path) -> Any:
    cell = _cell(session.system, args.path)
    _audit(session, "kill", path=args.path)
    if not session.system.kill(args.path):
        raise ControlError(
            "conflict", f"{args.path} has no running incarnation (status {cell.status})"
        )
    return {"path": args.path, "killed": True, "incarnation": cell.incarnation}


def _stop(session: Session, args: _Path) -> Any:
    system = session.system
    _cell(system, args.path)
    _audit(session, "stop", path=args.path)
    sup = _parent_supervisor(system, args.path)
    if sup is not None:
        sup.terminate_child(args.path)  # OTP: its shutdown spec; the spec is kept
        return {"path": args.path, "stopped": True, "via": sup.path}
    stopped = system.stop(args.path)
    return {"path": args.path, "stopped": stopped, "via": "/"}


def _restart(session: Session, args: _Path) -> Any:
    """Supervised: terminate_child + restart_child. Top level: stop, then spawn anew."""
    system = session.system
    _audit(session, "restart", path=args.path)
    sup = _parent_supervisor(system, args.path)
    cell = system._cells.get(args.path)
    if sup is not None:
        _check_spec_kept(system, sup, args.path)
        if cell is not None and cell.status != "stopped":
            sup.terminate_child(args.path)
        ref = sup.restart_child(args.path)
        return {"path": ref.path, "restarted": True, "via": sup.path}
    if cell is None:
        raise ControlError("not_found", f"no actor at {args.path} and no supervisor keeps its spec")
    factory, pos, kw = cell.factory, cell.args, cell.kwargs
    mailbox, retry, decider = cell.inbox.mailbox, cell.retry, cell.decider
    system.stop(args.path)
    system.spawn(factory, args.path, *pos, mailbox=mailbox, retry=retry, decider=decider, **kw)
    return {"path": args.path, "restarted": True, "via": "/"}


def _check_spec_kept(system: ActorSystem, sup: SupervisorRef, path: str) -> None:
    """Refuse a restart that would lose the child: OTP forgets temporary and dynamic specs."""
    parent = system._cells[sup.path].actor
    entry = next((c for c in sup.which_children() if c["path"] == path), None)
    if entry is None:
        raise ControlError("not_found", f"{sup.path} has no child {path}")
    if entry["restart"] == "temporary" or getattr(parent, "strategy", None) == "simple_one_for_one":
        raise ControlError(
            "conflict",
            f"{path} is a temporary or dynamic child: its spec is not kept, so a restart "
            "would lose it (kill restarts it only if its restart type allows)",
        )


def _breakers(session: Session, args: _NoArgs) -> Any:
    out: list[dict[str, Any]] = []
    for cell in _cells(session.system):
        actor = cell.actor
        if isinstance(actor, Supervisor):
            with actor._lock:
                children = list(actor._children)
            for child in children:
                if child.breaker is not None:
                    snap = child.breaker.snapshot()
                    out.append({"path": child.path, "kind": "child", **snap, "name": child.path})
        elif actor is not None:
            try:
                breaker = actor.introspect().get("breaker")
            except Exception:  # a broken introspect must not break the listing
                continue
            if isinstance(breaker, dict) and "state" in breaker:
                out.append({**breaker, "path": cell.path, "kind": "call"})
    return out
