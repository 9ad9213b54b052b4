"""The in-process :class:`Driver`: a campaign against a system and venue in this process."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from phalanx.actors import TradingNode
from phalanx.actors.venue import Fault, PaperVenue
from phalanx.runtime import ActorSystem
from phalanx.testing._campaign_run import ChaosUnsupported
from phalanx.testing._invariant_result import DEFAULT_ACCOUNT
from phalanx.testing._verdict import Verdict, check_all

__all__ = ["InProcessDriver"]


class InProcessDriver:
    """Drive a campaign against ``system`` and ``venue`` in this process.

    ``trading`` (the :class:`TradingNode` of ``start_trading``) lets
    :meth:`verdict` stop the strategy and wait up to ``settle_timeout`` s for
    running sagas first; ``quiesce`` is called before that (stop your own
    workload there, so nothing new starts while the verdict is taken). A node
    SIGKILL cannot be done to one's own process: ``sigkill_and_restart``
    raises :class:`ChaosUnsupported` (the campaign records it as skipped);
    the control-socket driver does it for real.
    """

    def __init__(
        self,
        system: ActorSystem,
        venue: PaperVenue | None = None,
        trading: TradingNode | None = None,
        *,
        account: str = DEFAULT_ACCOUNT,
        settle_timeout: float = 30.0,
        saga_ids: Iterable[str] | None = None,
        skip: Iterable[str] = (),
        quiesce: Callable[[], object] | None = None,
    ) -> None:
        self.system = system
        self.venue = venue
        self.trading = trading
        self.account = account
        self.settle_timeout = settle_timeout
        self.saga_ids = saga_ids
        self.skip = tuple(skip)
        self.quiesce = quiesce
        self.settled: bool | None = None  # set by verdict(): did the sagas finish in time?

    def list_paths(self) -> list[str]:
        """Every live actor path."""
        return [p for p in self.system.paths() if self.system.is_alive(p)]

    def kill(self, path: str) -> bool:
        """``system.kill(path)``; False if nothing lives there."""
        try:
            return self.system.kill(path)
        except LookupError:
            return False

    def inject_fault(self, fault: Mapping[str, Any]) -> None:
        """Inject ``Fault(**fault)`` at the embedded venue."""
        if self.venue is None:
            raise ChaosUnsupported("no venue to inject faults into")
        self.venue.inject(Fault(**fault))

    def flood(self, path: str, n: int) -> int:
        """Tell ``n`` plain-dict messages no actor handles (each is dead-lettered)."""
        for i in range(n):
            self.system.tell(path, {"phalanx_chaos_flood": i})
        return n

    def sigkill_and_restart(self) -> None:
        """Not possible in-process: raises :class:`ChaosUnsupported`."""
        raise ChaosUnsupported(
            "the in-process driver cannot SIGKILL its own process; "
            "use the control-socket driver (phalanx chaos) for node kills"
        )

    def verdict(self) -> Verdict:
        """Clear venue faults, quiesce, stop the strategy, wait for sagas (bounded), check all."""
        if self.quiesce is not None:
            self.quiesce()
        if self.venue is not None:
            self.venue.clear_faults()
        if self.trading is not None:
            self.trading.stop_strategy()
            self.settled = self.trading.wait_idle(self.settle_timeout)
        verdict = check_all(
            self.system, self.venue, account=self.account, saga_ids=self.saga_ids, skip=self.skip
        )
        return verdict.with_campaign(settled=self.settled)
