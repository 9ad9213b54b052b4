"""pytest fixtures: an ActorSystem in a tmp var dir, an embedded venue, a trading node.

Load them in a ``conftest.py`` with ``pytest_plugins = ["phalanx.testing.fixtures"]``.
Each fixture cleans up after itself (systems shut down, venues stopped), so
no phalanx thread outlives the test.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from phalanx.actors import TradingNode, start_trading
from phalanx.actors.venue import PaperVenue
from phalanx.runtime import ActorSystem
from phalanx.testing._harness import FAST_ORDER_OPTIONS, make_system, trading_config

__all__ = ["actor_system", "paper_venue", "trading_node"]


@pytest.fixture
def actor_system(tmp_path: Path) -> Iterator[ActorSystem]:
    """A started :class:`ActorSystem` in ``tmp_path / "var"`` (``sync=False``), shut down after."""
    with make_system(tmp_path / "var") as system:
        yield system


@pytest.fixture
def paper_venue() -> Iterator[PaperVenue]:
    """An embedded :class:`PaperVenue` on a free 127.0.0.1 port (prices step every 10 ms)."""
    with PaperVenue(seed=7, auto_step_s=0.01) as venue:
        yield venue


@pytest.fixture
def trading_node(paper_venue: PaperVenue, actor_system: ActorSystem) -> Iterator[TradingNode]:
    """``start_trading`` on ``actor_system`` against ``paper_venue`` (no strategy, fast polls).

    Reconciled and ``active`` when it is handed over; the system shuts down
    before the venue stops.
    """
    node = start_trading(
        actor_system, trading_config(), paper_venue, order_options=FAST_ORDER_OPTIONS
    )
    yield node
    actor_system.shutdown()
