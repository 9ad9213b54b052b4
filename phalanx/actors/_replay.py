"""Replay: rebuild positions, ledger balances and saga outcomes from the records, then diff.

Pure part of ``phalanx replay`` (the CLI in ``phalanx/cli/_replay.py`` reads
LMDB and the logs into :class:`ReplaySources` and :class:`LiveState`). The
rebuild never reads derived state for values:

- fills are the union of the order records' ``fills`` and the ``order_fill``
  lines of the ``order`` log, deduplicated by (symbol, trade id), as the
  Position store and the Ledger's markers dedupe them;
- positions fold those fills through the pure position model
  (:func:`~phalanx.actors._position_model.apply_fill`, with the net quantity
  and quote-valued fee of :func:`~phalanx.actors._position.position_terms`,
  as the Position actor applies a fee in the base or a third asset), in the order the node
  applied them (the position markers' ``at``: ordering only, since average
  cost depends on it), else in venue order;
- balances are the opening transaction(s) plus :func:`plan_fill` of every
  fill (through :func:`ledger_fill_from`, as the fill sink posts them, its
  fee in whichever asset paid it);
- saga outcomes come from feeding each saga's journaled events through
  :func:`~phalanx.actors.saga.advance`, never from its snapshot; each
  record's status and commands must be what ``advance`` gives, and the
  folded state must equal the snapshot field by field.

Cross-checks: a logged fill no record holds, a record fill with no log line
(unless it predates the oldest retained log line), a ledger ``fill:``
transaction no fill explains, a position marker no fill explains.

:func:`replay` returns a :class:`ReplayReport` whose ``differences`` are
empty when the live state matches. Fills the sink refuses (a negative fee,
a base fee a buy cannot pay) are expected nowhere, as the live sink would
refuse them too.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Any

from pydantic import ValidationError

from phalanx.actors._ledger_actor import ledger_fill_from
from phalanx.actors._position import position_terms
from phalanx.actors._position_model import PositionState, apply_fill
from phalanx.actors.saga import _protocol as sp
from phalanx.actors.saga._model import SagaError, advance, new_saga, saga_definition
from phalanx.actors.saga._state import SagaState
from phalanx.errors import PhalanxError
from phalanx.protocols.trading import OrderFill
from phalanx.storage import Posting, Transaction, plan_fill
from phalanx.storage._journal_prune import is_pruned

__all__ = ["Difference", "LiveState", "ReplayReport", "ReplaySources", "replay", "replay_saga"]

ZERO = Decimal(0)
_INF = float("inf")
_EVENTS: dict[str, type[Any]] = {
    c.tag: c
    for c in (
        sp.Started, sp.StepSucceeded, sp.StepPending, sp.StepFailed, sp.CompensationSucceeded,
        sp.CompensationPending, sp.CompensationFailed, sp.Finalized,
    )
}  # fmt: skip
_POSITION_FIELDS = ("quantity", "average_entry", "realized_pnl", "fees", "fills")
_SAGA_SKIP = ("v", "input")  # the input is the saga's identity, not derived from its events


@dataclass(frozen=True)
class Difference:
    """One finding: in ``area``, ``what`` should be ``expected`` but is ``found``."""

    area: str  # positions | ledger | sagas | logs | records
    what: str
    expected: str
    found: str

    def to_dict(self) -> dict[str, str]:
        """JSON-ready."""
        return {"area": self.area, "what": self.what, "expected": self.expected,
                "found": self.found}  # fmt: skip


@dataclass(frozen=True)
class ReplaySources:
    """What replay rebuilds from (decoded by the CLI; nothing here is derived state).

    ``records``: ``order_req_id`` -> idempotency record (wire dict);
    ``log_fills``: the ``order_fill`` log lines; ``ledger_txns``: key ->
    ``{"postings": [[account, side, value, quantity], ...]}`` (the openings
    are replayed, the fill keys cross-checked); ``journal``: saga id -> its
    records by seq; ``saga_kinds``: saga id -> kind (the ``saga_started``
    log line, else the snapshot); ``applied_at``: (symbol, trade id) -> when
    the Position applied it (ordering only); ``log_since``: the oldest time
    the order log still covers (retention deletes older files; None: there
    is no order log at all).
    """

    records: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    log_fills: Sequence[Mapping[str, Any]] = ()
    ledger_txns: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    journal: Mapping[str, Sequence[Mapping[str, Any]]] = field(default_factory=dict)
    saga_kinds: Mapping[str, str] = field(default_factory=dict)
    applied_at: Mapping[tuple[str, str], float] = field(default_factory=dict)
    log_since: float | None = 0.0


@dataclass(frozen=True)
class LiveState:
    """The derived state in LMDB that replay checks."""

    positions: Mapping[str, PositionState] = field(default_factory=dict)
    position_fills: Mapping[str, frozenset[str]] = field(default_factory=dict)
    balances: Mapping[str, tuple[Decimal, Decimal]] = field(default_factory=dict)
    snapshots: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)


@dataclass
class ReplayReport:
    """Counts of what was replayed, the differences (empty = match), and notes."""

    fills: int = 0
    sagas: int = 0
    positions: int = 0
    saga_outcomes: dict[str, int] = field(default_factory=dict)
    pruned_sagas: int = 0  # compacted by journal retention: outcome from the snapshot
    differences: list[Difference] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def match(self) -> bool:
        """True when nothing differs."""
        return not self.differences

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {
            "match": self.match, "fills": self.fills, "sagas": self.sagas,
            "positions": self.positions, "saga_outcomes": dict(self.saga_outcomes),
            "pruned_sagas": self.pruned_sagas,
            "differences": [d.to_dict() for d in self.differences], "notes": list(self.notes),
        }  # fmt: skip


# --- fills ------------------------------------------------------------------------------


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


def _short(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:200]


# --- positions and ledger -------------------------------------------------------------------


def _positions(
    fills: Mapping[tuple[str, str], OrderFill], src: ReplaySources
) -> tuple[dict[str, PositionState], dict[str, set[str]]]:
    def venue(key: tuple[str, str]) -> tuple[int, int, str]:
        tid = fills[key].trade_id
        return fills[key].timestamp or 0, len(tid), tid  # numeric ids sort as numbers

    # The node's application order (average cost depends on it); a fill the node
    # has no marker for goes right after its predecessor in venue order.
    when: dict[tuple[str, str], tuple[float, int]] = {}
    last = -_INF
    for key in sorted(fills, key=venue):
        at = src.applied_at.get(key)
        when[key] = (last, 1) if at is None else (at, 0)
        last = last if at is None else at
    states: dict[str, PositionState] = {}
    applied: dict[str, set[str]] = {}
    for key in sorted(fills, key=lambda k: (*when[k], *venue(k))):
        fill = fills[key]
        state = states.get(fill.symbol) or PositionState(fill.symbol)
        quantity, fee = position_terms(fill)  # net of a base fee, as the Position applies it
        states[fill.symbol] = apply_fill(state, fill.side, quantity, fill.price, fee)
        applied.setdefault(fill.symbol, set()).add(fill.trade_id)
    return states, applied


def _post(balances: dict[str, tuple[Decimal, Decimal]], txn: Transaction) -> None:
    for p in txn.postings:
        value, quantity = balances.get(p.account, (ZERO, ZERO))
        signed = p.value if p.side == "debit" else -p.value
        balances[p.account] = (value + signed, quantity + p.quantity)


def _ledger(
    fills: Mapping[tuple[str, str], OrderFill], src: ReplaySources, out: ReplayReport
) -> dict[str, tuple[Decimal, Decimal]]:
    balances: dict[str, tuple[Decimal, Decimal]] = {}
    for key, raw in sorted(src.ledger_txns.items()):
        if not key.startswith("opening:"):
            continue
        try:
            postings = tuple(
                Posting(a, s, Decimal(v), Decimal(q)) for a, s, v, q in raw.get("postings") or ()
            )
        except (TypeError, ValueError, ArithmeticError) as exc:
            out.differences.append(Difference("ledger", f"transaction {key}",
                                              "readable postings", _short(exc)))  # fmt: skip
            continue
        opening = Transaction(key, postings)
        if not opening.balanced():
            out.differences.append(Difference("ledger", f"transaction {key}", "balanced",
                                              "debits != credits"))  # fmt: skip
        _post(balances, opening)
    posted: set[str] = set()
    for fill in fills.values():
        txn = plan_fill(ledger_fill_from(fill))
        posted.add(txn.key)
        _post(balances, txn)
    stored = {k for k in src.ledger_txns if k.startswith("fill:")}
    for key in sorted(stored - posted):
        out.differences.append(Difference("ledger", f"transaction {key}",
                                          "a fill in an order record or the order log",
                                          "posted, but no record or log line has it"))  # fmt: skip
    for key in sorted(posted - stored):
        out.differences.append(Difference("ledger", f"transaction {key}", "posted",
                                          "missing from db ledger"))  # fmt: skip
    return balances


def _sink_refuses(fill: OrderFill) -> str | None:
    try:
        ledger_fill_from(fill)  # its checks include the Position's (check_fee)
    except PhalanxError as exc:
        return str(exc)
    return None


# --- sagas ------------------------------------------------------------------------------


def _event(raw: Mapping[str, Any]) -> sp.Event:
    fields = dict(raw)
    cls = _EVENTS[fields.pop("tag")]
    event: sp.Event = cls(**fields)
    return event


def _strip_ids(commands: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    # The actor fills dead_letter_id (a fresh id) after advance; everything else is pure.
    return [{k: v for k, v in c.items() if k != "dead_letter_id"} for c in commands]


def replay_saga(
    saga_id: str, kind: str, records: Sequence[Mapping[str, Any]]
) -> tuple[SagaState | None, str, list[str]]:
    """Fold one saga's journal through ``advance``: (state or None, status, problems).

    Without a registered definition for ``kind`` the state is None and the
    status is the last record's (checked for a gap-free seq only).
    """
    problems: list[str] = []
    for n, record in enumerate(records, 1):
        if record.get("seq") != n:
            problems.append(f"record {n} has seq {record.get('seq')!r} (a gap or a duplicate)")
            return None, "corrupt", problems
    if not records:
        return None, "missing", ["no journal records"]
    try:
        definition = saga_definition(kind)
    except SagaError:
        return None, str(records[-1].get("status")), [f"kind {kind!r} is not registered"]
    state = new_saga(definition, saga_id, {}, 0.0)
    for record in records:
        try:
            if record["seq"] == 1:  # created_at is the Started event's time
                state = replace(
                    state, created_at=float(record["at"]), updated_at=float(record["at"])
                )
            plan = advance(state, _event(record["event"]), definition)
            commands = list(record.get("commands") or ())
            outbox = tuple(sp.command_from_dict(c) for c in commands)
        except (SagaError, KeyError, TypeError, ValueError) as exc:
            problems.append(f"record {record['seq']}: {_short(exc)}")
            return None, "corrupt", problems
        if plan.record is None:
            problems.append(f"record {record['seq']}: a poll event was journaled")
            return None, "corrupt", problems
        if plan.record["status"] != record.get("status"):
            problems.append(f"record {record['seq']}: status {record.get('status')!r}, "
                            f"replay says {plan.record['status']!r}")  # fmt: skip
        if _strip_ids(plan.record["commands"]) != _strip_ids(commands):
            problems.append(f"record {record['seq']}: commands differ from the replay")
        state = replace(plan.state, outbox=outbox)
    return state, state.status, problems


def _sagas(src: ReplaySources, live: LiveState, out: ReplayReport) -> None:
    ids = sorted(set(src.journal) | set(live.snapshots))
    for saga_id in ids:
        snap = live.snapshots.get(saga_id)
        records = src.journal.get(saga_id, ())
        what = f"saga {saga_id}"
        if snap is None:
            out.differences.append(Difference("sagas", what, "a snapshot", "none"))
        elif is_pruned(snap):
            # Its records were dropped by retention: the outcome is the snapshot's.
            status = str(snap.get("status"))
            out.saga_outcomes[status] = out.saga_outcomes.get(status, 0) + 1
            out.pruned_sagas += 1
            if records:
                out.differences.append(Difference("sagas", f"{what} journal", "pruned: no records",
                                                  f"{len(records)} records"))  # fmt: skip
            continue
        kind = src.saga_kinds.get(saga_id) or (snap or {}).get("kind") or ""
        if snap is not None and snap.get("kind") != kind:
            out.differences.append(Difference("sagas", f"{what} kind", kind, str(snap.get("kind"))))
        state, status, problems = replay_saga(saga_id, kind, records)
        out.saga_outcomes[status] = out.saga_outcomes.get(status, 0) + 1
        for problem in problems:
            if problem.startswith("kind "):
                out.notes.append(f"{what}: {problem}: status from its last record")
            else:
                out.differences.append(Difference("sagas", f"{what} journal", "consistent",
                                                  problem))  # fmt: skip
        if snap is None:
            continue
        if state is None:
            if status != snap.get("status"):
                out.differences.append(Difference("sagas", f"{what} status", status,
                                                  str(snap.get("status"))))  # fmt: skip
            continue
        expected = state.to_dict()
        for name in sorted(set(expected) | set(snap)):
            if name in _SAGA_SKIP or expected.get(name) == _plain(snap.get(name)):
                continue
            out.differences.append(Difference("sagas", f"{what} {name}",
                                              _show(expected.get(name)),
                                              _show(snap.get(name))))  # fmt: skip
    out.sagas = len(ids)


def _plain(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 160 else text[:157] + "..."


# --- the diff ---------------------------------------------------------------------------


def _diff_positions(
    expected: Mapping[str, PositionState],
    applied: Mapping[str, set[str]],
    live: LiveState,
    out: ReplayReport,
) -> None:
    for symbol in sorted(set(expected) | set(live.positions)):
        want = expected.get(symbol) or PositionState(symbol)
        have = live.positions.get(symbol) or PositionState(symbol)
        for name in _POSITION_FIELDS:
            a, b = getattr(want, name), getattr(have, name)
            if a != b:
                out.differences.append(Difference("positions", f"position {symbol} {name}",
                                                  str(a), str(b)))  # fmt: skip
        ours, theirs = applied.get(symbol, set()), live.position_fills.get(symbol, frozenset())
        for tid in sorted(ours - theirs):
            out.differences.append(Difference("positions", f"position {symbol} trade {tid}",
                                              "applied", "no fill marker"))  # fmt: skip
        for tid in sorted(theirs - ours):
            out.differences.append(Difference("positions", f"position {symbol} trade {tid}",
                                              "no such fill in the records or the order log",
                                              "applied"))  # fmt: skip


def _diff_balances(
    expected: Mapping[str, tuple[Decimal, Decimal]], live: LiveState, out: ReplayReport
) -> None:
    for account in sorted(set(expected) | set(live.balances)):
        want = expected.get(account, (ZERO, ZERO))
        have = live.balances.get(account)
        if have is None:
            if want != (ZERO, ZERO):
                out.differences.append(Difference("ledger", f"ledger balance {account}",
                                                  _balance(want), "no balance record"))  # fmt: skip
            continue
        if want != have:
            out.differences.append(Difference("ledger", f"ledger balance {account}",
                                              _balance(want), _balance(have)))  # fmt: skip


def _balance(pair: tuple[Decimal, Decimal]) -> str:
    return f"value {pair[0]}, quantity {pair[1]}"


def replay(sources: ReplaySources, live: LiveState) -> ReplayReport:
    """Rebuild from ``sources`` and diff against ``live`` (pure)."""
    out = ReplayReport()
    fills = _collect_fills(sources, out)
    for key, fill in sorted(fills.items()):
        reason = _sink_refuses(fill)
        if reason is not None:  # the live sink refuses it too (dead-lettered there)
            out.notes.append(f"trade {key[1]} ({key[0]}) not applied: {reason}")
            del fills[key]
    expected_positions, applied = _positions(fills, sources)
    _diff_positions(expected_positions, applied, live, out)
    _diff_balances(_ledger(fills, sources, out), live, out)
    _sagas(sources, live, out)
    out.fills = len(fills)
    out.positions = len(set(expected_positions) | set(live.positions))
    return out
