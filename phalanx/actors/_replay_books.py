"""Replay's books: positions and ledger balances rebuilt from the fills, and their diff.

- positions fold the fills through the pure position model
  (:func:`~phalanx.actors._position_model.apply_fill`, with the net quantity
  and quote-valued fee of :func:`~phalanx.actors._position_terms.position_terms`,
  as the Position actor applies a fee in the base or a third asset), in the order the node
  applied them (the position markers' ``at``: ordering only, since average
  cost depends on it), else in venue order;
- balances are the opening transaction(s) plus :func:`plan_fill` of every
  fill (through :func:`ledger_fill_from`, as the fill sink posts them, its
  fee in whichever asset paid it).

Cross-checks: a ledger ``fill:`` transaction no fill explains, a position
marker no fill explains. ``_sink_refuses`` names the fills the live sink
refuses (a negative fee, a base fee a buy cannot pay): they are expected
nowhere.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal

from phalanx.actors._ledger_actor import ledger_fill_from
from phalanx.actors._position_model import PositionState, apply_fill
from phalanx.actors._position_terms import position_terms
from phalanx.actors._replay_model import Difference, LiveState, ReplayReport, ReplaySources, _short
from phalanx.errors import PhalanxError
from phalanx.protocols.trading import OrderFill
from phalanx.storage import Posting, Transaction, plan_fill

__all__: list[str] = []

ZERO = Decimal(0)
_INF = float("inf")
_POSITION_FIELDS = ("quantity", "average_entry", "realized_pnl", "fees", "fills")


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
