"""The buffered taxonomies' short logging path writes the very lines structlog's chain writes."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from phalanx import trace_scope
from phalanx.runtime._log_encoding import _iso
from phalanx.runtime._logging import BUFFERED, LogManager

SECRET = "fast-path-secret-0123456789"


@pytest.fixture
def logs(tmp_path: Path) -> Iterator[LogManager]:
    manager = LogManager(tmp_path, secrets=[SECRET], node="n1", buffer_interval_s=3600)
    yield manager
    manager.close()


def _raw_lines(logs: LogManager, taxonomy: str) -> list[str]:
    logs.flush()
    return (logs.log_dir / f"{taxonomy}.jsonl").read_text(encoding="utf-8").splitlines()


def _without_ts(line: str) -> str:
    """The line with its timestamp blanked (two calls are never stamped alike)."""
    obj = json.loads(line)
    obj["ts"] = "T"
    return json.dumps(obj)


def _structlog_chain(log: Any) -> Callable[..., Any]:
    """The same level method of the base class: structlog's own path through the processor."""
    base = type(log).__mro__[1]
    return lambda event, **kw: base.info(log, event, **kw)


def test_a_tracer_line_from_the_fast_path_has_the_expected_fields_in_order(
    logs: LogManager,
) -> None:
    log = logs.logger("tracer")
    assert type(log).info is not type(log).__mro__[1].info  # the short path is the one taken
    before = time.time()
    with trace_scope(session_id="s-1", order_req_id="r-1", path="/exchanges/paper"):
        log.info(
            "exchange_call", exchange="paper", endpoint="create_order", latency_ms=1.25,
            status="ok", timeout_ms=10000, rate_limit_waited_ms=0.0, attempt=1,
            message_id="m-1", breaker="closed", url=f"/order?signature=abc&k={SECRET}",
            nested={"api_key": "k", "n": [1, 2]},
        )  # fmt: skip
    after = time.time()
    [raw] = _raw_lines(logs, "tracer")
    line = json.loads(raw)
    stamp = datetime.fromisoformat(line.pop("ts").replace("Z", "+00:00")).timestamp()
    assert before - 1e-6 <= stamp <= after + 1e-6  # taken at the call, to the microsecond
    assert list(line.items()) == [
        ("level", "info"), ("event", "exchange_call"), ("taxonomy", "tracer"), ("node", "n1"),
        ("actor", "/exchanges/paper"), ("session_id", "s-1"), ("order_req_id", "r-1"),
        ("exchange", "paper"), ("endpoint", "create_order"), ("latency_ms", 1.25),
        ("status", "ok"), ("timeout_ms", 10000), ("rate_limit_waited_ms", 0.0), ("attempt", 1),
        ("message_id", "m-1"), ("breaker", "closed"), ("url", "/order?signature=***&k=***"),
        ("nested", {"api_key": "***", "n": [1, 2]}),
    ]  # fmt: skip
    assert raw.startswith('{"ts": "')  # the key order of the file itself


@pytest.mark.parametrize("taxonomy", BUFFERED)
def test_fast_path_lines_are_byte_identical_to_structlog_chain_lines(
    logs: LogManager, taxonomy: str
) -> None:
    log = logs.logger(taxonomy)
    bound = log.bind(venue="paper", event="bound event is replaced", session_id="bound")
    calls: list[tuple[Any, dict[str, Any]]] = [
        (log, {"a": 1, "b": None, "c": True, "d": 2.5, "e": "text"}),
        (log, {"secret_value": "x", "note": f"key={SECRET}", "items": [{"token": "t"}]}),
        (log, {"session_id": "the call wins", "level": "custom", "nan": float("nan")}),
        (bound, {"venue": "overridden", "extra": [1, {"password": "p"}]}),
        (bound, {}),
    ]
    with trace_scope(session_id="s-1", saga_id="g-1", path="/sagas/g-1"):
        for logger, fields in calls:
            logger.info("probe", **fields)
            _structlog_chain(logger)("probe", **fields)
    lines = _raw_lines(logs, taxonomy)
    assert len(lines) == 2 * len(calls)
    for fast, chain in zip(lines[::2], lines[1::2], strict=True):
        assert _without_ts(fast) == _without_ts(chain)
        assert fast.index('"level"') == chain.index('"level"')  # same ts width: same bytes


