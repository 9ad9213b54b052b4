"""The default decider classifies errors as DESIGN section 4 says."""

from __future__ import annotations

import ccxt
import pytest
from pydantic import BaseModel, ValidationError

from phalanx import Directive, Retry, UnknownMessage
from phalanx.supervision._decider import ErrorClass, classify, default_decider, retry_budget


class _Model(BaseModel):
    x: int


def _validation_error() -> ValidationError:
    try:
        _Model(x="not an int")  # type: ignore[arg-type]
    except ValidationError as exc:
        return exc
    raise AssertionError("expected a ValidationError")


@pytest.mark.parametrize(
    "exc",
    [
        ccxt.NetworkError("x"),
        ccxt.RequestTimeout("x"),
        ccxt.ExchangeNotAvailable("x"),
        ccxt.DDoSProtection("x"),
        ccxt.RateLimitExceeded("x"),
        ccxt.InvalidNonce("x"),
        ccxt.OnMaintenance("x"),
        ccxt.OperationFailed("503 -1000 unknown error"),
        TimeoutError(),
        ConnectionError(),
        ConnectionResetError(),
        OSError(),
    ],
)
def test_transient_errors_restart_with_the_full_budget(exc: BaseException) -> None:
    assert classify(exc) is ErrorClass.TRANSIENT
    assert default_decider(exc) is Directive.RESTART
    assert retry_budget(exc, Retry(max_attempts=6)) == 6


@pytest.mark.parametrize(
    "exc",
    [
        ccxt.AuthenticationError("x"),
        ccxt.PermissionDenied("x"),
        ccxt.InsufficientFunds("x"),
        ccxt.InvalidOrder("x"),
        ccxt.OrderNotFound("x"),
        ccxt.DuplicateOrderId("x"),
        ccxt.BadSymbol("x"),
        ccxt.BadRequest("x"),
        ccxt.ArgumentsRequired("x"),
        ccxt.NotSupported("x"),
        UnknownMessage("x"),
        _validation_error(),
    ],
)
def test_permanent_errors_resume(exc: BaseException) -> None:
    assert classify(exc) is ErrorClass.PERMANENT
    assert default_decider(exc) is Directive.RESUME
    assert retry_budget(exc, Retry(max_attempts=6)) == 1


def test_operation_failed_is_not_a_network_error_but_is_retried() -> None:
    assert not isinstance(ccxt.OperationFailed("x"), ccxt.NetworkError)
    assert classify(ccxt.OperationFailed("x")) is ErrorClass.TRANSIENT


@pytest.mark.parametrize("exc", [ValueError("bug"), KeyError("k"), ccxt.ExchangeError("?")])
def test_unknown_errors_restart_with_half_the_budget(exc: BaseException) -> None:
    assert classify(exc) is ErrorClass.UNKNOWN
    assert default_decider(exc) is Directive.RESTART
    assert retry_budget(exc, Retry(max_attempts=6)) == 3
    assert retry_budget(exc, Retry(max_attempts=1)) == 1


def test_non_exception_failures_escalate() -> None:
    assert default_decider(KeyboardInterrupt()) is Directive.ESCALATE
    assert default_decider(SystemExit(1)) is Directive.ESCALATE


def test_domain_errors_opt_in_with_a_marker_and_subclasses_inherit_rules() -> None:
    class RiskLimitBreached(Exception):
        phalanx_error_class = "permanent"

    class DailyDrawdown(RiskLimitBreached):
        pass

    class FlakyFeed(ccxt.RequestTimeout):
        pass

    assert default_decider(DailyDrawdown()) is Directive.RESUME
    assert classify(FlakyFeed("x")) is ErrorClass.TRANSIENT
