"""The seeded demo strategy: mean reversion on a handful of symbols, through sagas.

Pure part: :class:`MeanReversion` turns ticker observations into
:class:`TradeIdea` s (a limit buy below the market when the price is under its
moving average, a limit sell above it when over). Limit prices sit inside the
touch, so some orders rest and fill when the random walk crosses them and
some time out and are canceled by their saga.
I/O part: :class:`Strategy` polls tickers through the ExchangeConnection at a
bounded rate and starts one buy or sell saga per idea with a deterministic id
(``<prefix><seq>``), so the same seed and venue give the same run.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import ROUND_DOWN, Decimal
from typing import Any, Literal

import ccxt

from phalanx.errors import PhalanxError
from phalanx.protocols import Message
from phalanx.protocols.exchange import FetchTicker, Ticker
from phalanx.runtime import Actor, Timer
from phalanx.runtime._config import StrategyConfig

__all__ = [
    "MeanReversion",
    "Strategy",
    "StrategyPause",
    "StrategyState",
    "StrategyTick",
    "TradeIdea",
]

BPS = Decimal("0.0001")


@dataclass(frozen=True)
class TradeIdea:
    """One order the strategy wants: a limit ``side`` of ``amount`` at ``price``."""

    symbol: str
    side: Literal["buy", "sell"]
    amount: Decimal
    price: Decimal


@dataclass
class MeanReversion:
    """Deterministic mean reversion: same seed and prices, same ideas.

    ``tick``/``step`` per symbol quantize price and amount to the venue's
    filters (``ROUND_DOWN``, so a quantized order never exceeds its budget).
    """

    config: StrategyConfig
    tick: dict[str, Decimal]
    step: dict[str, Decimal]
    rng: random.Random = field(init=False)
    history: dict[str, deque[Decimal]] = field(init=False)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.config.seed)
        self.history = {s: deque(maxlen=self.config.window) for s in self.config.symbols}

    def observe(self, symbol: str, bid: Decimal, ask: Decimal) -> TradeIdea | None:
        """Feed one ticker; an idea when the mid strays from its moving average."""
        mid = (bid + ask) / 2
        seen = self.history[symbol]
        seen.append(mid)
        if len(seen) < seen.maxlen:  # type: ignore[operator]
            return None
        mean = sum(seen, Decimal(0)) / len(seen)
        gap = (mid - mean) / mean
        threshold = self.config.threshold_bps * BPS
        # A seeded coin keeps the run from trading every signal identically.
        if abs(gap) < threshold or self.rng.random() < 0.3:
            return None
        side: Literal["buy", "sell"] = "buy" if gap < 0 else "sell"
        offset = self.config.offset_bps * BPS * Decimal(self.rng.choice((0, 1, 2)))
        raw_price = bid * (1 - offset) if side == "buy" else ask * (1 + offset)
        price = raw_price.quantize(self.tick[symbol], rounding=ROUND_DOWN)
        size = self.config.notional * Decimal(self.rng.choice(("0.5", "1", "1.5")))
        amount = (size / price).quantize(self.step[symbol], rounding=ROUND_DOWN)
        if amount <= 0 or price <= 0:
            return None
        seen.clear()  # one idea per excursion
        return TradeIdea(symbol, side, amount, price)


@dataclass
class StrategyState:
    """What survives the strategy's restarts: the model, the id sequence, counters."""

    model: MeanReversion
    prefix: str  # saga ids are f"{prefix}{seq:06d}"
    seq: int = 0  # next sequence number (start past the ids already journaled)
    launched: int = 0
    skipped_busy: int = 0
    ticker_errors: int = 0
    last_error: str | None = None
    paused: bool = False


class StrategyTick(Message):
    """Timer tick: poll every symbol once."""

    type_name = "strategy.tick"


class StrategyPause(Message):
    """Stop launching: cancel the timer (ask it before stopping the actor, so no tick is left)."""

    type_name = "strategy.pause"


Launch = Callable[[str, TradeIdea], None]
"""``launch(saga_id, idea)``: start the buy or sell saga for an idea (idempotent by id)."""

InFlight = Callable[[], int]
"""How many of the strategy's sagas are still running."""


class Strategy(Actor):
    """Polls tickers every ``interval_s`` and launches at most ``max_sagas`` sagas.

    Its state (model and sequence) lives in a :class:`StrategyState` that the
    child spec hands to every incarnation, so a restart never reuses a saga id.
    """

    def __init__(
        self,
        config: StrategyConfig,
        exchange: str,
        state: StrategyState,
        launch: Launch,
        in_flight: InFlight,
    ) -> None:
        super().__init__()
        self.config = config
        self.exchange = exchange
        self.state = state
        self.launch = launch
        self.in_flight = in_flight
        self.timer: Timer | None = None

    def on_start(self) -> None:
        if not self.state.paused:
            self.timer = self.send_every(self.config.interval_s, StrategyTick())

    def on_stop(self) -> None:
        if self.timer is not None:
            self.timer.cancel()

    def pre_restart(self, exc: BaseException) -> None:
        self.on_stop()

    @property
    def exhausted(self) -> bool:
        """True once ``max_sagas`` ids were used, this boot and earlier ones (0: unbounded)."""
        return 0 < self.config.max_sagas <= self.state.seq

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, StrategyTick):
            if not self.state.paused:
                self._tick()
            return None
        if isinstance(message, StrategyPause):
            self.state.paused = True
            self.on_stop()
            return None
        return super().on_receive(message)

    def _tick(self) -> None:
        for symbol in self.config.symbols:
            if self.exhausted:
                if self.timer is not None:
                    self.timer.cancel()
                return
            try:
                ticker: Ticker = self.system.ask(
                    f"/exchanges/{self.exchange}", FetchTicker(symbol=symbol), timeout=5.0
                )
            except (PhalanxError, ccxt.BaseError) as exc:
                # A missed ticker is a missed signal, not a failure: try next tick.
                self.state.ticker_errors += 1
                self.state.last_error = f"{type(exc).__name__}: {exc}"[:200]
                continue
            if ticker.bid is None or ticker.ask is None:
                continue
            idea = self.state.model.observe(symbol, ticker.bid, ticker.ask)
            if idea is None:
                continue
            if self.in_flight() >= self.config.max_in_flight:
                self.state.skipped_busy += 1
                continue
            saga_id = f"{self.state.prefix}{self.state.seq:06d}"
            self.state.seq += 1  # before the launch: a crash inside it never reuses the id
            self.state.launched += 1
            self.launch(saga_id, idea)

    def introspect(self) -> dict[str, Any]:
        s = self.state
        return {
            "class": "Strategy",
            "seq": s.seq,
            "launched": s.launched,
            "skipped_busy": s.skipped_busy,
            "ticker_errors": s.ticker_errors,
            "exhausted": self.exhausted,
        }
