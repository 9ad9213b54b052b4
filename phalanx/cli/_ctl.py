"""``phalanx ctl``: one control command against a running node, then exit.

The command grammar here is shared with ``phalanx shell``, which parses each
line with the same subparsers. Exit codes (DESIGN section 10): 0 ok; 1 an
error reply (or ``health`` red); 2 bad usage (argparse, bad JSON, the node's
``bad_args``/``unknown_command``); 3 the node cannot be reached (no socket,
refused, version mismatch, unauthorized uid, or too many clients).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from phalanx.cli._client import UNREACHABLE_CODES, ControlClient
from phalanx.cli._render import Renderer
from phalanx.errors import ConfigError
from phalanx.protocols.control import ControlError

__all__ = ["add_commands", "add_parser", "exit_code_for", "request_of", "socket_path"]

Request = tuple[str, dict[str, Any]]
_SORTS = ("spawn", "path", "depth", "processed", "restarts")
_STATUSES = ("pending", "redriven", "resolved")


def socket_path(var_dir: str | Path) -> Path:
    """Where a node with this var dir listens."""
    return Path(var_dir) / "control.sock"


def _json_arg(text: str | None) -> Any:
    if text is None:
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"JSON argument is not valid JSON: {exc.msg} at {exc.pos}") from None


def _simple(cmd: str) -> Callable[[argparse.Namespace], Request]:
    return lambda a: (cmd, {})


def _path_cmd(cmd: str) -> Callable[[argparse.Namespace], Request]:
    return lambda a: (cmd, {"path": a.path})


def _message_cmd(cmd: str) -> Callable[[argparse.Namespace], Request]:
    def request(a: argparse.Namespace) -> Request:
        args = {"path": a.path, "type": a.type, "body": _json_arg(a.body)}
        if cmd == "ask":
            args["timeout"] = a.ask_timeout
        return cmd, args

    return request


def add_commands(sub: Any) -> None:
    """Register every control command as a subparser of ``sub`` (ctl and shell)."""

    def cmd(name: str, help_: str, request: Callable[[argparse.Namespace], Request]) -> Any:
        p = sub.add_parser(name, help=help_, description=help_)
        p.set_defaults(request=request, render=name)
        return p

    cmd("tree", "the supervision tree", _simple("tree"))
    ps = cmd(
        "ps",
        "every actor: status, mailbox, processed, restarts, breaker",
        lambda a: ("ps", {"sort": a.sort, "limit": a.limit, "prefix": a.prefix}),
    )
    ps.add_argument("--sort", choices=_SORTS, default="spawn")
    ps.add_argument("--limit", type=int)
    ps.add_argument("--prefix", help="only paths starting with this")
    cmd("paths", "every actor path", _simple("paths"))
    cmd("inspect", "introspect(), stats, recent failures", _path_cmd("inspect")).add_argument(
        "path"
    )
    for name, helptext in (("tell", "send a message"), ("ask", "send and wait for the reply")):
        p = cmd(
            name,
            f"{helptext}: TYPE is 'plain' or a registered Message type",
            _message_cmd(name),
        )
        p.add_argument("path")
        p.add_argument("type")
        p.add_argument("body", nargs="?", metavar="JSON", help="the body as JSON")
        if name == "ask":
            p.add_argument("--timeout", dest="ask_timeout", type=float, default=5.0)
    for name, helptext in (
        ("kill", "end an incarnation abruptly (a crash with reason killed)"),
        ("restart", "stop an actor in order and start it afresh"),
        ("stop", "stop an actor for good"),
    ):
        cmd(name, helptext, _path_cmd(name)).add_argument("path")
    cmd("breakers", "circuit breakers and their state", _simple("breakers"))
    cmd("metrics", "counters, totals, storage writer", _simple("metrics"))
    cmd("health", "red/yellow/green per subsystem", _simple("health"))
    cmd("shutdown", "stop the node in order", _simple("shutdown"))
    cmd("commands", "what the node understands", _simple("commands"))
    ev = cmd(
        "events",
        "live tail of the event stream (Ctrl-C ends it)",
        lambda a: ("events", {"kinds": a.kind, "path": a.path, "history": a.history}),
    )
    ev.add_argument("--kind", action="append", help="only this kind (repeatable)")
    ev.add_argument("--path", help="only actor paths matching this glob")
    ev.add_argument("--history", type=int, default=0, help="start with the last N matching")
    ev.add_argument("--count", type=int, help="stop after N events")
    _add_dlq(cmd("dlq", "dead letters, live", _simple("dlq.stats")))


def _add_dlq(p: argparse.ArgumentParser) -> None:
    dsub = p.add_subparsers(dest="dlq_command", required=True, metavar="ACTION")

    def action(name: str, help_: str, request: Callable[[argparse.Namespace], Request]) -> Any:
        a = dsub.add_parser(name, help=help_, description=help_)
        a.set_defaults(request=request, render=f"dlq.{name}")
        return a

    ls = action(
        "ls",
        "list dead letters, oldest first",
        lambda a: (
            "dlq.ls",
            {
                "reason": a.reason,
                "target": a.target,
                "status": a.status,
                "since": a.since,
                "limit": a.limit,
                "after": a.after,
            },
        ),
    )
    ls.add_argument("--reason")
    ls.add_argument("--target")
    ls.add_argument("--status", choices=_STATUSES)
    ls.add_argument("--since", type=float, help="unix time")
    ls.add_argument("--limit", type=int, default=100)
    ls.add_argument("--after", help="page after this id")
    action("show", "one record", lambda a: ("dlq.show", {"id": a.id})).add_argument("id")
    action("stats", "depth, by reason, by target", _simple("dlq.stats"))
    rd = action("redrive", "deliver again now", lambda a: ("dlq.redrive", {"id": a.id, "to": a.to}))
    rd.add_argument("id")
    rd.add_argument("--to", help="deliver to this path instead")
    rs = action("resolve", "mark resolved", lambda a: ("dlq.resolve", {"id": a.id, "note": a.note}))
    rs.add_argument("id")
    rs.add_argument("--note", required=True)
    pg = action(
        "purge",
        "delete by status and/or age",
        lambda a: (
            "dlq.purge",
            {"status": a.status, "older_than_s": a.older_than, "confirm": a.yes},
        ),
    )
    pg.add_argument("--status", choices=_STATUSES)
    pg.add_argument("--older-than", type=float, dest="older_than", help="seconds")
    pg.add_argument("--yes", action="store_true", help="required to purge pending records")


def add_parser(sub: Any) -> None:
    """Register ``ctl``."""
    p = sub.add_parser("ctl", help="run one control command against a running node")
    p.add_argument("--var-dir", default="./var", help="the node's var dir (default ./var)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for a reply")
    csub = p.add_subparsers(dest="ctl_command", required=True, metavar="CMD")
    add_commands(csub)
    p.set_defaults(func=run)


def request_of(args: argparse.Namespace) -> Request:
    """The (command, arguments) an argparse namespace stands for; None values dropped."""
    cmd, raw = args.request(args)
    return cmd, {k: v for k, v in raw.items() if v is not None}


def exit_code_for(exc: ControlError) -> int:
    """DESIGN section 10 exit code for an error reply."""
    if exc.code in UNREACHABLE_CODES:
        return 3
    if exc.code in ("bad_args", "unknown_command"):
        return 2
    return 1


def execute(
    client: ControlClient, args: argparse.Namespace, renderer: Renderer, as_json: bool
) -> int:
    """Run one parsed command on ``client`` and render it; returns the exit code."""
    cmd, payload = request_of(args)
    if cmd == "events":
        limit = getattr(args, "count", None)
        if limit is not None and limit <= 0:
            return 0
        for shown, event in enumerate(client.events(**payload), 1):
            renderer.event(event, as_json)
            if limit is not None and shown >= limit:
                break
        return 0
    result = client.request(cmd, payload)
    renderer.render(args.render, result, as_json)
    if cmd == "health" and isinstance(result, dict) and result.get("status") == "red":
        return 1
    return 0


def run(args: argparse.Namespace) -> int:
    """``phalanx ctl``: connect, run the command, render, exit with its code."""
    renderer = Renderer()
    try:
        timeout = max(args.timeout, getattr(args, "ask_timeout", 0.0) + 5.0)
        with ControlClient(socket_path(args.var_dir), timeout=timeout) as client:
            return execute(client, args, renderer, args.json)
    except ControlError as exc:
        print(f"phalanx: error: {exc}", file=sys.stderr)
        return exit_code_for(exc)
    except KeyboardInterrupt:
        return 0 if getattr(args, "ctl_command", None) == "events" else 1
    except BrokenPipeError:  # `phalanx ctl ... | head`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
