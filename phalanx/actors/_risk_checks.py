"""The Risk actor's pure work on a decision's checks: blocking an unreadable input, logging.

No I/O, no state: functions of a :class:`~phalanx.protocols.trading.RiskDecision`
(from :func:`phalanx.actors._risk_model.evaluate`) and its ``checks``.

- :func:`_fail` blocks one check of a decision whose input (market filters,
  free balance) could not be read: it never passes unchecked, and
  ``blocking_limit`` is again the first failing check in ``CHECKS`` order.
- :func:`_log_checks` / :func:`_log_value` give ``risk_limits_eval`` and
  ``funds_reserve`` their fields with Decimals as str: the same text the
  log's masking renders, on the logger's deferred path.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from phalanx.actors._risk_model import CHECKS
from phalanx.protocols.trading import RiskDecision

__all__: list[str] = []


def _fail(decision: RiskDecision, name: str, error: str) -> RiskDecision:
    checks = dict(decision.checks)
    checks[name] = {**checks[name], "ok": False, "error": error}
    blocking = next(n for n in CHECKS if not checks[n]["ok"])
    return RiskDecision(
        allowed=False, blocking_limit=blocking, checks=checks, trading_state=decision.trading_state
    )


def _log_value(value: Any) -> Any:
    # What the log's masking turns a Decimal into (its str), done here: a line of
    # str/int/bool/None fields takes the logger's deferred path, and str leaves
    # skip mask_value's isinstance chain. The rendered line is the same text.
    return str(value) if type(value) is Decimal else value


# The checks whose value or limit is a Decimal in evaluate(). Only a speed hint:
# a Decimal left in another check renders as the same text (the logger's str).
_DECIMAL_CHECKS = (
    "amount_precision",
    "price_precision",
    "min_notional",
    "max_exposure",
    "max_daily_drawdown",
    "free_balance",
)


def _log_checks(checks: Mapping[str, Mapping[str, Any]]) -> dict[str, Mapping[str, Any]]:
    """``checks`` for the log: the Decimal-valued entries with their values as str.

    The other entries are the decision's own dicts: the logger copies what it is
    given at the call, so the caller of the decision may mutate them afterwards.
    """
    out = dict(checks)
    for name in _DECIMAL_CHECKS:
        entry = out.get(name)
        if entry is not None:
            out[name] = {k: str(v) if type(v) is Decimal else v for k, v in entry.items()}
    return out
