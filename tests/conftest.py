"""Shared fixtures. The autouse fixture fails any test that leaks a phalanx thread."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from phalanx import ActorSystem, Retry


def _phalanx_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name.startswith("phalanx") and t.is_alive()}


@pytest.fixture(autouse=True)
def no_leaked_threads() -> Iterator[None]:
    """Every actor, timer and writer thread a test starts must be gone when it ends."""
    before = _phalanx_threads()
    yield
    leaked = []
    for thread in _phalanx_threads() - before:
        thread.join(timeout=5.0)
        if thread.is_alive():
            leaked.append(thread.name)
    assert not leaked, f"threads outlived the test: {sorted(leaked)}"


@pytest.fixture
def system(tmp_path: Path) -> Iterator[ActorSystem]:
    """A started ActorSystem in a temporary var dir, shut down after the test."""
    with ActorSystem(
        name="test",
        var_dir=tmp_path / "var",
        retry=Retry(max_attempts=3, backoff="fixed", base=0.0, jitter=0.0),
        sync=False,
    ) as sys_:
        yield sys_
