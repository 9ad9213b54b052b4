"""Views over the JSON Lines logs: trades, orders, guards and performance (pure).

Reads ``VAR/logs/<taxonomy>.jsonl`` and its rotated files (``.gz`` included),
oldest first. Views are tolerant: a missing field is None (blank in a table),
an unparsable line is skipped and counted (the last line of a killed node may
be cut short).

Event names (DESIGN 6): the order taxonomy has ``order_attempt``,
``order_ack``, ``order_fill``, ``order_cancel``, ``order_done`` and
``retry_attempt``; the decision taxonomy has ``position_opened``,
``position_updated``, ``position_closed``, ``sell_trigger_eval`` and
``risk_limits_eval``.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from phalanx.runtime._log_retention import rotated_day

__all__ = [
    "GUARD_EVENTS",
    "ORDER_EVENTS",
    "LogReader",
    "guards_view",
    "orders_view",
    "performance_view",
    "trades_view",
]

ORDER_EVENTS = frozenset(
    {"order_attempt", "order_ack", "order_fill", "order_cancel", "order_done", "retry_attempt"}
)
GUARD_EVENTS = frozenset({"risk_limits_eval", "sell_trigger_eval"})
# Status an order event implies when the line carries no ``status`` of its own.
_IMPLIED_STATUS = {
    "order_attempt": "submitting",
    "order_ack": "open",
    "order_fill": "partially_filled",
    "order_cancel": "canceling",
    "order_done": "done",
}
_TERMINAL = frozenset({"filled", "canceled", "rejected", "expired", "closed", "done"})
_ORDER_KEYS = ("order_req_id", "client_order_id", "exchange_order_id")
_ORDER_FIELDS = ("symbol", "side", "type", "price", "amount", *_ORDER_KEYS)
_FILL_FIELDS = ("symbol", "side", *_ORDER_KEYS)


def log_files(log_dir: Path, taxonomy: str) -> list[Path]:
    """Rotated files of ``taxonomy`` oldest first, then the live file."""
    rotated = []
    for path in log_dir.glob(f"{taxonomy}.jsonl.*"):
        parsed = rotated_day(path)
        if parsed is not None and parsed[0] == taxonomy:
            rotated.append((parsed[1], parsed[2], path))
    files = [path for _, _, path in sorted(rotated)]
    live = log_dir / f"{taxonomy}.jsonl"
    if live.is_file():
        files.append(live)
    return files


@dataclass
class LogReader:
    """Reads events by name from the taxonomy files under ``log_dir``."""

    log_dir: Path
    skipped: int = 0

    def events(
        self, taxonomies: Iterable[str], names: Iterable[str] | None
    ) -> Iterator[dict[str, Any]]:
        """Every record whose ``event`` is in ``names`` (all if None), file by file."""
        wanted = None if names is None else frozenset(names)
        for taxonomy in taxonomies:
            for path in log_files(self.log_dir, taxonomy):
                opener: Any = gzip.open if path.suffix == ".gz" else open
                try:
                    with opener(path, "rt", encoding="utf-8", errors="replace") as handle:
                        yield from self._parse(handle, wanted)
                except (OSError, EOFError):  # a truncated .gz: what was read stands
                    self.skipped += 1

    def _parse(
        self, lines: Iterable[str], wanted: frozenset[str] | None
    ) -> Iterator[dict[str, Any]]:
        for line in lines:
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError:
                self.skipped += 1
                continue
            if not isinstance(record, dict):
                self.skipped += 1
            elif wanted is None or record.get("event") in wanted:
                yield record


def _decimal(value: Any) -> Decimal | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        number = Decimal(str(value))
    except (InvalidOperation, ValueError):
        return None
    return number if number.is_finite() else None


def _seconds(value: Any) -> float | None:
    """Epoch seconds from a number or an ISO-8601 string."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
        except ValueError:
            return _float(value)
    return None


