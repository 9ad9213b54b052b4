"""``phalanx venue``: run the paper venue alone on 127.0.0.1."""

from __future__ import annotations

import argparse
import os
import signal
import threading
from typing import Any

from phalanx.actors.venue import PaperVenue
from phalanx.errors import ConfigError

__all__ = ["add_parser"]


def add_parser(sub: Any) -> None:
    """Register the ``venue`` subcommand."""
    p = sub.add_parser("venue", help="run the paper venue (Binance dialect) on 127.0.0.1")
    p.add_argument("--port", type=int, default=0, help="TCP port (default: a free one)")
    p.add_argument("--seed", type=int, default=7, help="random-walk seed (default 7)")
    p.add_argument("--step", type=float, default=0.1, help="seconds between price steps")
    p.add_argument("--for", dest="duration", type=float, help="stop after S seconds")
    p.add_argument(
        "--fee-in-base",
        action="store_true",
        help="buys pay the fee in the base asset (Binance without BNB); default: the quote",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Serve until SIGINT/SIGTERM or ``--for``. Keys: PHALANX_VENUE_KEY/_SECRET."""
    if not 0 <= args.port <= 65535:
        raise ConfigError(f"--port must be 0..65535, got {args.port}")
    key = os.environ.get("PHALANX_VENUE_KEY", "paper-key")
    secret = os.environ.get("PHALANX_VENUE_SECRET", "paper-secret")
    stop = threading.Event()
    previous = {s: signal.signal(s, lambda *_: stop.set()) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        try:
            venue = PaperVenue(
                args.seed, port=args.port, keys={key: secret}, auto_step_s=args.step,
                fee_in_base=args.fee_in_base,
            )  # fmt: skip
        except OSError as exc:
            raise ConfigError(f"cannot listen on 127.0.0.1:{args.port}: {exc.strerror}") from exc
        with venue:
            print(f"paper venue on {venue.url} (seed {args.seed}, api key {key!r})", flush=True)
            print(f"  ccxt: urls.api.public/private = {venue.url}/api/v3", flush=True)
            print(
                f"  admin: {venue.url}/__venue/{{faults,orders,balances,requests,reset}}",
                flush=True,
            )
            stop.wait(args.duration)
        return 0
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
