"""The paper venue: a Binance-dialect matching engine on 127.0.0.1 for ccxt."""

from phalanx.actors.venue._engine import MatchingEngine
from phalanx.actors.venue._faults import FAULT_KINDS, Fault
from phalanx.actors.venue._market import Market, VenueError
from phalanx.actors.venue._venue import PaperVenue, venue_ccxt_config

__all__ = [
    "FAULT_KINDS",
    "Fault",
    "Market",
    "MatchingEngine",
    "PaperVenue",
    "VenueError",
    "venue_ccxt_config",
]
