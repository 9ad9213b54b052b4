"""``phalanx chaos``: a seeded, bounded chaos campaign against a running node.

It attaches over ``VAR/control.sock``, plans the campaign
(:func:`~phalanx.testing.plan_campaign`: the same seed gives the same
schedule), runs it with a :class:`~phalanx.testing.SocketDriver` (actor
kills and restart storms, venue faults through ``/__venue/faults``, mailbox
floods, node SIGKILLs followed by a restart from ``VAR/node.cmd`` or
``--restart-cmd``), then checks DESIGN section 8 from outside and prints the
JSON verdict. Exit codes: 0 every invariant holds, 1 one does not, 2 bad
usage, 3 the node cannot be reached.

Planned faults aimed at ``*`` (5xx, bans) are narrowed to ``--fault-endpoint``
(default: order placement), so the fault rate is a rate of faulted order
requests; the verdict reports the measured share (``campaign.fault_ratio``).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path
from typing import Any

from phalanx.cli._client import NodeUnreachable
from phalanx.errors import ConfigError
from phalanx.protocols.control import ControlError

# Modules, not names: phalanx.testing imports phalanx.cli._client, so either side
# may be the one still initialising; attributes are read only at call time.
from phalanx.testing import _campaign_plan, _campaign_run, _socket_driver

__all__ = ["add_parser", "parse_fault_mix"]

_DEFAULT_GLOBS = ("/orders/*", "/sagas/*")


def parse_fault_mix(text: str) -> dict[str, float]:
    """``5xx=0.4,lost=0.3,timeout=0.2,ban=0.1`` as weights; a clear error on bad input."""
    mix: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, weight = part.partition("=")
        if not sep:
            raise argparse.ArgumentTypeError(f"fault mix entry {part!r} is not KIND=WEIGHT")
        if name not in _campaign_plan.FAULT_MIX:
            raise argparse.ArgumentTypeError(
                f"unknown fault kind {name!r}; valid: {', '.join(_campaign_plan.FAULT_MIX)}"
            )
        try:
            mix[name] = float(weight)
        except ValueError:
            raise argparse.ArgumentTypeError(f"fault weight {weight!r} is not a number") from None
        if mix[name] < 0:
            raise argparse.ArgumentTypeError(f"fault weight of {name} must be >= 0")
    if not mix or not any(mix.values()):
        raise argparse.ArgumentTypeError("the fault mix needs at least one positive weight")
    return mix


def _rate(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def add_parser(sub: Any) -> None:
    """Register the ``chaos`` subcommand."""
    p = sub.add_parser(
        "chaos",
        help="run a seeded chaos campaign against a running node and check its invariants",
        description="Kill actors, inject venue faults, flood mailboxes and SIGKILL the node "
        "on a seeded schedule; then check DESIGN section 8 and print a JSON verdict.",
    )
    p.add_argument("--var-dir", required=True, help="the node's var dir (control.sock, node.pid)")
    p.add_argument("--seed", type=int, required=True, help="the schedule's seed")
    p.add_argument("--duration", type=_rate, required=True, help="campaign length, seconds")
    p.add_argument("--kill-rate", type=_rate, default=2.0, help="actor kills per second")
    p.add_argument(
        "--kill-glob", action="append", dest="kill_globs", metavar="GLOB",
        help="paths to kill (fnmatch; repeatable; default /orders/* /sagas/*)",
    )  # fmt: skip
    p.add_argument("--storm-rate", type=_rate, default=0.1, help="restart storms per second")
    p.add_argument("--storm-size", type=int, default=5, help="kills per restart storm")
    p.add_argument("--fault-rate", type=_rate, default=1.0, help="venue faults per second")
    p.add_argument("--fault-mix", type=parse_fault_mix, default=dict(_campaign_plan.FAULT_MIX),
                   help="weights, e.g. 5xx=0.4,lost=0.3,timeout=0.2,ban=0.1")  # fmt: skip
    p.add_argument(
        "--fault-endpoint", default=_socket_driver.CREATE_ENDPOINT,
        help=f"where '*' faults go (default {_socket_driver.CREATE_ENDPOINT!r}; '*': anywhere)",
    )  # fmt: skip
    p.add_argument("--flood-rate", type=_rate, default=0.1, help="mailbox floods per second")
    p.add_argument("--flood-size", type=int, default=50, help="messages per flood")
    p.add_argument("--node-kills", type=int, default=0, help="node SIGKILL+restarts")
    p.add_argument("--venue-url", help="the venue (http://127.0.0.1:PORT): faults and its checks")
    p.add_argument("--restart-cmd", help="command that restarts the node (default VAR/node.cmd)")
    p.add_argument("--settle-timeout", type=_rate, default=60.0,
                   help="how long sagas get to finish after the chaos (s)")  # fmt: skip
    p.add_argument("--boot-timeout", type=_rate, default=120.0, help="restart deadline (s)")
    p.add_argument("--leave-running", action="store_true",
                   help="do not shut the node down at the end")  # fmt: skip
    p.add_argument("--dry-run", action="store_true", help="print the plan as JSON and exit")
    p.add_argument("--json", action="store_true",
                   help="stdout is the JSON verdict only (progress goes to stderr)")  # fmt: skip
    p.set_defaults(func=run)


def _plan(args: argparse.Namespace) -> list[Any]:
    if args.duration <= 0:
        raise ConfigError("--duration must be > 0")
    if args.node_kills < 0 or args.storm_size < 1 or args.flood_size < 1:
        raise ConfigError("--node-kills must be >= 0, --storm-size and --flood-size >= 1")
    try:
        return _campaign_plan.plan_campaign(
            args.seed, args.duration, args.kill_rate, args.fault_rate, args.node_kills,
            tuple(args.kill_globs or _DEFAULT_GLOBS),
            storm_rate=args.storm_rate, storm_size=args.storm_size, flood_rate=args.flood_rate,
            flood_size=args.flood_size, fault_mix=args.fault_mix,
        )  # fmt: skip
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def run(args: argparse.Namespace) -> int:
    """Plan, attach, run the campaign, print the verdict; the exit code."""
    plan = _plan(args)
    if args.dry_run:
        print(json.dumps([a.to_json() for a in plan], indent=None if args.json else 1))
        return 0
    out = sys.stderr if args.json else sys.stdout

    def progress(line: str) -> None:
        print(line, file=out, flush=True)

    try:
        restart = shlex.split(args.restart_cmd) if args.restart_cmd else None
    except ValueError as exc:
        raise ConfigError(f"--restart-cmd: {exc}") from None
    driver = _socket_driver.SocketDriver(
        Path(args.var_dir), args.venue_url, restart_cmd=restart,
        fault_endpoint=None if args.fault_endpoint == "*" else args.fault_endpoint,
        boot_timeout=args.boot_timeout, settle_timeout=args.settle_timeout,
        leave_running=args.leave_running, progress=progress,
    )  # fmt: skip
    try:
        driver.connect()
    except (NodeUnreachable, ControlError) as exc:
        print(f"phalanx: error: cannot reach the node: {exc}", file=sys.stderr)
        return 3
    except OSError as exc:
        print(f"phalanx: error: cannot reach the venue at {args.venue_url}: {exc}", file=sys.stderr)
        return 3
    counts: dict[str, int] = {}
    for action in plan:
        counts[action.kind] = counts.get(action.kind, 0) + 1
    progress(f"phalanx chaos: seed {args.seed}, {args.duration}s, {len(plan)} actions {counts}")
    try:
        verdict = _campaign_run.run_campaign(plan, driver, progress)
    except OSError as exc:  # the venue (or the var dir) went away while judging
        print(f"phalanx: error: cannot take the verdict: {exc}", file=sys.stderr)
        return 3
    finally:
        driver.close()
    verdict = verdict.with_campaign(seed=args.seed, planned_by_kind=counts)
    print(verdict.dumps(indent=None if args.json else 1), flush=True)
    return 0 if verdict.ok else 1
