"""A trading node as a subprocess: an Order actor killed through ``phalanx ctl`` restarts."""

from __future__ import annotations

import json
import shutil
from typing import Any

import pytest

from .conftest import Node, poll_until, short_tmpdir

# Limit orders priced far from the touch rest at the venue until the saga's long
# fill timeout, so each Order actor lives long enough to be found and killed.
# The strategy prices an idea 0, 1 or 2 offsets past the touch by a seeded
# coin: with its default seed (7) both of its first two ideas sit AT the touch
# (offset 0), where the walk may fill them within milliseconds, so whether a
# resting order was left to find depended on timing (a loaded CI run found
# none in 60 s). Seed 11 puts its first three ideas 2 offsets (16%) away, so
# both orders rest. The fill timeout (300 s) outlives every wait below; the
# node's --for bound matches it (node.stop() ends it).
RESTING_ORDERS_CONFIG = """
name = "ctlorders"
demo = false
[venue]
seed = 7
[[exchanges]]
name = "paper"
use_venue = true
rate_limit_per_s = 2000
burst = 200
[trading.strategy]
seed = 11
symbols = ["BTC/USDT"]
threshold_bps = 0
offset_bps = 800
max_sagas = 2
max_in_flight = 2
fill_timeout_s = 300
"""


def _orders(node: Node) -> dict[str, dict[str, Any]]:
    rows = node.ctl("ps", "--prefix", "/orders/")
    assert isinstance(rows, list), getattr(rows, "stderr", rows)
    return {r["path"]: r for r in rows if r["path"].startswith("/orders/o-")}


def _order_lines(node: Node, order_req_id: str) -> list[dict[str, Any]]:
    """The ``order`` log's lines of one order (written and flushed by each call)."""
    log = node.var / "logs" / "order.jsonl"
    lines = log.read_text().splitlines() if log.exists() else []
    parsed = [json.loads(line) for line in lines if line.endswith("}")]
    return [line for line in parsed if line.get("order_req_id") == order_req_id]


def _inspect(node: Node, path: str) -> dict[str, Any] | None:
    """``ctl inspect`` of ``path``, or None while it cannot answer (ended, restarting)."""
    out = node.ctl("inspect", path)
    return out if isinstance(out, dict) and isinstance(out.get("state"), dict) else None


def test_kill_of_an_order_actor_raises_its_restart_count_and_it_resumes() -> None:
    var = short_tmpdir() / "var"
    node = Node(var, seconds=300, config_text=RESTING_ORDERS_CONFIG)
    try:
        placed: dict[str, Any] = {}

        def resting_order() -> bool:
            # Running is not enough: killed before its ack, an order resumes as
            # "unknown" and looks itself up, which takes longer on a loaded box.
            for path, row in _orders(node).items():
                if row["status"] == "running" and row["restarts"] == 0:
                    seen = _inspect(node, path)
                    state = seen["state"] if seen is not None else {}
                    if state.get("exchange_order_id") is not None and state.get("status") == "open":
                        placed.update(path=path, venue_id=state["exchange_order_id"])
                        return True
            return False

        # Should an open order still fill and its actor stop between the look and
        # the kill, the kill finds no actor and the test takes the next one.
        for _ in range(5):
            poll_until(resting_order, timeout=60)
            reply = node.ctl("kill", placed["path"])
            if isinstance(reply, dict) and reply.get("killed") is True:
                break
        else:
            pytest.fail(f"every resting order finished before it could be killed: {reply}")
        path = placed["path"]
        poll_until(lambda: _orders(node).get(path, {}).get("restarts", 0) >= 1, timeout=30)

        req_id = path.rsplit("/o-", 1)[1]

        # ps counts the restart from its start: wait until the new incarnation has
        # loaded its record (a lost venue id would time out here, and fail), or,
        # since an order priced at the touch may fill meanwhile, until it is done.
        def resumed() -> dict[str, Any] | None:
            seen = _inspect(node, path)
            if seen is not None and seen["incarnation"] >= 2:
                return seen if seen["state"].get("exchange_order_id") is not None else None
            done = [line for line in _order_lines(node, req_id) if line["event"] == "order_done"]
            return {"done": done[-1]} if seen is None and done else None

        # The new incarnation resumed from its record: the same order, placed once.
        outcome = poll_until(resumed, timeout=30)
        if "done" in outcome:  # it resumed and finished the order before we looked
            assert outcome["done"]["exchange_order_id"] == placed["venue_id"]
        else:
            assert outcome["state"]["order_req_id"] == req_id
            assert outcome["state"]["exchange_order_id"] == placed["venue_id"]
            assert any(e["kind"] == "actor_killed" for e in outcome["recent_events"])
        attempts = [line for line in _order_lines(node, req_id) if line["event"] == "order_attempt"]
        assert len(attempts) == 1, attempts  # sent once: the restart looked it up
    finally:
        # SIGKILL, not the orderly stop: that gives the two resting sagas the
        # node's whole drain (10 s), and nothing here checks the shutdown.
        node.proc.kill()
        node.stop()
        shutil.rmtree(var.parent, ignore_errors=True)