def test_every_level_and_alias_keeps_its_level_name_on_the_fast_path(logs: LogManager) -> None:
    log = logs.logger("decision")
    log.debug("below the info level: dropped")
    log.info("i")
    log.msg("m")
    log.warning("w")
    log.warn("w2")
    log.error("e")
    log.critical("c")
    log.fatal("f")
    got = [(x["event"], x["level"]) for x in map(json.loads, _raw_lines(logs, "decision"))]
    assert got == [
        ("i", "info"), ("m", "info"), ("w", "warning"), ("w2", "warning"), ("e", "error"),
        ("c", "critical"), ("f", "critical"),
    ]  # fmt: skip


def test_interpolation_and_exceptions_still_take_the_processor_chain(logs: LogManager) -> None:
    log = logs.logger("health")
    log.info("%s of %d", "three", 3)
    try:
        raise ValueError(f"boom {SECRET}")
    except ValueError:
        log.exception("failed", step=1)
        log.info("with exc_info", exc_info=True)
    interpolated, failed, explicit = map(json.loads, _raw_lines(logs, "health"))
    assert interpolated["event"] == "three of 3"
    assert failed["level"] == "error"
    assert failed["step"] == 1
    for line in (failed, explicit):
        assert line["exception"][0]["exc_type"] == "ValueError"
        assert line["exception"][0]["exc_value"] == "boom ***"


def _datetime_iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="microseconds")[:-6] + "Z"


@settings(max_examples=2000, deadline=None)
@given(st.floats(min_value=0, max_value=4e9, allow_nan=False))
def test_line_timestamps_are_the_text_datetime_makes(timestamp: float) -> None:
    assert _iso(timestamp) == _datetime_iso(timestamp)


@pytest.mark.parametrize(
    "timestamp",
    [0.0, 1.0000005, 1.0000015, 1.9999995, 1.9999999, 1700000000.9999996, 1700000000.0000005,
     1767225599.9999999, time.time(), -1.5],
)  # fmt: skip
def test_line_timestamps_round_microseconds_and_carry_seconds_as_datetime(timestamp: float) -> None:
    assert _iso(timestamp) == _datetime_iso(timestamp)


def test_a_buffered_line_is_encoded_exactly_as_json_dumps_encodes_it(logs: LogManager) -> None:
    logs.logger("tracer").info(
        "probe", text='é "quoted" \u2028', big=1e300, neg=-0.0, n=None, ok=True, items=[1, {}]
    )
    [raw] = _raw_lines(logs, "tracer")
    assert json.dumps(json.loads(raw)) == raw
    assert '"text": "\\u00e9 \\"quoted\\" \\u2028"' in raw


_values = st.recursive(
    st.one_of(
        st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(),
        st.text(max_size=12), st.sampled_from([SECRET, f"k={SECRET}", "token: abc", "é\u2028"]),
        st.decimals(allow_nan=False, places=3),
    ),
    lambda inner: st.lists(inner, max_size=3)
    | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=6,
)  # fmt: skip
_keys = st.one_of(st.text(max_size=10), st.sampled_from(["api_key", "secret", "level", "ts", "é"]))


@settings(max_examples=400, deadline=None)
@given(st.dictionaries(_keys, _values, max_size=8), st.floats(0, 4e9))
def test_fragment_lines_are_the_text_of_masking_then_json_encoding(
    tmp_path_factory: pytest.TempPathFactory, fields: dict[str, Any], stamp: float
) -> None:
    logs = LogManager(tmp_path_factory.mktemp("logs"), secrets=[SECRET], buffer_interval_s=3600)
    try:
        line = {"ts": 0.0, "level": "info", "event": "e", **fields}
        line["ts"] = stamp  # first in the line, whatever the fields hold
        for _ in range(2):  # the second pass reads the fragment cache
            assert logs._line_text(line) == logs._line_text_general(line)
    finally:
        logs.close()


def test_a_line_with_a_key_that_is_not_text_is_rendered_by_the_general_path(
    logs: LogManager,
) -> None:
    line = {"ts": 1.0, "event": "e", 7: "seven", None: 1}
    with pytest.raises(TypeError):
        logs._line_text(line)
    assert logs._render(line) == logs._line_text_general(line)
