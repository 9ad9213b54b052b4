"""What an :class:`ActorSystem` shows about its actors: stats, inspect, tree, counters.

Read-only: nothing here changes a cell or the registry (the tree and the
counters read the registry under the system lock).
Invariant (conservation, ``counters``): sent = handled + dead_lettered +
queued + journaled (+ in flight); the counts of stopped cells are folded
into the ``_retired_*`` totals when they retire, so nothing drops out.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from phalanx.runtime._cell import ActorCell
from phalanx.runtime._system_node import _Node

if TYPE_CHECKING:
    from phalanx.supervision._supervisor import Supervisor

__all__: list[str] = []


class _SystemViews(_Node):
    """Views of :class:`ActorSystem`, and ``_cell``: the cell at a path or LookupError."""

    # Set by ActorSystem.__init__, added to by ActorSystem._retire.
    _retired_processed: int
    _retired_offered: int
    _retired_journaled: int
    _retired_restarts: int

    def _cell(self, path: str) -> ActorCell:
        cell = self._cells.get(path)
        if cell is None:
            raise LookupError(f"no actor at {path}")
        return cell

    # --- views -------------------------------------------------------------

    def stats(self, path: str) -> dict[str, Any]:
        """Status, mailbox depth/capacity, processed, restarts, incarnation, breaker."""
        return self._cell(path).stats()

    def inspect(self, path: str) -> dict[str, Any]:
        """Stats, the actor's ``introspect()``, recent failures and queued messages."""
        cell = self._cell(path)
        actor = cell.actor
        try:
            state = actor.introspect() if actor is not None else None
        except Exception as exc:
            state = {"introspect_error": repr(exc)}
        return {
            **cell.stats(),
            "state": state,
            "recent_failures": list(cell.recent_failures),
            "queued": [
                {"message_id": e.message_id, "message": repr(e.message)[:200], "attempt": e.attempt}
                for e in cell.inbox.snapshot()
            ],
        }

    def tree(self) -> dict[str, Any]:
        """The supervision tree as a nested dict: path, kind, strategy, status, children."""
        # Imported here, once per tree: supervision's actors build on this
        # package, so a module-level import makes importing
        # phalanx.supervision._core (or any module it pulls in) first in a
        # fresh interpreter a circular import.
        from phalanx.supervision._supervisor import Supervisor  # noqa: PLC0415

        with self._lock:
            top = [c for c in self._cells.values() if c.parent is self._root]
            top.sort(key=lambda c: self._spawn_order.get(c.path, 0))
        return {
            "path": "/",
            "kind": "supervisor",
            "strategy": "root",
            "status": "stopped" if self._closed else "running",
            "children": [self._subtree(cell, Supervisor) for cell in top],
        }

    def _subtree(self, cell: ActorCell, supervisor: type[Supervisor]) -> dict[str, Any]:
        node = {**cell.stats(), "kind": "actor", "children": []}
        actor = cell.actor
        if isinstance(actor, supervisor):
            node.update(
                kind="supervisor",
                strategy=actor.strategy,
                intensity=actor.introspect()["intensity"],
                period=actor.introspect()["period"],
            )
            for child in actor.children_view():
                child_cell = self._cells.get(child["path"])
                if child_cell is not None:
                    node["children"].append(self._subtree(child_cell, supervisor))
                else:
                    node["children"].append(
                        {
                            "path": child["path"],
                            "kind": child["type"],
                            "status": child["status"],
                            "children": [],
                        }
                    )
        return node

    def counters(self) -> dict[str, int]:
        """Conservation: sent = handled + dead_lettered + queued + journaled (+ in flight).

        ``journaled`` counts durable messages left in the journal at shutdown
        for the next boot to replay.
        """
        with self._lock:
            cells = list(self._cells.values())
            handled = self._retired_processed + sum(c.processed for c in cells)
            offered = self._retired_offered + sum(c.inbox.offered for c in cells)
        sent, dead_lettered, _ = self.post.counts()
        return {
            "sent": sent + offered,
            "handled": handled,
            "dead_lettered": dead_lettered,
            "queued": sum(len(c.inbox) for c in cells),
            "journaled": self._retired_journaled,
        }

    def totals(self) -> dict[str, Any]:
        """Run totals for this node's lifetime: restarts and dead letters by reason."""
        with self._lock:
            restarts = self._retired_restarts + sum(c.restarts for c in self._cells.values())
        return {"restarts": restarts, "dead_letters": self.post.counts()[2]}
