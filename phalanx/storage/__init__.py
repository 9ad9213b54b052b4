"""Storage: the node's LMDB environment and the stores built on it (DESIGN section 5)."""

from __future__ import annotations

from phalanx.storage._deadletters import REASONS, DeadLetter, DeadLetterStore, Deliver
from phalanx.storage._env import Storage, Txn

__all__ = ["REASONS", "DeadLetter", "DeadLetterStore", "Deliver", "Storage", "Txn"]
