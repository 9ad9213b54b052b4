"""The review tests' venue: a paper venue on a seeded walk (a module may pick its own seed)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from phalanx.actors.venue import PaperVenue


@pytest.fixture
def venue() -> Iterator[PaperVenue]:
    with PaperVenue(seed=7) as v:
        yield v
