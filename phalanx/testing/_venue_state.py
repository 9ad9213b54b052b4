"""What the venue says happened, as plain data: for checks from inside or outside the node.

:meth:`VenueState.of` reads an embedded :class:`PaperVenue` directly;
:meth:`VenueState.fetch` asks a running one over HTTP (its admin API for the
accepted orders and balances, ccxt's ``fetch_my_trades`` for the fills), so
a driver outside the node's process (``phalanx chaos``) checks the same facts.
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import ccxt

from phalanx.actors.venue import PaperVenue, venue_ccxt_config

__all__ = ["VenueState"]

ZERO = Decimal(0)
DEFAULT_SECRET = "paper-secret"  # the embedded venue's built-in paper account, not a credential


def _trade(symbol: str, raw: Mapping[str, Any]) -> tuple[str, str, bool, str]:
    """(symbol, qty, is_buy, fee paid in the base) of one Binance ``myTrades`` entry."""
    in_base = raw.get("commissionAsset") == symbol.split("/", 1)[0]
    return symbol, str(raw["qty"]), bool(raw["isBuyer"]), str(raw["commission"]) if in_base else "0"


def _signed_fills(trades: list[tuple[str, str, bool, str]]) -> dict[str, Decimal]:
    # Net of fees paid in the base: a buy of q with fee f leaves q - f, a sell takes q + f.
    out: dict[str, Decimal] = {}
    for symbol, qty, is_buy, base_fee in trades:
        held = Decimal(qty) - Decimal(base_fee) if is_buy else -Decimal(qty) - Decimal(base_fee)
        out[symbol] = out.get(symbol, ZERO) + held
    return out


@dataclass(frozen=True)
class VenueState:
    """The venue's side of the invariants, for one account.

    ``accepted``: every order it ever accepted (``clientOrderId`` ...);
    ``totals``: free + locked per asset; ``fills``: signed filled quantity
    per ccxt symbol (``BTC/USDT``), net of fees paid in the base asset (what
    the account holds, and what a position holds).
    """

    accepted: Sequence[Mapping[str, Any]]
    totals: dict[str, Decimal]
    fills: dict[str, Decimal]

    @classmethod
    def of(cls, venue: PaperVenue, account: str = "paper-key") -> VenueState:
        """Read the embedded venue's engine directly."""
        engine = venue.engine
        totals = {
            asset: Decimal(v["free"]) + Decimal(v["locked"])
            for asset, v in engine.balances(account).items()
        }
        trades = [
            _trade(f"{m.base}/{m.quote}", t)
            for m in engine.markets()
            for t in engine.my_trades(account, m.symbol)
        ]
        accepted = [o for o in engine.accepted if o.get("account", account) == account]
        return cls(accepted, totals, _signed_fills(trades))

    @classmethod
    def fetch(
        cls,
        url: str,
        account: str = "paper-key",
        secret: str = DEFAULT_SECRET,
        *,
        timeout: float = 10.0,
    ) -> VenueState:
        """Ask a running paper venue at ``url`` (``http://127.0.0.1:PORT``) over HTTP."""
        base = url.rstrip("/")

        def admin(path: str) -> Any:
            with urllib.request.urlopen(f"{base}{path}", timeout=timeout) as reply:
                return json.loads(reply.read())

        accepted = [o for o in admin("/__venue/orders") if o.get("account", account) == account]
        balances = admin("/__venue/balances").get(account, {})
        totals = {a: Decimal(v["free"]) + Decimal(v["locked"]) for a, v in balances.items()}
        exchange = ccxt.binance(
            {**venue_ccxt_config(base, account, secret), "timeout": int(timeout * 1000)}
        )
        trades = []
        for symbol in exchange.load_markets():
            for t in exchange.fetch_my_trades(symbol):
                # The venue's own strings: exact, unlike ccxt's floats.
                trades.append(_trade(symbol, t["info"]))
        return cls(accepted, totals, _signed_fills(trades))
