"""A trading node as a subprocess: an Order actor killed through ``phalanx ctl`` restarts."""

from __future__ import annotations

import shutil
from typing import Any

from .conftest import Node, poll_until, short_tmpdir

# Limit orders priced far from the touch rest at the venue until the saga's long
# fill timeout, so each Order actor lives long enough to be found and killed.
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
symbols = ["BTC/USDT"]
threshold_bps = 0
offset_bps = 800
max_sagas = 2
max_in_flight = 2
fill_timeout_s = 60
"""


def _orders(node: Node) -> dict[str, dict[str, Any]]:
    rows = node.ctl("ps", "--prefix", "/orders/")
    assert isinstance(rows, list), getattr(rows, "stderr", rows)
    return {r["path"]: r for r in rows if r["path"].startswith("/orders/o-")}


def _inspect(node: Node, path: str) -> dict[str, Any] | None:
    """``ctl inspect`` of ``path``, or None while it cannot answer (ended, restarting)."""
    out = node.ctl("inspect", path)
    return out if isinstance(out, dict) and isinstance(out.get("state"), dict) else None


def test_kill_of_an_order_actor_raises_its_restart_count_and_it_resumes() -> None:
    var = short_tmpdir() / "var"
    node = Node(var, seconds=90, config_text=RESTING_ORDERS_CONFIG)
    try:
        placed: dict[str, Any] = {}

        def resting_order() -> bool:
            # Running is not enough: killed before its ack, an order resumes as
            # "unknown" and looks itself up, which takes longer on a loaded box.
            for path, row in _orders(node).items():
                if row["status"] == "running" and row["restarts"] == 0:
                    seen = _inspect(node, path)
                    if seen is not None and seen["state"].get("exchange_order_id") is not None:
                        placed.update(path=path, venue_id=seen["state"]["exchange_order_id"])
                        return True
            return False

        poll_until(resting_order, timeout=60)
        path = placed["path"]
        assert node.ctl("kill", path)["killed"] is True
        poll_until(lambda: _orders(node).get(path, {}).get("restarts", 0) >= 1, timeout=30)

        # ps counts the restart from its start: wait until the new incarnation has
        # loaded its record (a lost venue id would time out here, and fail).
        def resumed() -> dict[str, Any] | None:
            seen = _inspect(node, path)
            if seen is None or seen["incarnation"] < 2:
                return None
            return seen if seen["state"].get("exchange_order_id") is not None else None

        # The new incarnation resumed from its record: the same order, placed once.
        inspected = poll_until(resumed, timeout=30)
        assert path.endswith(inspected["state"]["order_req_id"])
        assert inspected["state"]["exchange_order_id"] == placed["venue_id"]
        assert any(e["kind"] == "actor_killed" for e in inspected["recent_events"])
    finally:
        node.stop()
        shutil.rmtree(var.parent, ignore_errors=True)
