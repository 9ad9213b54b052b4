"""``phalanx run``: boot a node, run until a signal or ``--for``, write a summary.

Without ``-c`` it runs the trading demo: the embedded paper venue, one ccxt
connection to it, and the trading core (``start_trading``) with the seeded
mean-reversion strategy, printing orders and sagas once a second. At the end
the strategy stops, running sagas get ``_DRAIN_S`` to finish, and the summary
is taken from the stores (idempotency records, saga journal, ledger, venue).
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import shutil
import signal
import sys
import threading
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from phalanx.actors import TickerPrinter, TradingNode, spawn_demo, start_exchanges, start_trading
from phalanx.actors._alerting import start_observability
from phalanx.actors.venue import PaperVenue
from phalanx.errors import ConfigError
from phalanx.protocols.exchange import SubscribeTicker
from phalanx.runtime import ActorSystem, CpuPinning, pin_to_one_cpu
from phalanx.runtime._config import (
    ExchangeConfig,
    NodeConfig,
    TradingConfig,
    VenueConfig,
    load_config,
)
from phalanx.runtime._control import ControlServer
from phalanx.runtime._gc import freeze_startup_heap

__all__ = ["DEFAULT_CONFIG", "add_parser", "build_summary"]

_DRAIN_S = 10.0  # at the end, how long running sagas get to finish


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
    p = sub.add_parser("run", help="boot a node (the trading demo when no config is given)")
    p.add_argument("-c", "--config", help="TOML node config (default: the embedded demo)")
    p.add_argument("--var-dir", help="state, logs, socket (default: config var_dir or ./var)")
    p.add_argument("--for", dest="duration", type=_positive_seconds, help="stop after S seconds")
    p.add_argument("--summary", help="write a JSON summary to FILE at exit")
    p.add_argument("--seed", type=int, default=None, help="strategy/demo seed (default: config)")
    p.set_defaults(func=run)


def build_summary(
    system: ActorSystem, started: float, trading: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The ``--summary`` document (DESIGN section 10), valid after shutdown too.

    ``trading`` holds the trading fields (:meth:`TradingNode.summary`), taken
    while storage was open; without trading the counters are zero.
    """
    totals = system.totals()
    return {
        "orders_placed": 0,
        "orders_filled": 0,
        "orders_canceled": 0,
        "sagas_completed": 0,
        "sagas_compensated": 0,
        "sagas_running": 0,
        "duplicates_detected": 0,
        "ledger_balanced": True,
        **(trading or {}),
        "restarts": totals["restarts"],
        "dead_letters": totals["dead_letters"],
        "uptime_s": round(time.monotonic() - started, 3),
        "messages": system.counters(),
    }


DEFAULT_CONFIG = NodeConfig(
    venue=VenueConfig(),
    exchanges=[ExchangeConfig(name="paper", use_venue=True, rate_limit_per_s=2000, burst=200,
                              poll_interval_s=0.25)],
    trading=TradingConfig(),
    demo=False,
)  # fmt: skip
"""``phalanx run`` without ``-c``: the embedded venue and the trading demo."""


def _progress(node: TradingNode) -> str:
    c = node.counts()
    return (
        f"  orders placed={c['orders_placed']} filled={c['orders_filled']} "
        f"canceled={c['orders_canceled']} rejected={c['orders_rejected']} | sagas "
        f"completed={c['sagas_completed']} compensated={c['sagas_compensated']} "
        f"running={c['sagas_running']}"
    )


def _start_ticker_printer(system: ActorSystem, config: NodeConfig) -> None:
    if not config.exchanges:
        return
    exchange = config.exchanges[0]
    symbols = list(exchange.poll_symbols)
    if not symbols and config.trading is not None:
        symbols = config.trading.strategy.symbols[:1]
    if not symbols:
        return
    system.spawn(TickerPrinter, "/demo-ticker-printer", 8)
    for symbol in symbols:
        system.tell(
            f"/exchanges/{exchange.name}",
            SubscribeTicker(symbol=symbol, subscriber="/demo-ticker-printer"),
        )


