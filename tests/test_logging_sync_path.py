"""``order`` and ``audit`` take the short logging path and still write in the call.

The reference is the processor chain these taxonomies used before (context,
exceptions, masking + timestamp, structlog's JSON renderer): every line must
be byte-identical to it, timestamps aside.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog
from structlog.tracebacks import ExceptionDictTransformer

from phalanx import trace_scope
from phalanx.runtime._log_capture import _add_context
from phalanx.runtime._log_encoding import _dumps, _iso
from phalanx.runtime._logging import BUFFERED, TAXONOMIES, LogManager

SECRET = "sync-path-secret-0123456789"
SYNCHRONOUS = [t for t in TAXONOMIES if t not in BUFFERED]


@pytest.fixture
def logs(tmp_path: Path) -> Iterator[LogManager]:
    manager = LogManager(tmp_path, secrets=[SECRET], node="n1", buffer_interval_s=3600)
    yield manager
    manager.close()


class _Lines:
    """A wrapped logger collecting rendered lines."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def msg(self, line: str) -> None:
        self.lines.append(line)

    info = error = exception = msg


def _reference(logs: LogManager, taxonomy: str) -> tuple[Any, _Lines]:
    """The structlog chain ``order`` and ``audit`` went through before the short path."""

    def mask_and_stamp(logger: Any, method_name: str, event_dict: Any) -> Any:
        masked = logs._mask(event_dict)
        masked["ts"] = _iso(time.time())
        return masked

    exceptions = structlog.processors.ExceptionRenderer(
        ExceptionDictTransformer(show_locals=False, use_rich=False)
    )
    processors = [
        _add_context(taxonomy, "n1"), exceptions, mask_and_stamp,
        structlog.processors.JSONRenderer(serializer=_dumps),
    ]  # fmt: skip
    sink = _Lines()
    return structlog.make_filtering_bound_logger("info")(sink, processors, {}), sink


def _file_lines(logs: LogManager, taxonomy: str) -> list[str]:
    # No flush: a synchronous line is in the file when its call returns.
    return (logs.log_dir / f"{taxonomy}.jsonl").read_text(encoding="utf-8").splitlines()


def _without_ts(line: str) -> str:
    obj = json.loads(line)
    obj["ts"] = "T"
    return json.dumps(obj)


@pytest.mark.parametrize("taxonomy", SYNCHRONOUS)
def test_synchronous_lines_are_byte_identical_to_the_processor_chain_lines(
    logs: LogManager, taxonomy: str
) -> None:
    log = logs.logger(taxonomy)
    reference, sink = _reference(logs, taxonomy)
    bound = log.bind(venue="paper", session_id="bound")
    ref_bound = reference.bind(venue="paper", session_id="bound")
    calls: list[tuple[Any, Any, dict[str, Any]]] = [
        (log, reference, {"a": 1, "b": None, "c": True, "d": 2.5, "e": "text"}),
        (log, reference, {"api_key": "x", "note": f"key={SECRET}", "items": [{"token": "t"}]}),
        (log, reference, {"order_req_id": "the call wins", "nan": float("nan")}),
        (bound, ref_bound, {"venue": "overridden", "extra": [1, {"password": "p"}]}),
        (bound, ref_bound, {}),
    ]
    with trace_scope(session_id="s-1", order_req_id="r-1", path="/orders/o-r-1"):
        for short, chain, fields in calls:
            short.info("order_probe", **fields)
            chain.info("order_probe", **fields)
            assert len(_file_lines(logs, taxonomy)) == len(sink.lines)  # written in the call
    lines = _file_lines(logs, taxonomy)
    assert len(lines) == len(calls)
    for fast, chain in zip(lines, sink.lines, strict=True):
        assert _without_ts(fast) == _without_ts(chain)
        assert fast.index('"level"') == chain.index('"level"')  # same ts width: same bytes


@pytest.mark.parametrize("taxonomy", SYNCHRONOUS)
def test_a_synchronous_exception_line_is_rendered_masked_and_written_in_the_call(
    logs: LogManager, taxonomy: str
) -> None:
    log = logs.logger(taxonomy)
    try:
        raise ValueError(f"boom {SECRET}")
    except ValueError:
        log.exception("failed", step=1)
    [line] = map(json.loads, _file_lines(logs, taxonomy))
    assert line["level"] == "error"
    assert line["step"] == 1
    assert line["exception"][0]["exc_value"] == "boom ***"
