"""A client that hangs up mid-reply is not reported as a venue error."""

from __future__ import annotations

import pytest

from phalanx.actors.venue import PaperVenue


def _raise_and_report(venue: PaperVenue, exc: BaseException) -> None:
    try:
        raise exc
    except BaseException:
        venue._server.handle_error(None, ("127.0.0.1", 1))


def test_a_broken_pipe_or_reset_prints_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    with PaperVenue(seed=7) as venue:
        _raise_and_report(venue, BrokenPipeError(32, "Broken pipe"))
        _raise_and_report(venue, ConnectionResetError(104, "Connection reset by peer"))
    assert capsys.readouterr().err == ""


def test_any_other_handler_error_is_still_reported(capsys: pytest.CaptureFixture[str]) -> None:
    with PaperVenue(seed=7) as venue:
        _raise_and_report(venue, RuntimeError("a venue bug"))
    err = capsys.readouterr().err
    assert "RuntimeError: a venue bug" in err
