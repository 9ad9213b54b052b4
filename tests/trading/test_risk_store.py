"""RiskStore reservations as a state machine: idempotent by id, never above free balance."""

from __future__ import annotations

import shutil
import tempfile
from decimal import Decimal
from pathlib import Path

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from phalanx.storage import Storage
from phalanx.storage._risk import RiskStore

D = Decimal
FREE = D(1000)
IDS = st.sampled_from([f"r-{i}" for i in range(6)])
AMOUNTS = st.integers(1, 600).map(D)


class Reservations(RuleBasedStateMachine):
    """The store against a dict model, across reopenings of the LMDB file."""

    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="risk-store-"))
        self.storage = Storage(self.dir / "db", sync=False)
        self.store = RiskStore(self.storage)
        self.held: dict[str, D] = {}
        self.released: set[str] = set()

    @rule(rid=IDS, amount=AMOUNTS)
    def reserve(self, rid: str, amount: D) -> None:
        result = self.store.reserve(rid, "USDT", amount, FREE)
        if rid in self.held:
            assert (result.outcome, result.amount) == ("existing", self.held[rid])
        elif rid in self.released:
            assert result.outcome == "released"
        elif sum(self.held.values(), D(0)) + amount > FREE:
            assert result.outcome == "short"
        else:
            assert result.outcome == "held"
            self.held[rid] = amount

    @rule(rid=IDS)
    def release(self, rid: str) -> None:
        assert self.store.release(rid) == (rid in self.held)
        if rid in self.held:
            del self.held[rid]
            self.released.add(rid)

    @rule()
    def reopen(self) -> None:
        self.storage.close()
        self.storage = Storage(self.dir / "db", sync=False)
        self.store = RiskStore(self.storage)

    @invariant()
    def matches_the_model(self) -> None:
        rec = self.store.load()
        assert rec.held == {rid: ("USDT", amount) for rid, amount in self.held.items()}
        assert sum(a for _, a in rec.held.values()) <= FREE

    def teardown(self) -> None:
        self.storage.close()
        shutil.rmtree(self.dir, ignore_errors=True)


TestReservations = Reservations.TestCase
TestReservations.settings = settings(max_examples=30, stateful_step_count=25, deadline=None)