def _run_trading(
    system: ActorSystem,
    config: NodeConfig,
    venue: PaperVenue | None,
    duration: float | None,
    stop: threading.Event,
) -> dict[str, Any]:
    """Start the trading core, print progress until stopped, drain, and summarize."""
    node = start_trading(system, config, venue, order_options=_test_order_options())
    r: dict[str, Any] = dict(node.reconciliation or {})
    print(
        f"  reconciliation: ok={r.get('ok')} fills_applied={r.get('fills_applied')} "
        f"adopted={r.get('adopted')} resolved={r.get('resolved')} opened={r.get('opened')} "
        f"drift={r.get('drift')}" + (f" error={r.get('error')}" if r.get("error") else ""),
        flush=True,
    )
    _freeze_heap()
    strategy = node.config.strategy
    if node.strategy is not None:
        print(
            f"  strategy: mean reversion on {', '.join(strategy.symbols)} (seed {strategy.seed}, "
            f"at most {strategy.max_sagas or 'unbounded'} sagas)",
            flush=True,
        )
    _start_ticker_printer(system, config)
    deadline = None if duration is None else time.monotonic() + duration
    while True:
        left = None if deadline is None else deadline - time.monotonic()
        if (left is not None and left <= 0) or stop.wait(1.0 if left is None else min(1.0, left)):
            break
        print(_progress(node), flush=True)
    print("phalanx: strategy stopped; running sagas get up to "
          f"{_DRAIN_S:.0f}s to finish", flush=True)  # fmt: skip
    node.stop_strategy()
    if not node.wait_idle(_DRAIN_S):
        print("phalanx: some sagas are still running (they resume at the next boot)", flush=True)
    print(_progress(node), flush=True)
    return node.summary()


def _freeze_heap() -> None:
    """Once the node is up: its startup heap out of the collector's reach (runtime/_gc.py)."""
    tuning = freeze_startup_heap()
    print(f"  gc: {tuning.frozen} startup objects frozen, "
          f"gen0 threshold {tuning.thresholds[0]}", flush=True)  # fmt: skip


def _pin_cpu(config: NodeConfig) -> CpuPinning:
    """The config's ``cpu_affinity``, before anything starts: threads inherit it (_affinity.py)."""
    if config.cpu_affinity == "inherit":
        return CpuPinning(None, (), 0, "inherit")
    try:
        return pin_to_one_cpu(None if config.cpu_affinity == "one" else config.cpu_affinity)
    except ValueError as exc:
        raise ConfigError(f"cpu_affinity: {exc}") from None


def _describe_pinning(config: NodeConfig, pinning: CpuPinning) -> str:
    setting = json.dumps(config.cpu_affinity)
    if pinning.cpu is None:
        return f"not pinned: {pinning.reason} (cpu_affinity = {setting})"
    partial = "" if pinning.reason == "pinned" else f", {pinning.reason}"
    return f"CPU {pinning.cpu} of {list(pinning.allowed)} (cpu_affinity = {setting}{partial})"


def _test_order_options() -> dict[str, Any]:
    """Test-only Order switches from the environment; never set in production or config.

    ``PHALANX_TEST_BLIND_RESEND=1`` turns on the deliberately broken Order actor
    of issue 7 (it resends the same client id on an unknown outcome instead of
    looking it up), so chaos tests can prove the duplicate-intent check fails.
    """
    if os.environ.get("PHALANX_TEST_BLIND_RESEND") == "1":
        print("phalanx: TEST ONLY: blind resend is on (PHALANX_TEST_BLIND_RESEND=1)", flush=True)
        return {"blind_resend": True}
    return {}


def _restart_command(args: argparse.Namespace, var_dir: Path) -> dict[str, Any]:
    """``VAR/node.cmd``: how to start this node again (``phalanx chaos`` does, after a SIGKILL).

    Paths are absolute; the environment (api keys) is not recorded: the
    restarting process passes its own.
    """
    argv = [sys.executable, "-m", "phalanx", "run", "--var-dir", str(var_dir.resolve())]
    if args.config:
        argv += ["-c", str(Path(args.config).resolve())]
    if args.seed is not None:
        argv += ["--seed", str(args.seed)]
    if args.duration:
        argv += ["--for", str(args.duration)]
    if args.summary:
        argv += ["--summary", str(Path(args.summary).resolve())]
    return {"argv": argv, "cwd": os.getcwd()}


def _with_seed(config: NodeConfig, seed: int | None) -> NodeConfig:
    if seed is None or config.trading is None:
        return config
    strategy = config.trading.strategy.model_copy(update={"seed": seed})
    trading = config.trading.model_copy(update={"strategy": strategy})
    return config.model_copy(update={"trading": trading})


def _embedded_trading(config: NodeConfig) -> bool:
    """True when trading runs on the embedded venue (whose account starts fresh every run)."""
    if config.trading is None or not config.trading.enabled:
        return False
    if config.venue is None or not config.venue.enabled:
        return False
    return any(e.name == config.trading.exchange and e.use_venue for e in config.exchanges)


