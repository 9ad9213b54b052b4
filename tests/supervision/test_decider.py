"""The default decider classifies errors as DESIGN section 4 says, by class."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap

import ccxt
import pytest
from pydantic import BaseModel, ValidationError

from phalanx import Directive, Retry, UnknownMessage
from phalanx.errors import CircuitOpen, UnknownOutcome
from phalanx.supervision._decider import ErrorClass, classify, default_decider, retry_budget

BUDGET = Retry(max_attempts=6)


class _Model(BaseModel):
    x: int


def _validation_error() -> ValidationError:
    try:
        _Model(x="not an int")
    except ValidationError as exc:
        return exc
    raise AssertionError("expected a ValidationError")


@pytest.mark.parametrize(
    "exc",
    [
        ccxt.NetworkError("x"),
        ccxt.RequestTimeout("x"),
        ccxt.ExchangeNotAvailable("x"),
        ccxt.OnMaintenance("x"),
        ccxt.DDoSProtection("418 IP banned"),
        ccxt.RateLimitExceeded("-1015"),
        ccxt.InvalidNonce("-1021"),
        ccxt.ChecksumError("x"),
        ccxt.OperationFailed("503 -1000 unknown error, try again"),
        ccxt.BadResponse("x"),
        ccxt.NullResponse("x"),
        ccxt.CancelPending("x"),
        TimeoutError(),
        ConnectionError(),
        ConnectionResetError(),
        ConnectionRefusedError(),
        OSError(),
        FileNotFoundError(),
    ],
    ids=lambda e: type(e).__name__,
)
def test_transient_errors_restart_with_the_full_budget(exc: BaseException) -> None:
    assert classify(exc) is ErrorClass.TRANSIENT
    assert default_decider(exc) is Directive.RESTART
    assert retry_budget(exc, BUDGET) == 6


@pytest.mark.parametrize(
    "exc",
    [
        ccxt.AuthenticationError("-2015"),
        ccxt.PermissionDenied("x"),
        ccxt.AccountNotEnabled("x"),
        ccxt.AccountSuspended("x"),
        ccxt.InsufficientFunds("-2010"),
        ccxt.InvalidOrder("x"),
        ccxt.OrderNotFound("-2013"),
        ccxt.DuplicateOrderId("x"),
        ccxt.OrderNotFillable("x"),
        ccxt.BadSymbol("x"),
        ccxt.BadRequest("x"),
        ccxt.ArgumentsRequired("x"),
        ccxt.NotSupported("x"),
        ccxt.OperationRejected("x"),
        ccxt.MarketClosed("x"),
        ccxt.InvalidAddress("x"),
        UnknownMessage("x"),
        _validation_error(),
        CircuitOpen("x"),
        UnknownOutcome("x"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_permanent_errors_resume_and_are_never_redelivered(exc: BaseException) -> None:
    assert classify(exc) is ErrorClass.PERMANENT
    assert default_decider(exc) is Directive.RESUME
    assert retry_budget(exc, BUDGET) == 1


def test_ccxt_tree_is_as_the_rules_assume() -> None:
    # Facts read from ccxt/base/errors.py that the rule table depends on.
    assert not issubclass(ccxt.OperationFailed, ccxt.NetworkError)
    assert issubclass(ccxt.NetworkError, ccxt.OperationFailed)
    assert issubclass(ccxt.InvalidNonce, ccxt.NetworkError)
    assert issubclass(ccxt.OrderNotFound, ccxt.InvalidOrder)
    assert issubclass(ccxt.BadSymbol, ccxt.BadRequest)


def test_bare_operation_failed_is_retried_although_not_a_network_error() -> None:
    assert type(ccxt.OperationFailed("x")) is ccxt.OperationFailed
    assert default_decider(ccxt.OperationFailed("x")) is Directive.RESTART


@pytest.mark.parametrize(
    "exc",
    [
        ValueError("bug"),
        TypeError("bug"),
        KeyError("k"),
        RuntimeError("?"),
        ccxt.BaseError("?"),
        ccxt.ExchangeError("?"),
        ccxt.ExchangeClosedByUser("?"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_unknown_errors_restart_with_half_the_budget(exc: BaseException) -> None:
    assert classify(exc) is ErrorClass.UNKNOWN
    assert default_decider(exc) is Directive.RESTART
    assert retry_budget(exc, BUDGET) == 3


@pytest.mark.parametrize(("attempts", "budget"), [(1, 1), (2, 1), (3, 1), (5, 2), (7, 3)])
def test_unknown_budget_is_halved_but_never_below_one(attempts: int, budget: int) -> None:
    assert retry_budget(ValueError(), Retry(max_attempts=attempts)) == budget


@pytest.mark.parametrize(
    "exc",
    [KeyboardInterrupt(), SystemExit(1), GeneratorExit(), asyncio.CancelledError()],
    ids=lambda e: type(e).__name__,
)
def test_non_exception_failures_escalate(exc: BaseException) -> None:
    assert default_decider(exc) is Directive.ESCALATE


def test_subclasses_inherit_the_mapping_of_their_most_specific_mapped_base() -> None:
    class FlakyFeed(ccxt.RequestTimeout):
        pass

    class RejectedAfterTimeout(ccxt.InvalidOrder, TimeoutError):
        pass

    class MyValidation(UnknownMessage):
        pass

    assert classify(FlakyFeed("x")) is ErrorClass.TRANSIENT
    assert classify(RejectedAfterTimeout("x")) is ErrorClass.PERMANENT
    assert classify(MyValidation("x")) is ErrorClass.PERMANENT


def test_marker_classifies_domain_errors_and_is_inherited() -> None:
    class RiskLimitBreached(Exception):
        phalanx_error_class = "permanent"

    class DailyDrawdown(RiskLimitBreached):
        pass

    class FeedGlitch(Exception):
        phalanx_error_class = "transient"

    assert default_decider(DailyDrawdown()) is Directive.RESUME
    assert retry_budget(FeedGlitch(), BUDGET) == 6


def test_marker_beats_a_more_specific_ccxt_rule() -> None:
    # Listed first, RequestTimeout is more specific in the MRO than UnknownOutcome;
    # the declared "never retry blindly" must still win.
    class PlacementTimedOut(ccxt.RequestTimeout, UnknownOutcome):
        pass

    class NotReallyAuth(ccxt.AuthenticationError):
        phalanx_error_class = "unknown"

    assert classify(PlacementTimedOut("x")) is ErrorClass.PERMANENT
    assert classify(NotReallyAuth("x")) is ErrorClass.UNKNOWN


def test_an_invalid_marker_is_ignored_and_the_rules_apply() -> None:
    class Typo(ConnectionError):
        phalanx_error_class = "permanant"

    assert classify(Typo()) is ErrorClass.TRANSIENT


def test_classification_is_cached_per_type_and_stable() -> None:
    exc = ccxt.RateLimitExceeded("x")
    assert classify(exc) is classify(ccxt.RateLimitExceeded("other")) is ErrorClass.TRANSIENT


def test_importing_the_decider_does_not_import_ccxt_and_rules_apply_once_it_is_loaded() -> None:
    code = textwrap.dedent(
        """
        import sys
        from phalanx.supervision._decider import ErrorClass, classify
        assert "ccxt" not in sys.modules, "importing the decider imported ccxt"
        assert classify(OSError()) is ErrorClass.TRANSIENT
        assert classify(ValueError()) is ErrorClass.UNKNOWN
        import ccxt
        assert classify(ccxt.InsufficientFunds("x")) is ErrorClass.PERMANENT
        assert classify(ccxt.OperationFailed("x")) is ErrorClass.TRANSIENT
        assert classify(OSError()) is ErrorClass.TRANSIENT
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
