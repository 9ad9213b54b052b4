"""The spawn fast paths give what the slow paths they replace gave.

A dynamic child's spec is built without ``dataclasses.replace``, and a phalanx
Actor sets pykka's fields itself instead of calling ``pykka.Actor.__init__``.
"""

from __future__ import annotations

import dataclasses
import threading
import uuid
from pathlib import Path
from typing import Any

import pykka
import pytest
from hypothesis import given
from hypothesis import strategies as st

from phalanx import Actor, ActorSystem, ChildSpec, Mailbox, Retry
from phalanx.errors import ConfigError
from phalanx.runtime._actor import _new_urn
from phalanx.supervision import Breaker
from phalanx.supervision._spec import dynamic_child_spec


class Echo(Actor):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__()
        self.args, self.kwargs = args, kwargs

    def on_receive(self, message: Any) -> Any:
        if message == "args":
            return self.args, self.kwargs
        if message == "stop":
            self.stop()
        return None


_TEMPLATES = [
    ChildSpec("t", Echo),
    ChildSpec(
        "t",
        Echo,
        args=(1, "a"),
        kwargs={"k": 1},
        restart="transient",
        shutdown="brutal_kill",
        mailbox=Mailbox(capacity=5),
        retry=Retry(max_attempts=2),
        breaker=Breaker(),
    ),
    ChildSpec("t", Echo, restart="temporary", shutdown="infinity", significant=True),
]


@given(
    template=st.sampled_from(_TEMPLATES),
    child_id=st.text(min_size=1, max_size=12).filter(lambda s: "/" not in s),
    extra=st.tuples(st.integers(), st.text(max_size=3)),
    kwargs=st.dictionaries(st.sampled_from(["k", "x", "y"]), st.integers(), max_size=3),
)
def test_a_dynamic_spec_equals_replace_field_for_field(
    template: ChildSpec, child_id: str, extra: tuple[Any, ...], kwargs: dict[str, int]
) -> None:
    args = (*template.args, *extra)
    merged = {**template.kwargs, **kwargs}
    fast = dynamic_child_spec(template, child_id, args, merged)
    slow = dataclasses.replace(template, id=child_id, args=args, kwargs=merged)
    assert fast == slow
    assert type(fast) is ChildSpec
    assert vars(fast) == vars(slow)
    assert hash(fast.id) == hash(slow.id)
    with pytest.raises(dataclasses.FrozenInstanceError):
        fast.id = "other"  # type: ignore[misc]


@pytest.mark.parametrize("bad", ["", "a/b", "/"])
def test_a_dynamic_spec_refuses_a_bad_id_as_childspec_does(bad: str) -> None:
    with pytest.raises(ConfigError) as slow:
        dataclasses.replace(_TEMPLATES[0], id=bad)
    with pytest.raises(ConfigError) as fast:
        dynamic_child_spec(_TEMPLATES[0], bad, (), {})
    assert str(fast.value) == str(slow.value)


def test_a_childspec_subclass_takes_the_replace_path_and_keeps_its_class() -> None:
    @dataclasses.dataclass(frozen=True)
    class Tagged(ChildSpec):
        def __post_init__(self) -> None:
            super().__post_init__()
            if self.id == "forbidden":
                raise ConfigError("forbidden id")

    template = Tagged("t", Echo)
    spec = dynamic_child_spec(template, "c", (1,), {})
    assert type(spec) is Tagged
    assert (spec.id, spec.args) == ("c", (1,))
    with pytest.raises(ConfigError, match="forbidden"):
        dynamic_child_spec(template, "forbidden", (), {})


def test_start_child_passes_the_template_and_extra_args_to_the_child(system: ActorSystem) -> None:
    sup = system.supervise(
        "/dyn",
        strategy="simple_one_for_one",
        children=[ChildSpec("e", Echo, args=(1,), kwargs={"a": 1, "b": 2}, restart="temporary")],
    )
    ref = sup.start_child(2, 3, b=20, child_id="c1")
    assert ref.path == "/dyn/c1"
    assert ref.ask("args") == ((1, 2, 3), {"a": 1, "b": 20})
    auto = sup.start_child()
    assert auto.path == "/dyn/e-1"
    assert [c["id"] for c in sup.which_children()] == ["c1", "e-1"]
    with pytest.raises(ConfigError, match="non-empty name"):
        sup.start_child(child_id="a/b")
    assert [c["id"] for c in sup.which_children()] == ["c1", "e-1"]


def test_a_significant_dynamic_child_is_refused_when_the_supervisor_starts(
    system: ActorSystem,
) -> None:
    # The rule start_child no longer re-checks per child: the template carries it.
    with pytest.raises(ConfigError, match="significant"):
        system.supervise(
            "/sig",
            strategy="simple_one_for_one",
            children=[ChildSpec("e", Echo, restart="temporary", significant=True)],
        )
    assert not system.is_alive("/sig")


class _Plain(pykka.ThreadingActor):
    pass


def test_an_actor_has_every_field_pykka_actor_init_sets(system: ActorSystem) -> None:
    pykka_fields = set(vars(_Plain()))  # what pykka.Actor.__init__ sets
    sup = system.supervise(
        "/p", strategy="simple_one_for_one", children=[ChildSpec("e", Echo, restart="temporary")]
    )
    ref = sup.start_child(child_id="x")
    actor = system._cell(ref.path).actor
    assert actor is not None
    assert pykka_fields <= set(vars(actor))
    assert isinstance(actor.actor_stopped, threading.Event)
    assert actor.actor_ref.actor_urn == actor.actor_urn
    assert actor.actor_ref.is_alive()
    ref.tell("stop")
    assert actor.actor_stopped.wait(5.0)
    assert not actor.actor_ref.is_alive()


def test_actor_urns_are_unique_uuid4_urns() -> None:
    urns = {_new_urn() for _ in range(2000)}
    assert len(urns) == 2000
    for urn in list(urns)[:200]:
        assert urn.startswith("urn:uuid:")
        parsed = uuid.UUID(urn[len("urn:uuid:") :])
        assert parsed.version == 4
        assert parsed.variant == uuid.RFC_4122
        assert parsed.urn == urn


def test_spawn_and_exit_leave_no_cell_thread_or_waiter(tmp_path: Path) -> None:
    with ActorSystem(var_dir=tmp_path / "v", sync=False) as system:
        sup = system.supervise(
            "/w",
            strategy="simple_one_for_one",
            intensity=1000,
            children=[ChildSpec("a", Echo, restart="transient")],
        )
        stopped = system.events.subscribe(["actor_stopped"])
        cells = []
        for i in range(20):
            ref = sup.start_child(child_id=f"a{i}")
            cells.append(system._cell(ref.path))
            ref.tell("stop")
        for _ in range(20):
            event = stopped.get(5.0)
            assert event is not None
            assert event.fields["reason"] == "normal"
        for cell in cells:
            assert cell.join(5.0)
            assert cell.status == "stopped"
            assert cell._first_start._waiting == cell._ended._waiting == 0
        assert sup.which_children() == []
        assert [p for p in system.paths() if p.startswith("/w/")] == []
