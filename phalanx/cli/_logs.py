"""``phalanx logs``: query the JSON Lines logs and prune them by retention, offline.

::

    phalanx logs query --var-dir D [--json] trades [--symbol S] [--limit N]
    phalanx logs query --var-dir D [--json] orders [--status S] [--limit N]
    phalanx logs query --var-dir D [--json] guards|risk [--symbol S] [--limit N]
    phalanx logs query --var-dir D [--json] performance
    phalanx logs prune --var-dir D [--dry-run] [--keep-days N] [--retention TAXONOMY=DAYS ...]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from phalanx.cli._log_views import (
    GUARD_EVENTS,
    ORDER_EVENTS,
    LogReader,
    guards_view,
    orders_view,
    performance_view,
    trades_view,
)
from phalanx.errors import ConfigError
from phalanx.runtime._log_retention import DEFAULT_RETENTION_DAYS, prune_logs
from phalanx.runtime._logging import TAXONOMIES

__all__ = ["add_parser"]

_TRADE_COLUMNS = ("ts", "symbol", "side", "price", "amount", "fee", "trade_id", "order_req_id")
_ORDER_COLUMNS = ("order_req_id", "client_order_id", "symbol", "side", "price", "amount",
                  "filled", "status", "attempts", "fills", "last_ts")  # fmt: skip
_GUARD_COLUMNS = ("ts", "event", "symbol", "outcome", "reason")


def _common(*, query: bool) -> argparse.ArgumentParser:
    # SUPPRESS: an option given before the subcommand is not reset by the subparser.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--var-dir", default=argparse.SUPPRESS, help="the node's var dir")
    common.add_argument("--json", action="store_true", default=argparse.SUPPRESS,
                        help="machine-readable output")  # fmt: skip
    if query:
        common.add_argument("--limit", type=_positive_int, default=argparse.SUPPRESS,
                            help="only the last N rows")  # fmt: skip
    return common


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _retention(text: str) -> tuple[str, int]:
    taxonomy, sep, days = text.partition("=")
    if not sep or taxonomy not in TAXONOMIES:
        raise argparse.ArgumentTypeError(
            f"expected TAXONOMY=DAYS with a taxonomy in {', '.join(TAXONOMIES)}, got {text!r}"
        )
    return taxonomy, _positive_int(days)


def add_parser(sub: Any) -> None:
    """Register ``logs`` with ``query`` (trades, orders, guards|risk, performance) and ``prune``."""
    p = sub.add_parser("logs", help="query and prune the JSONL logs, offline on VAR/logs")
    p.add_argument("--var-dir", default="./var", help="the node's var dir (default ./var)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(limit=None)
    lsub = p.add_subparsers(dest="logs_command", required=True, metavar="ACTION")

    query = lsub.add_parser("query", help="views over the logs", parents=[_common(query=True)])
    views = query.add_subparsers(dest="view", required=True, metavar="VIEW")
    trades = views.add_parser("trades", help="fills", parents=[_common(query=True)])
    trades.add_argument("--symbol")
    trades.set_defaults(func=_trades)
    orders = views.add_parser("orders", help="orders, latest state", parents=[_common(query=True)])
    orders.add_argument("--status", help="only orders whose latest status is S")
    orders.set_defaults(func=_orders)
    for name in ("guards", "risk"):
        guards = views.add_parser(
            name, help="risk limits and sell-trigger evaluations", parents=[_common(query=True)]
        )
        guards.add_argument("--symbol")
        guards.set_defaults(func=_guards)
    perf = views.add_parser(
        "performance",
        help="win rate, PnL, average win/loss, duration",
        parents=[_common(query=True)],
    )
    perf.set_defaults(func=_performance)

    prune = lsub.add_parser(
        "prune", help="delete rotated logs past retention", parents=[_common(query=False)]
    )
    prune.add_argument("--dry-run", action="store_true", help="list, do not delete")
    prune.add_argument(
        "--keep-days",
        type=_positive_int,
        default=DEFAULT_RETENTION_DAYS,
        help=f"default retention in days (default {DEFAULT_RETENTION_DAYS})",
    )
    prune.add_argument(
        "--retention",
        type=_retention,
        action="append",
        default=[],
        metavar="TAXONOMY=DAYS",
        help="per-taxonomy retention (repeatable)",
    )
    prune.set_defaults(func=_prune)


def _log_dir(var_dir: str) -> Path:
    if not Path(var_dir).is_dir():
        raise ConfigError(f"var dir {var_dir!r} does not exist")
    log_dir = Path(var_dir) / "logs"
    if not log_dir.is_dir():
        raise ConfigError(f"no logs at {str(log_dir)!r} (has a node run with this var dir?)")
    return log_dir


def _emit_rows(args: argparse.Namespace, reader: LogReader, rows: list[dict[str, Any]],
               columns: tuple[str, ...], title: str) -> int:  # fmt: skip
    if args.limit is not None:
        rows = rows[-args.limit :]
    if args.json:
        print(json.dumps(rows, indent=2, default=str))
    else:
        table = Table(title=f"{title} ({len(rows)})")
        for column in columns:
            table.add_column(column, overflow="fold")
        for row in rows:
            table.add_row(*("" if row.get(c) is None else str(row[c]) for c in columns))
        _console().print(table)
    _report_skipped(reader)
    return 0


def _console() -> Console:
    # Piped output gets a wide table rather than 80 columns of folded ids.
    return Console(width=None if sys.stdout.isatty() else 200)


def _report_skipped(reader: LogReader) -> None:
    if reader.skipped:
        print(f"phalanx: skipped {reader.skipped} unreadable log line(s)", file=sys.stderr)


def _trades(args: argparse.Namespace) -> int:
    reader = LogReader(_log_dir(args.var_dir))
    rows = trades_view(reader.events(["order"], {"order_fill"}), symbol=args.symbol)
    return _emit_rows(args, reader, rows, _TRADE_COLUMNS, "trades")


def _orders(args: argparse.Namespace) -> int:
    reader = LogReader(_log_dir(args.var_dir))
    rows = orders_view(reader.events(["order"], ORDER_EVENTS), status=args.status)
    return _emit_rows(args, reader, rows, _ORDER_COLUMNS, "orders")


def _guards(args: argparse.Namespace) -> int:
    reader = LogReader(_log_dir(args.var_dir))
    rows = guards_view(reader.events(["decision"], GUARD_EVENTS), symbol=args.symbol)
    return _emit_rows(args, reader, rows, _GUARD_COLUMNS, "guards")


def _performance(args: argparse.Namespace) -> int:
    reader = LogReader(_log_dir(args.var_dir))
    view = performance_view(reader.events(["decision"], {"position_closed"}))
    if args.json:
        print(json.dumps(view, indent=2))
    else:
        table = Table(title="performance (closed positions)")
        table.add_column("metric")
        table.add_column("value", justify="right")
        for key, value in view.items():
            if key != "by_symbol":
                table.add_row(key, "" if value is None else str(value))
        for symbol, stats in view["by_symbol"].items():
            table.add_row(f"{symbol}", f"{stats['closed']} closed, pnl {stats['pnl']}, "
                                       f"win rate {stats['win_rate']}")  # fmt: skip
        _console().print(table)
    _report_skipped(reader)
    return 0


def _prune(args: argparse.Namespace) -> int:
    log_dir = _log_dir(args.var_dir)
    retention = dict(args.retention)
    removed = prune_logs(log_dir, retention, default_days=args.keep_days, dry_run=args.dry_run)
    names = [p.name for p in removed]
    if args.json:
        print(json.dumps({"dry_run": args.dry_run, "files": names}, indent=2))
    else:
        verb = "would delete" if args.dry_run else "deleted"
        for name in names:
            print(f"{verb} {name}")
        print(f"{verb} {len(names)} file(s)")
    return 0
