"""The ``/exchanges`` tree of a trading node, and the per-symbol filters of its markets.

``start_exchanges`` starts one supervised connection per configured exchange
(``use_venue`` ones pointed at the embedded :class:`PaperVenue`) and returns
their :class:`ConnectionState`: the states outlive connection restarts and
carry the loaded markets, from which ``market_filters`` reads each symbol's
steps and limits (ccxt's ``precision`` and ``limits``; a missing one is None).
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from phalanx.actors.exchange import ConnectionState, connection_spec
from phalanx.actors.venue import PaperVenue
from phalanx.errors import ConfigError
from phalanx.runtime import ActorSystem
from phalanx.runtime._config import NodeConfig

__all__ = ["market_filters", "start_exchanges"]


def start_exchanges(
    system: ActorSystem, config: NodeConfig, venue: PaperVenue | None
) -> dict[str, ConnectionState]:
    """Start ``/exchanges`` with one connection per configured exchange; their states.

    ``use_venue`` connections point at the embedded venue (URLs and keys).
    The states outlive restarts and carry the loaded markets (``state.markets``).
    """
    specs, states = [], {}
    for configured in config.exchanges:
        exchange, client = configured, {}
        if exchange.use_venue:
            if venue is None:
                raise ConfigError(f"exchanges.{exchange.name}.use_venue needs [venue] enabled")
            cc = venue.ccxt_config()
            exchange = exchange.model_copy(update={"urls": cc["urls"], "options": cc["options"]})
            client = {"apiKey": cc["apiKey"], "secret": cc["secret"]}
        states[exchange.name] = ConnectionState(exchange)
        specs.append(connection_spec(exchange, client_config=client, state=states[exchange.name]))
    if specs:
        system.supervise(
            "/exchanges", strategy="one_for_one", intensity=10, period=5, children=specs
        )
    return states


def market_filters(markets: Mapping[str, Any] | None) -> dict[str, dict[str, Decimal | None]]:
    """Per symbol ``{amount_step, price_step, min_notional, min_amount, max_amount}`` (ccxt)."""
    out: dict[str, dict[str, Decimal | None]] = {}
    for symbol, m in (markets or {}).items():
        precision = m.get("precision") or {}
        limits = m.get("limits") or {}

        def dec(value: Any) -> Decimal | None:
            return None if value is None else Decimal(str(value))

        out[symbol] = {
            "amount_step": dec(precision.get("amount")),
            "price_step": dec(precision.get("price")),
            "min_notional": dec((limits.get("cost") or {}).get("min")),
            "min_amount": dec((limits.get("amount") or {}).get("min")),
            "max_amount": dec((limits.get("amount") or {}).get("max")),
        }
    return out
