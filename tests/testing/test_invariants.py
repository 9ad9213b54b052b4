"""Each invariant checker holds on a healthy node and fails, naming what broke, on a bad one."""

from __future__ import annotations

import json
import threading
from decimal import Decimal
from typing import Any

import ccxt
import msgpack
import pytest

from phalanx import Actor, ActorSystem
from phalanx.actors import TradingNode
from phalanx.actors.order import client_order_id, intent_prefix
from phalanx.actors.venue import PaperVenue
from phalanx.storage import Fill, Ledger
from phalanx.storage._journal import SagaJournal
from phalanx.storage._positions import PositionStore
from phalanx.testing import (
    INVARIANTS,
    InvariantViolation,
    assert_conservation,
    assert_ledger_balanced,
    assert_no_duplicate_intents,
    check_all,
    check_conservation,
    check_counters,
    check_ledger_balanced,
    check_ledger_matches_venue,
    check_no_duplicate_intents,
    check_positions_match_fills,
    check_sagas_terminal,
)


class Gate(Actor):
    """Blocks its handler until the test opens the gate (a message stays in flight)."""

    def on_start(self) -> None:
        self.entered = threading.Event()
        self.gate = threading.Event()

    def on_receive(self, message: Any) -> Any:
        if message == "block":
            self.entered.set()
            self.gate.wait(10.0)
            return None
        if message == "ping":
            return "pong"
        return super().on_receive(message)


# --- conservation -------------------------------------------------------------------


def test_conservation_holds_once_every_message_is_handled_or_dead_lettered(
    actor_system: ActorSystem,
) -> None:
    ref = actor_system.spawn(Gate, "/gate")
    for _ in range(20):
        ref.tell("ping")
    ref.tell({"unknown": True})  # dead-lettered validation_failed
    assert ref.ask("ping") == "pong"
    result = assert_conservation(actor_system)
    assert result.ok
    assert result.details["gap"] == 0
    assert result.details["dead_lettered"] >= 1


def test_conservation_fails_while_a_message_is_in_flight_and_names_the_gap(
    actor_system: ActorSystem,
) -> None:
    ref = actor_system.spawn(Gate, "/gate")
    ref.tell("block")
    actor = actor_system._cell("/gate").actor
    assert isinstance(actor, Gate)
    assert actor.entered.wait(5.0)
    result = check_conservation(actor_system, timeout=0.05)
    assert not result.ok
    assert result.details["gap"] == 1
    assert "1 message(s) neither handled" in result.details["violation"]
    with pytest.raises(InvariantViolation, match="conservation"):
        assert_conservation(actor_system, timeout=0.05)
    actor.gate.set()
    assert check_conservation(actor_system, timeout=5.0).ok


# --- no duplicate intents -------------------------------------------------------------


def _place(venue: PaperVenue, client_id: str) -> None:
    exchange = ccxt.binance(venue.ccxt_config())
    exchange.create_order("BTC/USDT", "market", "buy", 0.001, params={"clientOrderId": client_id})


def test_two_venue_orders_of_one_intent_are_named_with_their_client_ids(
    paper_venue: PaperVenue,
) -> None:
    first, second = client_order_id("intent-7", 0), client_order_id("intent-7", 1)
    _place(paper_venue, client_order_id("intent-8", 0))
    _place(paper_venue, first)
    assert check_no_duplicate_intents(paper_venue, ["intent-7", "intent-8"]).ok
    _place(paper_venue, second)  # a second generation was sent although the first exists
    _place(paper_venue, "manual-order-1")  # not ours: counted, not judged
    result = check_no_duplicate_intents(paper_venue, ["intent-7", "intent-8"])
    assert not result.ok
    assert result.details["duplicates"] == {"intent-7": [first, second]}
    assert result.details["foreign"] == 1
    assert "intent-7" in result.details["violation"]
    # Without the intent names, the prefix names it; plain data works as well as the venue.
    by_prefix = check_no_duplicate_intents(list(paper_venue.engine.accepted))
    assert by_prefix.details["duplicates"] == {intent_prefix("intent-7"): [first, second]}
    with pytest.raises(InvariantViolation, match="intent-7"):
        assert_no_duplicate_intents(paper_venue, ["intent-7"])


def test_a_filled_client_id_accepted_again_is_a_duplicate(paper_venue: PaperVenue) -> None:
    # Blind resend: once a market order filled, the venue accepts its client id again.
    cid = client_order_id("intent-9", 0)
    _place(paper_venue, cid)
    _place(paper_venue, cid)
    result = check_no_duplicate_intents(paper_venue, ["intent-9"])
    assert result.details["duplicates"] == {"intent-9": [cid, cid]}


# --- sagas terminal --------------------------------------------------------------------


def _journal_saga(system: ActorSystem, saga_id: str, status: str) -> None:
    journal = SagaJournal(system.storage)
    journal.commit(journal.snapshot_op(saga_id, {"saga_id": saga_id, "status": status},
                                       active=status == "running"))  # fmt: skip


