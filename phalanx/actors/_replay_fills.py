"""Replay's fills: every fill once, cross-checked between the order records and the order log.

Fills are the union of the order records' ``fills`` and the ``order_fill``
lines of the ``order`` log, deduplicated by (symbol, trade id), as the
Position store and the Ledger's markers dedupe them. Cross-checks: a logged
fill no record holds, a record fill with no log line (unless it predates
the oldest retained log line), the same trade with other economics in two
places.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from pydantic import ValidationError

from phalanx.actors._replay_model import Difference, ReplayReport, ReplaySources, _short, _show
from phalanx.protocols.trading import OrderFill

__all__: list[str] = []


def _fill_from_log(line: Mapping[str, Any], record: Mapping[str, Any]) -> OrderFill:
    return OrderFill(
        trade_id=str(line["trade_id"]), order_req_id=str(record["order_req_id"]),
        exchange_order_id=line.get("exchange_order_id") or record.get("exchange_order_id"),
        symbol=record["symbol"], side=record["side"], price=Decimal(str(line["price"])),
        amount=Decimal(str(line["amount"])), fee=Decimal(str(line.get("fee") or 0)),
        fee_currency=line.get("fee_currency"),
    )  # fmt: skip


def _collect_fills(src: ReplaySources, out: ReplayReport) -> dict[tuple[str, str], OrderFill]:
    """Every fill, by (symbol, trade id), with the records-vs-log cross-check."""
    fills: dict[tuple[str, str], OrderFill] = {}
    owner: dict[tuple[str, str], str] = {}
    for req_id, record in sorted(src.records.items()):
        held = record.get("fills") or {}
        if not isinstance(held, Mapping):
            what = f"order {req_id} fills"
            out.differences.append(Difference("records", what, "trade id -> fill", _show(held)))
            continue
        for raw in held.values():
            try:
                fill = OrderFill.model_validate(raw)
            except ValidationError as exc:
                out.differences.append(Difference("records", f"order {req_id} fill",
                                                  "a valid fill", _short(exc)))  # fmt: skip
                continue
            key = (fill.symbol, fill.trade_id)
            if key in fills and _economics(fills[key]) != _economics(fill):
                out.differences.append(Difference(
                    "records", f"trade {fill.trade_id} ({fill.symbol})",
                    f"the same fill in {owner[key]} and {req_id}",
                    f"{_economics(fills[key])} vs {_economics(fill)}"))  # fmt: skip
            fills.setdefault(key, fill)
            owner.setdefault(key, req_id)
    logged: set[tuple[str, str]] = set()
    for line in src.log_fills:
        req_id, trade_id = str(line.get("order_req_id")), str(line.get("trade_id"))
        what = f"order_fill log line: trade {trade_id} of order {req_id}"
        holder = src.records.get(req_id)
        if holder is None:
            out.differences.append(Difference("logs", what, "an order record holding it",
                                              f"no order record {req_id}"))  # fmt: skip
            continue
        try:
            fill = _fill_from_log(line, holder)
        except (KeyError, ValueError, ArithmeticError, ValidationError) as exc:
            out.differences.append(Difference("logs", what, "a readable fill", _short(exc)))
            continue
        key = (fill.symbol, fill.trade_id)
        logged.add(key)
        known = fills.get(key)
        if known is None:
            out.differences.append(Difference("logs", what, f"order record {req_id} holds it",
                                              "not in any order record"))  # fmt: skip
            fills[key] = fill
            owner[key] = req_id
        elif _economics(known) != _economics(fill):
            out.differences.append(Difference("logs", what, str(_economics(known)),
                                              str(_economics(fill))))  # fmt: skip
    unlogged = sorted(set(fills) - logged)
    if src.log_since is None and unlogged:
        out.differences.append(Difference("logs", "order log", "VAR/logs/order.jsonl*",
                                          f"none ({len(unlogged)} fills unlogged)"))  # fmt: skip
        return fills
    pruned = 0
    for key in unlogged:
        ms = fills[key].timestamp  # None for a create reply's trades: use the order's start
        # A venue timestamp is whole milliseconds (truncated), so a fill in the same
        # millisecond as the oldest retained line counts as older than the log:
        # replay then errs toward "retention removed its line" over a false alarm.
        at = ms / 1000 if ms is not None else src.records[owner[key]].get("created_at")
        if src.log_since and isinstance(at, int | float) and at < src.log_since:
            pruned += 1  # older than the oldest log line: its file aged out
            continue
        out.differences.append(Difference(
            "logs", f"fill: trade {key[1]} of order {owner[key]}", "an order_fill log line",
            "none in the order log"))  # fmt: skip
    if pruned:
        out.notes.append(f"{pruned} fills predate the oldest order log (retention): "
                         "not cross-checked against it")  # fmt: skip
    return fills


def _economics(fill: OrderFill) -> tuple[str, str, str, str, str | None]:
    currency = fill.fee_currency if fill.fee else None  # a zero fee's currency says nothing
    return fill.side, str(fill.amount), str(fill.price), str(fill.fee), currency
