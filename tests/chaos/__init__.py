"""Chaos tests of the trading core, and the harness the trading tests share.

The harness is :mod:`phalanx.testing` itself (dogfooded): :func:`trading_node`
is ``make_system`` + ``start_trading`` with ``FAST_ORDER_OPTIONS``, and
:func:`verdict` reads DESIGN section 8's checkers (``check_*``) into the
plain dict these tests assert on.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

from phalanx.actors import TradingNode, start_trading
from phalanx.actors.venue import PaperVenue
from phalanx.runtime._config import NodeConfig
from phalanx.storage import Storage
from phalanx.storage._journal import SagaJournal
from phalanx.testing import (
    DEFAULT_ACCOUNT,
    FAST_ORDER_OPTIONS,
    VenueState,
    Verdict,
    check_ledger_balanced,
    check_ledger_matches_venue,
    check_no_duplicate_intents,
    check_positions_match_fills,
    check_sagas_terminal,
    make_system,
    trading_config,
)

ACCOUNT = DEFAULT_ACCOUNT  # the venue account behind PaperVenue.ccxt_config()
FAST_ORDERS = FAST_ORDER_OPTIONS


def node_config(*, strategy: bool = False, **exchange: Any) -> NodeConfig:
    """A node trading on the embedded venue's connection ``paper`` (no strategy by default)."""
    return trading_config(strategy=strategy, **exchange)


@contextmanager
def trading_node(
    var_dir: Path,
    venue: PaperVenue,
    *,
    config: NodeConfig | None = None,
    order_options: Mapping[str, Any] | None = None,
    risk_options: Mapping[str, Any] | None = None,
) -> Iterator[TradingNode]:
    """A started system with the trading tree; shut down (orderly) on exit."""
    with make_system(var_dir, name="trading-test") as system:
        options = {**FAST_ORDER_OPTIONS, **(order_options or {})}
        yield start_trading(
            system, config or node_config(), venue, order_options=options, risk_options=risk_options
        )


def venue_totals(venue: PaperVenue) -> dict[str, Decimal]:
    """Free + locked per asset of the test account."""
    return VenueState.of(venue, ACCOUNT).totals


def venue_fills(venue: PaperVenue, symbol: str) -> Decimal:
    """Signed sum of the account's venue fills on ``symbol`` (``BTC/USDT``)."""
    return VenueState.of(venue, ACCOUNT).fills.get(symbol, Decimal(0))


def duplicate_intents(venue: PaperVenue, saga_ids: Iterable[str]) -> dict[str, list[str]]:
    """Intents with more than one venue-accepted order, with their client ids (must stay empty)."""
    result = check_no_duplicate_intents(venue, list(saga_ids), account=ACCOUNT)
    duplicates: dict[str, list[str]] = result.details["duplicates"]
    return duplicates


def verdict_of(
    source: TradingNode | Storage,
    venue: PaperVenue,
    saga_ids: list[str],
) -> dict[str, Any]:
    """DESIGN section 8 via phalanx.testing's checkers, as the dict these tests assert on.

    ``statuses`` counts ``saga_ids`` by journaled status (``missing`` if never
    journaled); ``verdict`` is the full :class:`Verdict` (for messages).
    """
    store = source.system.storage if isinstance(source, TradingNode) else source
    state = VenueState.of(venue, ACCOUNT)
    journaled = {str(s["saga_id"]): str(s.get("status")) for s in SagaJournal(store).snapshots()}
    statuses: dict[str, int] = {}
    for saga_id in saga_ids:
        status = journaled.get(saga_id, "missing")
        statuses[status] = statuses.get(status, 0) + 1
    results = [
        check_no_duplicate_intents(state, saga_ids, account=ACCOUNT),
        check_sagas_terminal(store, saga_ids),
        check_ledger_balanced(store),
        check_ledger_matches_venue(store, state, account=ACCOUNT),
        check_positions_match_fills(store, state, account=ACCOUNT),
    ]
    by_name = {r.name: r for r in results}
    return {
        "duplicates": by_name["no_duplicate_intents"].details["duplicates"],
        "statuses": statuses,
        "trial_difference": Decimal(by_name["ledger_balanced"].details["difference"]),
        "ledger_vs_venue": by_name["ledger_matches_venue"].details["differences"],
        "position_gap": by_name["positions_match_fills"].details["gaps"],
        "verdict": Verdict.of(results),
    }


def verdict(node: TradingNode, venue: PaperVenue, saga_ids: list[str]) -> dict[str, Any]:
    """DESIGN section 8 on the trading core: what chaos must never break."""
    return verdict_of(node, venue, saga_ids)
