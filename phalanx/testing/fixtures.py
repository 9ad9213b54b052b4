"""The pytest plugin of :mod:`phalanx.testing`: ``pytest_plugins = ["phalanx.testing.fixtures"]``.

Fixtures: ``actor_system``, ``paper_venue``, ``trading_node`` (see
:mod:`phalanx.testing._fixtures`).
"""

from phalanx.testing._fixtures import actor_system, paper_venue, trading_node

__all__ = ["actor_system", "paper_venue", "trading_node"]