def _float(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _first(record: dict[str, Any], *keys: str) -> Any:
    for key in keys:
        if record.get(key) is not None:
            return record[key]
    return None


def trades_view(
    records: Iterable[dict[str, Any]], symbol: str | None = None
) -> list[dict[str, Any]]:
    """One row per ``order_fill``: ts, symbol, side, price, amount, fee, ids."""
    rows = []
    for r in records:
        if r.get("event") != "order_fill" or (symbol is not None and r.get("symbol") != symbol):
            continue
        rows.append(
            {
                "ts": r.get("ts"),
                "symbol": r.get("symbol"),
                "side": r.get("side"),
                "price": r.get("price"),
                "amount": _first(r, "amount", "qty", "filled"),
                "fee": r.get("fee"),
                "trade_id": r.get("trade_id"),
                "order_req_id": r.get("order_req_id"),
                "client_order_id": r.get("client_order_id"),
            }
        )
    return rows


def orders_view(
    records: Iterable[dict[str, Any]], status: str | None = None
) -> list[dict[str, Any]]:
    """One row per order (by ``order_req_id``, else client or exchange id), its latest state."""
    orders: dict[str, dict[str, Any]] = {}
    aliases: dict[str, str] = {}
    filled_sum: dict[str, Decimal] = {}
    for r in records:
        if r.get("event") not in ORDER_EVENTS:
            continue
        ids = [str(r[k]) for k in _ORDER_KEYS if r.get(k) is not None]
        if not ids:
            continue
        key = next((aliases[i] for i in ids if i in aliases), ids[0])
        for i in ids:
            aliases[i] = key
        row = orders.setdefault(
            key,
            {"first_ts": r.get("ts"), "attempts": 0, "fills": 0, "retries": 0, "status": None}
            | dict.fromkeys(("symbol", "side", "type", "price", "amount", "filled", *_ORDER_KEYS)),
        )
        event = r["event"]
        # A fill's price and amount are the trade's, not the order's.
        fields = _FILL_FIELDS if event == "order_fill" else _ORDER_FIELDS
        for field in fields:
            if r.get(field) is not None:
                row[field] = r[field]
        if r.get("filled") is not None:  # cumulative, as the order reports it
            row["filled"] = r["filled"]
            filled_sum.pop(key, None)
        elif event == "order_fill" and (amount := _decimal(_first(r, "amount", "qty"))):
            filled_sum[key] = filled_sum.get(key, Decimal(0)) + amount
            row["filled"] = format(filled_sum[key].normalize(), "f")
        row["attempts"] += event == "order_attempt"
        row["fills"] += event == "order_fill"
        row["retries"] += event == "retry_attempt"
        if r.get("status") is not None:
            row["status"] = r["status"]
        elif row["status"] not in _TERMINAL:  # a late fill after cancel keeps "canceled"
            row["status"] = _IMPLIED_STATUS.get(event, row["status"])
        row["last_ts"] = r.get("ts")
    rows = list(orders.values())
    return [row for row in rows if status is None or row["status"] == status]


def guards_view(
    records: Iterable[dict[str, Any]], symbol: str | None = None
) -> list[dict[str, Any]]:
    """One row per risk or sell-trigger evaluation: ts, event, symbol, outcome, reason."""
    rows = []
    for r in records:
        if r.get("event") not in GUARD_EVENTS:
            continue
        if symbol is not None and r.get("symbol") != symbol:
            continue
        rows.append(
            {
                "ts": r.get("ts"),
                "event": r.get("event"),
                "symbol": r.get("symbol"),
                "outcome": _first(
                    r, "allowed", "ok", "passed", "triggered", "decision", "result", "action"
                ),
                "reason": _first(r, "reason", "failed", "violations", "trigger"),
                "decision_id": r.get("decision_id"),
            }
        )
    return rows


def _duration(r: dict[str, Any]) -> float | None:
    explicit = _float(r.get("duration_s"))
    if explicit is not None:
        return explicit
    opened, closed = _seconds(r.get("opened_at")), _seconds(r.get("closed_at"))
    return None if opened is None or closed is None else closed - opened


def _mean(values: list[Decimal]) -> Decimal | None:
    return sum(values, Decimal(0)) / len(values) if values else None


def performance_view(records: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Win rate, PnL, average win and loss, average duration, from ``position_closed``."""
    pnls: list[Decimal] = []
    durations: list[float] = []
    by_symbol: dict[str, list[Decimal]] = {}
    unpriced = 0
    for r in records:
        if r.get("event") != "position_closed":
            continue
        pnl = _decimal(r.get("realized_pnl"))
        if pnl is None:
            unpriced += 1
            continue
        pnls.append(pnl)
        by_symbol.setdefault(str(r.get("symbol") or "?"), []).append(pnl)
        duration = _duration(r)
        if duration is not None:
            durations.append(duration)
    wins = [p for p in pnls if p > 0]
    losses = [p for p in pnls if p < 0]

    def text(value: Decimal | None) -> str | None:
        return None if value is None else format(value.normalize(), "f")

    return {
        "closed": len(pnls),
        "wins": len(wins),
        "losses": len(losses),
        "breakeven": len(pnls) - len(wins) - len(losses),
        "win_rate": round(len(wins) / len(pnls), 4) if pnls else None,
        "pnl": text(sum(pnls, Decimal(0))) if pnls else None,
        "avg_win": text(_mean(wins)),
        "avg_loss": text(_mean(losses)),
        "avg_duration_s": round(sum(durations) / len(durations), 3) if durations else None,
        "without_pnl": unpriced,
        "by_symbol": {
            s: {
                "closed": len(v),
                "pnl": text(sum(v, Decimal(0))),
                "win_rate": round(sum(1 for p in v if p > 0) / len(v), 4),
            }
            for s, v in sorted(by_symbol.items())
        },
    }
