"""A hypothesis ``RuleBasedStateMachine`` base for testing actor protocols.

Each example gets its own started :class:`ActorSystem` in a fresh temporary
var dir; :meth:`ActorProtocolMachine.teardown` shuts it down (joining every
actor thread) and removes the directory, so no example leaks a thread or
state into the next. Subclasses write rules with the helpers and keep a
model; the base checks message conservation after every step::

    class CounterMachine(ActorProtocolMachine):
        def __init__(self):
            super().__init__()
            self.ref = self.spawn(Counter, "/counter")
            self.model = 0

        @rule()
        def inc(self):
            self.tell("/counter", "inc")
            self.model += 1

        @rule()
        def crash(self):
            self.kill("/counter")
            self.model = 0           # in-memory state dies with the incarnation

        @invariant()
        def agrees(self):
            assert self.ask("/counter", "get") == self.model

    TestCounter = CounterMachine.TestCase
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any, ClassVar

from hypothesis.stateful import RuleBasedStateMachine, invariant

from phalanx.runtime import Actor, Ref
from phalanx.testing._check_conservation import check_conservation
from phalanx.testing._harness import make_system

__all__ = ["ActorProtocolMachine"]


class ActorProtocolMachine(RuleBasedStateMachine):
    """Owns one :class:`ActorSystem` per example; spawn/tell/ask/kill helpers.

    Class knobs: ``system_options`` (extra :class:`ActorSystem` kwargs),
    ``ask_timeout`` (seconds), ``conservation_check`` (the built-in
    invariant; turn it off for protocols with timers that never go quiet)
    and ``conservation_timeout`` (its bounded wait for quiescence).
    """

    system_options: ClassVar[dict[str, Any]] = {}
    ask_timeout: ClassVar[float] = 5.0
    conservation_check: ClassVar[bool] = True
    conservation_timeout: ClassVar[float] = 5.0

    def __init__(self) -> None:
        super().__init__()
        self.var_dir = Path(tempfile.mkdtemp(prefix="phalanx-protocol-"))
        try:
            self.system = make_system(
                self.var_dir / "var", name="protocol", **self.system_options
            ).start()
        except BaseException:
            shutil.rmtree(self.var_dir, ignore_errors=True)
            raise

    # --- helpers -------------------------------------------------------------------

    def spawn(self, actor: type[Actor], path: str, *args: Any, **kwargs: Any) -> Ref:
        """``system.spawn(actor, path, *args, **kwargs)``."""
        return self.system.spawn(actor, path, *args, **kwargs)

    def tell(self, path: str, message: Any) -> None:
        """``system.tell(path, message)``."""
        self.system.tell(path, message)

    def ask(self, path: str, message: Any, timeout: float | None = None) -> Any:
        """``system.ask`` with the machine's ``ask_timeout`` by default."""
        return self.system.ask(path, message, timeout=timeout or self.ask_timeout)

    def kill(self, path: str) -> bool:
        """``system.kill(path)``: the next message is handled by a new incarnation."""
        return self.system.kill(path)

    # --- the built-in invariant and teardown ------------------------------------------

    @invariant()
    def messages_are_conserved(self) -> None:
        """sent == handled + dead_lettered + queued + journaled once quiet (DESIGN 8.1)."""
        if type(self).conservation_check:
            check_conservation(self.system, timeout=self.conservation_timeout).check()

    def teardown(self) -> None:
        """Shut the system down (joining every thread) and remove its var dir."""
        try:
            self.system.shutdown()
        finally:
            shutil.rmtree(self.var_dir, ignore_errors=True)
