"""Child specifications (DESIGN section 4). The supervisor that runs them is issue 3."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from phalanx._evolve import evolve_validated
from phalanx.errors import ConfigError
from phalanx.supervision._policy import Breaker, Directive, Retry

__all__ = ["ChildSpec", "RestartType", "Strategy", "dynamic_child_spec"]


def _check_id(id: str) -> None:
    if not id or "/" in id:
        raise ConfigError(f"ChildSpec.id must be a non-empty name without '/', got {id!r}")


RestartType = Literal["permanent", "transient", "temporary"]
Strategy = Literal["one_for_one", "one_for_all", "rest_for_one", "simple_one_for_one"]
_RESTARTS: tuple[str, ...] = ("permanent", "transient", "temporary")
_STRATEGIES: tuple[str, ...] = ("one_for_one", "one_for_all", "rest_for_one", "simple_one_for_one")


@dataclass(frozen=True)
class ChildSpec:
    """How to start, restart and stop one child.

    ``factory`` is an ``Actor`` subclass or a callable returning an actor;
    each incarnation is built afresh from ``args`` and ``kwargs``.
    ``shutdown`` is ``"brutal_kill"``, a timeout in seconds, or ``"infinity"``.
    ``mailbox`` is a ``phalanx.Mailbox`` (typed loosely here to keep the
    supervision package free of runtime imports).
    """

    id: str
    factory: Callable[..., Any] | None = None
    args: Sequence[Any] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    restart: RestartType = "permanent"
    shutdown: float | Literal["brutal_kill", "infinity"] = 5.0
    mailbox: Any = None
    retry: Retry | None = None
    breaker: Breaker | None = None
    significant: bool = False
    # Maps a handler's exception to a Directive; None means the default decider.
    decider: Callable[[BaseException], Directive] | None = None
    # Set only for nested supervisors (see ChildSpec.supervisor).
    strategy: Strategy | None = None
    intensity: int = 3
    period: float = 5.0
    children: Sequence[ChildSpec] = ()
    auto_shutdown: Literal["never", "any_significant", "all_significant"] = "never"

    def __post_init__(self) -> None:
        _check_id(self.id)
        if self.restart not in _RESTARTS:
            raise ConfigError(f"ChildSpec.restart must be one of {_RESTARTS}, got {self.restart!r}")
        if isinstance(self.shutdown, str):
            if self.shutdown not in ("brutal_kill", "infinity"):
                raise ConfigError(
                    "ChildSpec.shutdown must be 'brutal_kill', 'infinity' or seconds, "
                    f"got {self.shutdown!r}"
                )
        elif self.shutdown < 0:
            raise ConfigError(f"ChildSpec.shutdown must be >= 0 seconds, got {self.shutdown}")
        if self.strategy is not None and self.strategy not in _STRATEGIES:
            raise ConfigError(
                f"ChildSpec.strategy must be one of {_STRATEGIES}, got {self.strategy!r}"
            )
        if self.factory is None and self.strategy is None:
            raise ConfigError(f"ChildSpec {self.id!r} needs a factory")
        if self.intensity < 0 or self.period <= 0:
            raise ConfigError("ChildSpec intensity must be >= 0 and period > 0")

    @property
    def is_supervisor(self) -> bool:
        """True for the spec of a nested supervisor."""
        return self.strategy is not None

    @classmethod
    def supervisor(
        cls,
        id: str,
        strategy: Strategy = "one_for_one",
        intensity: int = 3,
        period: float = 5.0,
        children: Sequence[ChildSpec] = (),
        restart: RestartType = "permanent",
        auto_shutdown: Literal["never", "any_significant", "all_significant"] = "never",
        significant: bool = False,
    ) -> ChildSpec:
        """The spec of a nested supervisor; its children's paths extend its own."""
        return cls(
            id=id,
            restart=restart,
            shutdown="infinity",
            strategy=strategy,
            intensity=intensity,
            period=period,
            children=tuple(children),
            auto_shutdown=auto_shutdown,
            significant=significant,
        )


def dynamic_child_spec(
    template: ChildSpec, id: str, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> ChildSpec:
    """``dataclasses.replace(template, id=id, args=args, kwargs=kwargs)``, checking only ``id``.

    Every other field is the template's, which ``__post_init__`` already
    validated, and ``__post_init__`` only validates: the two results are
    equal field for field. Measured on the VM: ``replace`` ~15 us, this ~2 us.
    """
    if type(template) is not ChildSpec:  # a subclass may validate more: take the full path
        return replace(template, id=id, args=args, kwargs=kwargs)
    _check_id(id)  # what __post_init__ checks of the changed fields (args/kwargs: nothing)
    return evolve_validated(template, id=id, args=args, kwargs=kwargs)
