"""Storage: the node's LMDB environment and the stores built on it (DESIGN section 5)."""

from __future__ import annotations

from phalanx.storage._deadletters import REASONS, DeadLetter, DeadLetterStore, Deliver
from phalanx.storage._env import Storage, Txn
from phalanx.storage._journal_prune import JournalPrune, prune_journal
from phalanx.storage._ledger import Fill, Ledger, Posting, Transaction, plan_fill, plan_opening

__all__ = [
    "REASONS",
    "DeadLetter",
    "DeadLetterStore",
    "Deliver",
    "Fill",
    "JournalPrune",
    "Ledger",
    "Posting",
    "Storage",
    "Transaction",
    "Txn",
    "plan_fill",
    "plan_opening",
    "prune_journal",
]