def test_sagas_not_completed_or_compensated_are_named(actor_system: ActorSystem) -> None:
    _journal_saga(actor_system, "done-1", "completed")
    _journal_saga(actor_system, "undone-1", "compensated")
    assert check_sagas_terminal(actor_system).ok
    _journal_saga(actor_system, "stuck-1", "running")
    _journal_saga(actor_system, "broken-1", "compensation_failed")
    result = check_sagas_terminal(actor_system, saga_ids=["done-1", "never-journaled"])
    assert not result.ok
    assert result.details["not_terminal"] == {
        "broken-1": "compensation_failed",
        "never-journaled": "missing",
        "stuck-1": "running",
    }
    assert result.details["statuses"]["completed"] == 1


# --- ledger ----------------------------------------------------------------------------


def _fill(fill_id: str, qty: str = "0.01") -> Fill:
    return Fill(fill_id, "buy", "BTC", "USDT", Decimal(qty), Decimal("43000"), Decimal("0.43"))


def test_a_corrupted_ledger_is_not_balanced_and_names_the_difference(
    actor_system: ActorSystem,
) -> None:
    ledger = Ledger(actor_system.storage)
    ledger.post_fill(_fill("t-1"))
    assert assert_ledger_balanced(actor_system).ok
    db = actor_system.storage.db("ledger")
    bad = msgpack.packb(
        {"key": "bad", "memo": "", "postings": [["assets:BTC", "debit", "5", "1"]]},
        use_bin_type=True,
    )
    actor_system.storage.write_now(lambda txn: txn.put(b"bad", bad, db=db))
    result = check_ledger_balanced(ledger)
    assert not result.ok
    assert Decimal(result.details["difference"]) == 5
    assert "debits - credits = 5" in result.details["violation"]


def test_ledger_matches_venue_after_reconciliation_and_names_the_drifting_asset(
    trading_node: TradingNode, paper_venue: PaperVenue
) -> None:
    assert check_ledger_matches_venue(trading_node.system, paper_venue).ok
    trading_node.ledger.post_fill(_fill("phantom-1"))  # a fill the venue never made
    result = check_ledger_matches_venue(trading_node.system, paper_venue)
    assert not result.ok
    assert result.details["differences"]["BTC"] == "0.01"
    assert Decimal(result.details["differences"]["USDT"]) == Decimal("-430.43")
    assert "BTC: ledger - venue = 0.01" in result.details["violation"]


def test_positions_equal_venue_fills_until_a_fill_is_invented(
    trading_node: TradingNode, paper_venue: PaperVenue
) -> None:
    _place(paper_venue, client_order_id("direct-1", 0))  # a venue fill no position has seen
    result = check_positions_match_fills(trading_node.system, paper_venue)
    assert not result.ok
    assert result.details["gaps"] == {"BTC/USDT": "-0.001"}
    store = PositionStore(trading_node.system.storage)
    store.apply_fill("BTC/USDT", "t-x", "buy", Decimal("0.001"), Decimal("43000"), Decimal(0))
    assert check_positions_match_fills(trading_node.system, paper_venue).ok


# --- the verdict -------------------------------------------------------------------------


def test_check_all_on_a_fresh_trading_node_passes_and_is_json(
    trading_node: TradingNode, paper_venue: PaperVenue
) -> None:
    verdict = check_all(trading_node.system, paper_venue)
    assert verdict.ok, verdict.violations
    assert list(verdict.invariants) == list(INVARIANTS)
    doc = json.loads(verdict.dumps())
    assert doc["ok"] is True
    assert set(doc["invariants"]["ledger_balanced"]) == {"ok", "details"}


def test_check_all_names_each_violated_invariant(
    trading_node: TradingNode, paper_venue: PaperVenue
) -> None:
    trading_node.ledger.post_fill(_fill("phantom-2"))
    _journal_saga(trading_node.system, "stuck-2", "running")
    verdict = check_all(trading_node.system, paper_venue)
    assert not verdict.ok
    assert set(verdict.violations) == {"ledger_matches_venue", "sagas_terminal"}
    assert json.loads(verdict.dumps())["invariants"]["sagas_terminal"]["ok"] is False
    with pytest.raises(AssertionError, match="stuck-2"):
        verdict.check()
    skipped = check_all(trading_node.system, paper_venue,
                        skip=["ledger_matches_venue", "sagas_terminal"])  # fmt: skip
    assert skipped.ok


def test_check_all_refuses_an_unknown_invariant_name(actor_system: ActorSystem) -> None:
    with pytest.raises(ValueError, match="ledger_balance"):
        check_all(actor_system, skip=["ledger_balance"])


def test_a_counters_reading_from_outside_is_judged_the_same_way() -> None:
    good = {"sent": 10, "handled": 7, "dead_lettered": 2, "queued": 1, "journaled": 0}
    assert check_counters(good).ok
    lost = check_counters({**good, "handled": 5})
    assert not lost.ok
    assert lost.details["gap"] == 2
    twice = check_counters({**good, "handled": 9})
    assert "2 message(s) counted twice" in twice.details["violation"]
