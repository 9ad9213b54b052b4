"""The journaled snapshot of a saga state, packed incrementally and byte for byte.

msgpack writes a map as its header followed by each key and value in order,
so ``msgpack.packb(state.to_dict())`` is the concatenation of the packed
pieces. :class:`SnapshotPacker` keeps the pieces that cannot have changed:
the fields fixed for a saga's life (``v``, ``saga_id``, ``kind``, ``input``)
and each step's row while its :class:`StepState` is the same object (step
states are immutable, and a transition replaces only the steps it changes).
Measured on a buy saga's state after five steps (~1 KB), two rows changed
per state as in consecutive commits: ~40% less than ``to_dict`` + ``packb``
(e.g. 8 vs 13 µs; the VM is noisy).

Invariant (tested): ``pack(state) == msgpack.packb(state.to_dict(), use_bin_type=True)``
for every state, whatever was packed before.
"""

from __future__ import annotations

from typing import Any

import msgpack

from phalanx.actors.saga._protocol import command_to_dict
from phalanx.actors.saga._state import SagaState, StepState

__all__ = ["SnapshotPacker"]

# SagaState.to_dict's keys, in its order.
_KEYS = (
    "v", "saga_id", "kind", "input", "status", "steps", "done", "to_compensate",
    "failed_compensations", "current", "error", "seq", "outbox", "finalized", "created_at",
    "updated_at",
)  # fmt: skip
_KEY = {name: msgpack.packb(name, use_bin_type=True) for name in _KEYS}
_HEADER = msgpack.Packer(use_bin_type=True).pack_map_header(len(_KEYS))


class SnapshotPacker:
    """Packs saga states of one thread (a msgpack ``Packer`` is not thread-safe)."""

    def __init__(self) -> None:
        self._packer = msgpack.Packer(use_bin_type=True)  # the options of the journal's packb
        self._head: tuple[str, str, Any, bytes] | None = None  # saga_id, kind, input, bytes
        self._rows: dict[str, tuple[StepState, bytes]] = {}

    def pack(self, state: SagaState) -> bytes:
        """``msgpack.packb(state.to_dict(), use_bin_type=True)``, from the cached pieces."""
        pack, key = self._packer.pack, _KEY
        head = self._head
        if (
            head is None
            or head[2] is not state.input  # identity: an equal dict may order its keys otherwise
            or head[0] != state.saga_id
            or head[1] != state.kind
        ):
            head = self._head = (state.saga_id, state.kind, state.input, b"".join((
                _HEADER, key["v"], pack(1), key["saga_id"], pack(state.saga_id),
                key["kind"], pack(state.kind), key["input"], pack(dict(state.input)),
            )))  # fmt: skip
        # A list's items pack as a map's keys and values do: one pack call for
        # many fields, less the list header (1 byte for 3 items, 3 for 20).
        parts = [head[3], pack(["status", state.status, "steps"])[1:],
                 self._packer.pack_map_header(len(state.steps))]  # fmt: skip
        rows = self._rows
        for name, s in state.steps.items():
            cached = rows.get(name)
            if cached is None or cached[0] is not s:
                row = [s.status, s.attempt, s.comp_attempt, s.deadline, s.result, s.error,
                       s.comp_deadline]  # fmt: skip
                cached = rows[name] = (s, pack([name, row])[1:])
            parts.append(cached[1])
        tail = pack([
            "done", list(state.done), "to_compensate", list(state.to_compensate),
            "failed_compensations", list(state.failed_compensations), "current", state.current,
            "error", state.error, "seq", state.seq,
            "outbox", [command_to_dict(c) for c in state.outbox], "finalized", state.finalized,
            "created_at", state.created_at, "updated_at", state.updated_at,
        ])  # fmt: skip
        parts.append(tail[3:])
        return b"".join(parts)
