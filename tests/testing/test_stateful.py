"""ActorProtocolMachine on a small protocol: a bank account actor under kills and bad input."""

from __future__ import annotations

import threading
from typing import Any

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import invariant, precondition, rule

from phalanx import Actor
from phalanx.errors import UnknownMessage
from phalanx.storage import Storage
from phalanx.testing import ActorProtocolMachine


class Account(Actor):
    """Deposits and withdrawals; the balance is kept in LMDB, so it survives a kill."""

    def on_start(self) -> None:
        self.storage: Storage = self.system.storage
        self.db = self.storage.db("account")

    def _balance(self) -> int:
        raw = self.storage.read(lambda txn: txn.get(b"balance", db=self.db))
        return int(raw or b"0")

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, tuple) and message[0] in ("deposit", "withdraw"):
            kind, amount = message
            balance = self._balance()
            if kind == "withdraw" and amount > balance:
                return False  # refused: never overdraws
            new = balance + amount if kind == "deposit" else balance - amount
            self.storage.write_now(lambda txn: txn.put(b"balance", str(new).encode(), db=self.db))
            return True
        if message == "balance":
            return self._balance()
        return super().on_receive(message)


class AccountProtocol(ActorProtocolMachine):
    def __init__(self) -> None:
        super().__init__()
        self.spawn(Account, "/bank/account")
        self.model = 0
        self.kills = 0

    @rule(amount=st.integers(1, 100))
    def deposit(self, amount: int) -> None:
        assert self.ask("/bank/account", ("deposit", amount)) is True
        self.model += amount

    @rule(amount=st.integers(1, 150))
    def withdraw(self, amount: int) -> None:
        accepted = self.ask("/bank/account", ("withdraw", amount))
        assert accepted is (amount <= self.model)
        if accepted:
            self.model -= amount

    @rule()
    def garbage_is_refused_and_dead_lettered(self) -> None:
        try:
            self.ask("/bank/account", {"not": "a command"})
        except UnknownMessage:
            pass
        else:
            raise AssertionError("an unknown message was accepted")
        self.tell("/bank/account", "nonsense")  # told: dead-lettered validation_failed

    @precondition(lambda self: self.kills < 3)
    @rule()
    def crash(self) -> None:
        assert self.kill("/bank/account")
        self.kills += 1

    @invariant()
    def balance_matches_the_model(self) -> None:
        assert self.ask("/bank/account", "balance") == self.model


TestAccountProtocol = AccountProtocol.TestCase
TestAccountProtocol.settings = settings(max_examples=10, stateful_step_count=12, deadline=None)


def test_each_example_gets_a_fresh_system_and_leaves_no_thread() -> None:
    before = {t.name for t in threading.enumerate() if t.name.startswith("phalanx")}
    first, second = AccountProtocol(), AccountProtocol()
    try:
        assert first.system is not second.system
        assert first.var_dir != second.var_dir
        first.deposit(5)
        assert second.ask("/bank/account", "balance") == 0  # no state shared between examples
    finally:
        first.teardown()
        second.teardown()
    assert not first.var_dir.exists()
    after = {t.name for t in threading.enumerate() if t.name.startswith("phalanx") and t.is_alive()}
    assert after <= before
