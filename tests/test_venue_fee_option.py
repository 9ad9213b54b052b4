"""``fee_in_base`` reaches the paper venue's engine from ``phalanx venue`` and ``phalanx run``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from phalanx.actors.venue import PaperVenue
from phalanx.cli import _run, _venue, main


class _Seen(Exception):
    """Raised by the recording venue's start: the test has what it came for."""


def _recording(seen: list[bool], *, abort: bool) -> type[PaperVenue]:
    class Recording(PaperVenue):
        def start(self) -> PaperVenue:
            seen.append(self.engine.fee_in_base)  # what the first order would see
            if abort:
                raise _Seen
            return super().start()

    return Recording


@pytest.mark.parametrize(("flag", "expected"), [((), False), (("--fee-in-base",), True)])
def test_phalanx_venue_sets_fee_in_base_before_it_serves(
    monkeypatch: pytest.MonkeyPatch, flag: tuple[str, ...], expected: bool
) -> None:
    seen: list[bool] = []
    monkeypatch.setattr(_venue, "PaperVenue", _recording(seen, abort=False))
    assert main(["venue", *flag, "--for", "0"]) == 0
    assert seen == [expected]


def test_phalanx_run_passes_the_venue_config_fee_in_base_to_the_engine(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    seen: list[bool] = []
    monkeypatch.setattr(_run, "PaperVenue", _recording(seen, abort=True))
    config = tmp_path / "node.toml"
    config.write_text('name = "fee"\n[venue]\nfee_in_base = true\n')
    outcome: Any = None
    try:
        outcome = main(["run", "--config", str(config), "--var-dir", str(tmp_path / "var"),
                        "--for", "1"])  # fmt: skip
    except _Seen:
        outcome = "aborted at start"
    assert seen == [True], outcome