def _archive_stale_state(var_dir: Path) -> Path | None:
    """Move a previous run's ``state.lmdb`` aside (kept as ``state.lmdb.prev``).

    The embedded paper venue keeps its account in memory, so the ledger,
    positions and order records of an earlier run describe an account that
    no longer exists: reconciliation would (rightly) refuse to trade on them.
    """
    state = var_dir / "state.lmdb"
    if not state.exists():
        return None
    try:
        fd = os.open(var_dir / "node.lock", os.O_RDWR | os.O_CREAT, 0o600)
    except OSError:
        return None  # ActorSystem.start reports the unusable var dir
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None  # a live node owns it: start() refuses with a clear error
    try:
        archive = var_dir / "state.lmdb.prev"
        if archive.is_dir():
            shutil.rmtree(archive)
        state.rename(archive)
        return archive
    finally:
        os.close(fd)


def run(args: argparse.Namespace) -> int:
    """Run the node until SIGINT/SIGTERM or ``--for`` elapses; orderly shutdown."""
    config = _with_seed(load_config(args.config) if args.config else DEFAULT_CONFIG, args.seed)
    var_dir = Path(args.var_dir or config.var_dir or "./var")
    pinning = _pin_cpu(config)
    stop = threading.Event()
    started = time.monotonic()
    previous = {
        sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)
    }
    venue: PaperVenue | None = None
    try:
        archived = _archive_stale_state(var_dir) if _embedded_trading(config) else None
        system = ActorSystem(name=config.name, var_dir=var_dir)
        if config.venue is not None and config.venue.enabled:
            venue = PaperVenue(config.venue.seed, port=config.venue.port,
                               auto_step_s=config.venue.step_s,
                               fee_in_base=config.venue.fee_in_base).start()  # fmt: skip
        with system:
            (var_dir / "node.pid").write_text(f"{os.getpid()}\n")
            (var_dir / "node.cmd").write_text(json.dumps(_restart_command(args, var_dir)) + "\n")
            # Right after start, so event counts cover the whole run; it stops with the node.
            observability = start_observability(system, config.metrics, config.alerts)
            print(f"phalanx node up: var={var_dir.resolve()}", flush=True)
            print(f"  logs:   {(var_dir / 'logs').resolve()}", flush=True)
            print(f"  state:  {(var_dir / 'state.lmdb').resolve()}", flush=True)
            print(f"  cpu:    {_describe_pinning(config, pinning)}", flush=True)
            system.logs.logger("health").info(
                "cpu_pinning", setting=config.cpu_affinity, **asdict(pinning)
            )
            if observability.server is not None:
                print(f"  metrics: {observability.server.url}", flush=True)
            if archived is not None:
                print(f"  (the embedded venue starts a fresh account each run: the previous "
                      f"state is kept in {archived})", flush=True)  # fmt: skip
            if venue is not None and config.venue is not None:
                print(f"  venue:  {venue.url} (paper, seed {config.venue.seed})", flush=True)
            with ControlServer(system, var_dir / "control.sock", on_shutdown=stop.set) as control:
                print(f"  control: {control.path.resolve()}", flush=True)
                if config.demo:
                    paths = spawn_demo(system, seed=args.seed if args.seed is not None else 7)
                    print(f"  demo:   {len(paths)} actors under /demo", flush=True)
                if args.duration:
                    print(f"  runs for {args.duration}s (Ctrl-C stops sooner)", flush=True)
                trading: dict[str, Any] | None = None
                if config.trading is not None and config.trading.enabled:
                    trading = _run_trading(system, config, venue, args.duration, stop)
                else:
                    start_exchanges(system, config, venue)
                    _freeze_heap()
                    _start_ticker_printer(system, config)
                    stop.wait(args.duration)
            print("phalanx: shutting down in order", flush=True)
        # Counters are final only once every actor has stopped.
        summary = build_summary(system, started, trading)
        (var_dir / "node.pid").unlink(missing_ok=True)
        if args.summary:
            try:
                Path(args.summary).parent.mkdir(parents=True, exist_ok=True)
                Path(args.summary).write_text(json.dumps(summary, indent=2, sort_keys=True))
            except OSError as exc:
                raise ConfigError(f"cannot write summary {args.summary!r}: {exc}") from exc
        print(
            f"phalanx: stopped after {summary['uptime_s']}s; orders placed="
            f"{summary['orders_placed']} filled={summary['orders_filled']} sagas completed="
            f"{summary['sagas_completed']} compensated={summary['sagas_compensated']} "
            f"ledger_balanced={summary['ledger_balanced']} restarts={summary['restarts']} "
            f"dead_letters={sum(summary['dead_letters'].values())}",
            flush=True,
        )
        return 0
    finally:
        if venue is not None:
            venue.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
