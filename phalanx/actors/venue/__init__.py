"""The paper venue: a Binance-dialect matching engine on 127.0.0.1 for ccxt."""

from phalanx.actors.venue._engine import Market, MatchingEngine, VenueError
from phalanx.actors.venue._http import FAULT_KINDS, Fault, PaperVenue

__all__ = ["FAULT_KINDS", "Fault", "Market", "MatchingEngine", "PaperVenue", "VenueError"]
