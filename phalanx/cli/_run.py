"""``phalanx run``: boot a node, run until a signal or ``--for``, write a summary."""

from __future__ import annotations

import argparse
import json
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

from phalanx.actors import TickerPrinter, spawn_demo
from phalanx.actors.exchange import connection_spec
from phalanx.actors.venue import PaperVenue
from phalanx.errors import ConfigError
from phalanx.protocols.exchange import SubscribeTicker
from phalanx.runtime import ActorSystem
from phalanx.runtime._config import ExchangeConfig, NodeConfig, VenueConfig, load_config
from phalanx.runtime._control import ControlServer

__all__ = ["add_parser", "build_summary"]


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0 seconds, got {text}")
    return value


def add_parser(sub: Any) -> None:
    """Register the ``run`` subcommand."""
    p = sub.add_parser("run", help="boot a node (the demo tree when no config is given)")
    p.add_argument("-c", "--config", help="TOML node config (default: the embedded demo)")
    p.add_argument("--var-dir", help="state, logs, socket (default: config var_dir or ./var)")
    p.add_argument("--for", dest="duration", type=_positive_seconds, help="stop after S seconds")
    p.add_argument("--summary", help="write a JSON summary to FILE at exit")
    p.add_argument("--seed", type=int, default=7, help="demo random seed (default 7)")
    p.set_defaults(func=run)


def build_summary(system: ActorSystem, started: float) -> dict[str, Any]:
    """The ``--summary`` document (DESIGN section 10), valid after shutdown too."""
    totals = system.totals()
    return {
        "orders_placed": 0,
        "orders_filled": 0,
        "orders_canceled": 0,
        "sagas_completed": 0,
        "sagas_compensated": 0,
        "sagas_running": 0,
        "restarts": totals["restarts"],
        "dead_letters": totals["dead_letters"],
        "duplicates_detected": 0,
        "ledger_balanced": True,
        "uptime_s": round(time.monotonic() - started, 3),
        "messages": system.counters(),
    }


DEFAULT_CONFIG = NodeConfig(
    venue=VenueConfig(),
    exchanges=[
        ExchangeConfig(
            name="paper", use_venue=True, poll_symbols=["BTC/USDT"], poll_interval_s=0.25,
            rate_limit_per_s=20, burst=5,
        )
    ],
)  # fmt: skip


def _start_exchanges(system: ActorSystem, config: NodeConfig, venue: PaperVenue | None) -> None:
    specs = []
    for configured in config.exchanges:
        exchange, client = configured, {}
        if exchange.use_venue:
            if venue is None:
                raise ConfigError(f"exchanges.{exchange.name}.use_venue needs [venue] enabled")
            cc = venue.ccxt_config()
            exchange = exchange.model_copy(update={"urls": cc["urls"], "options": cc["options"]})
            client = {"apiKey": cc["apiKey"], "secret": cc["secret"]}
        specs.append(connection_spec(exchange, client_config=client))
    if not specs:
        return
    system.spawn(TickerPrinter, "/demo-ticker-printer", 8)
    system.supervise("/exchanges", strategy="one_for_one", intensity=10, period=5, children=specs)
    for exchange in config.exchanges:
        for symbol in exchange.poll_symbols:
            system.tell(
                f"/exchanges/{exchange.name}",
                SubscribeTicker(symbol=symbol, subscriber="/demo-ticker-printer"),
            )


def run(args: argparse.Namespace) -> int:
    """Run the node until SIGINT/SIGTERM or ``--for`` elapses; orderly shutdown."""
    config = load_config(args.config) if args.config else DEFAULT_CONFIG
    var_dir = Path(args.var_dir or config.var_dir or "./var")
    stop = threading.Event()
    started = time.monotonic()
    previous = {
        sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)
    }
    venue: PaperVenue | None = None
    try:
        system = ActorSystem(name=config.name, var_dir=var_dir)
        if config.venue is not None and config.venue.enabled:
            venue = PaperVenue(config.venue.seed, port=config.venue.port,
                               auto_step_s=config.venue.step_s).start()  # fmt: skip
        with system:
            (var_dir / "node.pid").write_text(f"{os.getpid()}\n")
            print(f"phalanx node up: var={var_dir.resolve()}", flush=True)
            print(f"  logs:   {(var_dir / 'logs').resolve()}", flush=True)
            print(f"  state:  {(var_dir / 'state.lmdb').resolve()}", flush=True)
            if venue is not None:
                print(f"  venue:  {venue.url} (paper, seed {config.venue.seed})", flush=True)  # type: ignore[union-attr]
            if config.demo:
                paths = spawn_demo(system, seed=args.seed)
                print(f"  demo:   {len(paths)} actors under /demo", flush=True)
            _start_exchanges(system, config, venue)
            if args.duration:
                print(f"  runs for {args.duration}s (Ctrl-C stops sooner)", flush=True)
            with ControlServer(system, var_dir / "control.sock", on_shutdown=stop.set) as control:
                print(f"  control: {control.path.resolve()}", flush=True)
                stop.wait(args.duration)
            print("phalanx: shutting down in order", flush=True)
        # Counters are final only once every actor has stopped.
        summary = build_summary(system, started)
        (var_dir / "node.pid").unlink(missing_ok=True)
        if args.summary:
            try:
                Path(args.summary).parent.mkdir(parents=True, exist_ok=True)
                Path(args.summary).write_text(json.dumps(summary, indent=2, sort_keys=True))
            except OSError as exc:
                raise ConfigError(f"cannot write summary {args.summary!r}: {exc}") from exc
        print(
            f"phalanx: stopped after {summary['uptime_s']}s; restarts={summary['restarts']} "
            f"dead_letters={sum(summary['dead_letters'].values())}",
            flush=True,
        )
        return 0
    finally:
        if venue is not None:
            venue.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
