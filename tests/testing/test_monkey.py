"""ChaosMonkey: seeded target choice, glob matching, recorded kills, a joined thread."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from phalanx import Actor, ActorSystem
from phalanx.testing import ChaosMonkey, choose_target, make_system, matching


class Echo(Actor):
    def on_receive(self, message: Any) -> Any:
        return message


PATHS = ["/orders/o-1", "/orders/o-2", "/orders/o-3", "/sagas/s-1", "/risk", "/orders"]


def _spawn_tree(system: ActorSystem) -> None:
    for path in ("/orders/o-1", "/orders/o-2", "/orders/o-3", "/sagas/s-1", "/risk"):
        system.spawn(Echo, path)


@given(
    seed=st.integers(0, 2**32),
    attempt=st.integers(0, 10_000),
    paths=st.lists(st.text("abc/-", min_size=1, max_size=6), min_size=1, max_size=8),
)
def test_target_choice_depends_only_on_seed_attempt_and_the_live_set(
    seed: int, attempt: int, paths: list[str]
) -> None:
    chosen = choose_target(seed, attempt, paths)
    assert chosen in paths
    assert choose_target(seed, attempt, list(reversed(paths))) == chosen


def test_no_live_candidate_means_no_target() -> None:
    assert choose_target(1, 0, []) is None


def test_globs_match_children_not_their_supervisor() -> None:
    assert matching(PATHS, ["/orders/*"]) == ["/orders/o-1", "/orders/o-2", "/orders/o-3"]
    assert matching(PATHS, ["/sagas/*", "/risk"]) == ["/risk", "/sagas/s-1"]


def _kill_sequence(var: Path, seed: int, n: int) -> list[tuple[str, int]]:
    with make_system(var) as system:
        _spawn_tree(system)
        monkey = ChaosMonkey(system, ["/orders/*", "/sagas/*"], rate_per_s=1.0, seed=seed)
        kills = []
        for _ in range(n):
            kill = monkey.kill_one()
            assert kill is not None
            kills.append((kill.path, kill.incarnation))
            assert system.ref(kill.path).ask("ping") == "ping"  # restarted: next incarnation
        return kills


def test_the_same_seed_and_live_set_kill_the_same_actors(tmp_path: Path) -> None:
    first = _kill_sequence(tmp_path / "a", seed=11, n=12)
    assert _kill_sequence(tmp_path / "b", seed=11, n=12) == first
    assert _kill_sequence(tmp_path / "c", seed=12, n=12) != first
    assert {p for p, _ in first} <= {"/orders/o-1", "/orders/o-2", "/orders/o-3", "/sagas/s-1"}


def test_the_monkey_thread_kills_on_schedule_records_incarnations_and_stops_at_max(
    actor_system: ActorSystem,
) -> None:
    _spawn_tree(actor_system)
    with ChaosMonkey(actor_system, ["/orders/*"], rate_per_s=200.0, seed=3, max_kills=8) as m:
        assert m.wait_kills(8, timeout=10.0)
    kills = m.kills
    assert len(kills) == 8
    assert [k.seq for k in kills] == list(range(8))
    assert all(k.path.startswith("/orders/o-") for k in kills)
    assert all(a.at_s <= b.at_s for a, b in itertools.pairwise(kills))
    for path in {k.path for k in kills}:
        assert actor_system.ref(path).ask("ping") == "ping"
        # Every recorded incarnation was ended: the live one is newer than all of them.
        newest = max(k.incarnation for k in kills if k.path == path)
        assert actor_system.stats(path)["incarnation"] > newest
    assert actor_system.stats("/risk")["restarts"] == 0
