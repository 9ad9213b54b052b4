"""The foundation demo tree: a ticker and workers that crash now and then.

The trading demo (venue, exchange connection, sagas) replaces this once the
trading actors exist; until then it exercises restarts, redelivery, timers,
dead letters and logs on a real node.
"""

from __future__ import annotations

import random
from decimal import Decimal
from typing import Any

from phalanx.protocols import Message
from phalanx.runtime import Actor, ActorSystem, Mailbox, Timer
from phalanx.supervision import ChildSpec, Retry

__all__ = ["DemoJob", "DemoTick", "Ticker", "TickerPrinter", "Worker", "spawn_demo"]


class DemoTick(Message):
    """A timer tick for the demo ticker."""

    type_name = "demo.tick"


class DemoJob(Message):
    """A unit of work for a demo worker: a price to process."""

    type_name = "demo.job"
    seq: int
    price: Decimal


class Ticker(Actor):
    """Walks a seeded random price and hands each tick to a worker, round robin."""

    def __init__(self, workers: list[str], seed: int, interval: float) -> None:
        super().__init__()
        self.workers = workers
        self.rng = random.Random(seed)
        self.interval = interval
        self.price = Decimal("100.00")
        self.seq = 0
        self.timer: Timer | None = None

    def on_start(self) -> None:
        self.timer = self.send_every(self.interval, DemoTick())

    def on_stop(self) -> None:
        if self.timer is not None:
            self.timer.cancel()

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, DemoTick):
            self.seq += 1
            step = Decimal(self.rng.choice(("-0.05", "0.00", "0.05")))
            self.price = max(Decimal("1.00"), self.price + step)
            target = self.workers[self.seq % len(self.workers)]
            self.system.tell(target, DemoJob(seq=self.seq, price=self.price))
            return None
        return super().on_receive(message)

    def introspect(self) -> dict[str, Any]:
        return {"class": "Ticker", "seq": self.seq, "price": str(self.price)}


class Worker(Actor):
    """Processes jobs; fails with a transient error at ``crash_rate``."""

    def __init__(self, seed: int, crash_rate: float) -> None:
        super().__init__()
        self.rng = random.Random(seed)
        self.crash_rate = crash_rate
        self.done = 0
        self.last_price: str | None = None

    def on_start(self) -> None:
        # Each incarnation draws on its own stream, so the crash pattern varies.
        self.rng.seed(self.rng.random() + self.incarnation)

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, DemoJob):
            if self.rng.random() < self.crash_rate:
                raise ConnectionError(f"demo: simulated venue hiccup on job {message.seq}")
            self.done += 1
            self.last_price = str(message.price)
            return self.done
        return super().on_receive(message)

    def introspect(self) -> dict[str, Any]:
        return {"class": "Worker", "done": self.done, "last_price": self.last_price}


def spawn_demo(
    system: ActorSystem,
    *,
    workers: int = 3,
    seed: int = 7,
    interval: float = 0.02,
    crash_rate: float = 0.05,
) -> list[str]:
    """Start the demo tree under the ``/demo`` supervisor; returns the actor paths.

    Workers are ``one_for_one`` children with retry (restart + redelivery);
    the ticker is the last child, so it starts after the workers and stops
    before them.
    """
    paths = [f"/demo/worker-{i}" for i in range(workers)]
    retry = Retry(max_attempts=3, backoff="exponential", base=0.01, max=0.2)
    children = [
        ChildSpec(
            f"worker-{i}",
            Worker,
            args=(seed + i, crash_rate),
            mailbox=Mailbox(capacity=100),
            retry=retry,
        )
        for i in range(workers)
    ]
    children.append(ChildSpec("ticker", Ticker, args=(paths, seed, interval)))
    system.supervise("/demo", strategy="one_for_one", intensity=50, period=1, children=children)
    return [*paths, "/demo/ticker"]


class TickerPrinter(Actor):
    """Prints every ``every``-th ticker it is told (the demo's visible progress)."""

    def __init__(self, every: int = 10) -> None:
        super().__init__()
        self.every = every
        self.seen = 0

    def on_receive(self, message: Any) -> Any:
        from phalanx.protocols.exchange import Ticker  # noqa: PLC0415

        if isinstance(message, Ticker):
            self.seen += 1
            if self.seen % self.every == 1:
                print(
                    f"  ticker {message.exchange} {message.symbol} last={message.last} "
                    f"bid={message.bid} ask={message.ask} (#{self.seen})",
                    flush=True,
                )
            return None
        return super().on_receive(message)

    def introspect(self) -> dict[str, Any]:
        return {"class": "TickerPrinter", "seen": self.seen}
