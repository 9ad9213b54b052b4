"""``phalanx.testing``: tools for your own chaos tests (DESIGN section 8).

- pytest fixtures ``actor_system``, ``paper_venue``, ``trading_node``: add
  ``pytest_plugins = ["phalanx.testing.fixtures"]`` to your ``conftest.py``;
- :class:`ChaosMonkey`: kills actors matching path globs on a seeded schedule;
- invariant checkers, each ``check_*`` (an :class:`InvariantResult`) and
  ``assert_*``: conservation, no duplicate intents, sagas terminal, ledger
  balanced, ledger matches venue, positions match fills; :func:`check_all`
  gives a JSON-serialisable :class:`Verdict`;
- :class:`ActorProtocolMachine`: a hypothesis ``RuleBasedStateMachine`` base
  that owns an :class:`~phalanx.ActorSystem` per example;
- campaigns: :func:`plan_campaign` (pure, seeded) and :func:`run_campaign`
  against a :class:`Driver` (:class:`InProcessDriver` in this process;
  :class:`SocketDriver`, behind ``phalanx chaos``, drives a ``phalanx run``
  node over its control socket, SIGKILLs and restarts it).

Needs the ``dev`` extras (pytest, hypothesis). ``ActorProtocolMachine`` and
the fixtures import them only when used, so the campaign and the checkers
work without them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from phalanx.testing._campaign_plan import (
    ACTION_KINDS,
    FAULT_MIX,
    ChaosAction,
    fault_body,
    plan_campaign,
)
from phalanx.testing._campaign_run import ChaosUnsupported, Driver, run_campaign
from phalanx.testing._check_books import (
    check_ledger_balanced,
    check_ledger_matches_venue,
    check_positions_match_fills,
)
from phalanx.testing._check_conservation import check_conservation, check_counters
from phalanx.testing._check_orders import check_no_duplicate_intents, check_sagas_terminal
from phalanx.testing._driver import InProcessDriver
from phalanx.testing._harness import FAST_ORDER_OPTIONS, make_system, trading_config
from phalanx.testing._invariant_result import (
    DEFAULT_ACCOUNT,
    InvariantResult,
    InvariantViolation,
)
from phalanx.testing._monkey import ChaosMonkey, Kill, choose_target, matching
from phalanx.testing._socket_driver import SocketDriver
from phalanx.testing._venue_state import VenueState
from phalanx.testing._verdict import (
    INVARIANTS,
    Verdict,
    assert_conservation,
    assert_ledger_balanced,
    assert_ledger_matches_venue,
    assert_no_duplicate_intents,
    assert_positions_match_fills,
    assert_sagas_terminal,
    check_all,
)

if TYPE_CHECKING:
    from phalanx.testing._stateful import ActorProtocolMachine

__all__ = [
    "ACTION_KINDS",
    "DEFAULT_ACCOUNT",
    "FAST_ORDER_OPTIONS",
    "FAULT_MIX",
    "INVARIANTS",
    "ActorProtocolMachine",
    "ChaosAction",
    "ChaosMonkey",
    "ChaosUnsupported",
    "Driver",
    "InProcessDriver",
    "InvariantResult",
    "InvariantViolation",
    "Kill",
    "SocketDriver",
    "VenueState",
    "Verdict",
    "assert_conservation",
    "assert_ledger_balanced",
    "assert_ledger_matches_venue",
    "assert_no_duplicate_intents",
    "assert_positions_match_fills",
    "assert_sagas_terminal",
    "check_all",
    "check_conservation",
    "check_counters",
    "check_ledger_balanced",
    "check_ledger_matches_venue",
    "check_no_duplicate_intents",
    "check_positions_match_fills",
    "check_sagas_terminal",
    "choose_target",
    "fault_body",
    "make_system",
    "matching",
    "plan_campaign",
    "run_campaign",
    "trading_config",
]


def __getattr__(name: str) -> Any:
    """Import :class:`ActorProtocolMachine` (it needs hypothesis) on first use."""
    if name == "ActorProtocolMachine":
        return importlib.import_module("phalanx.testing._stateful").ActorProtocolMachine
    raise AttributeError(f"module 'phalanx.testing' has no attribute {name!r}")
