"""Replay: rebuild positions, ledger balances and saga outcomes from the records, then diff.

Pure part of ``phalanx replay`` (the CLI in ``phalanx/cli/_replay.py`` reads
LMDB and the logs into :class:`ReplaySources` and :class:`LiveState`). The
rebuild never reads derived state for values:

- fills (``_replay_fills.py``): the order records' and the order log's,
  each once, cross-checked against each other;
- positions and balances (``_replay_books.py``): the fills folded through
  the position model and posted as the fill sink posts them;
- saga outcomes (``_replay_sagas.py``): each saga's journaled events fed
  through :func:`~phalanx.actors.saga.advance`, never from its snapshot.

:func:`replay` returns a :class:`ReplayReport` (``_replay_model.py``) whose
``differences`` are empty when the live state matches. Fills the sink
refuses (a negative fee, a base fee a buy cannot pay) are expected nowhere,
as the live sink would refuse them too.
"""

from __future__ import annotations

from phalanx.actors._replay_books import (
    _diff_balances,
    _diff_positions,
    _ledger,
    _positions,
    _sink_refuses,
)
from phalanx.actors._replay_fills import _collect_fills
from phalanx.actors._replay_model import LiveState, ReplayReport, ReplaySources
from phalanx.actors._replay_sagas import _sagas

__all__ = ["replay"]


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
