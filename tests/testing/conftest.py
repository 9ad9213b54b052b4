"""The phalanx.testing fixtures, used by the tests of the module itself (dogfooding).

A user loads them with ``pytest_plugins = ["phalanx.testing.fixtures"]`` in a
root conftest; a non-root conftest may not set ``pytest_plugins``, so this
one imports them.
"""

from phalanx.testing.fixtures import actor_system, paper_venue, trading_node

__all__ = ["actor_system", "paper_venue", "trading_node"]
