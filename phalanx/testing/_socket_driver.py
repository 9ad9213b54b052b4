"""The control-socket :class:`Driver`: a campaign against a ``phalanx run`` node from outside.

Each driver method maps to the node's control socket (``VAR/control.sock``),
the venue's admin API (``/__venue/...``) or the node's process:

- ``list_paths`` / ``kill`` / ``flood``: control ``paths``, ``kill``, ``tell``;
- ``inject_fault``: ``POST /__venue/faults`` (needs ``venue_url``);
- ``sigkill_and_restart``: SIGKILL the pid in ``VAR/node.pid``, wait until the
  kernel released ``VAR/node.lock``, start the node again with the command in
  ``VAR/node.cmd`` (written by ``phalanx run``) or ``restart_cmd``, and wait
  for its control socket and its ``/sagas`` supervisor (trading resumed);
- ``verdict``: read the venue's leftover faults and clear them, pause and stop
  ``/strategy``, wait (bounded) until no saga actor lives, judge conservation
  on the node's ``metrics`` counters (polled until the books close), shut the
  node down in order (unless ``leave_running``), then ``check_all`` on a
  readonly :class:`Storage` and :meth:`VenueState.fetch`.

The venue must outlive the node (a separate ``phalanx venue`` process):
an embedded venue dies with a SIGKILLed node and takes the evidence with it.
A restarted node inherits this process's environment (api keys, test-only
switches); its output is appended to ``VAR/node.restart.log``.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from phalanx.cli._client import ControlClient, NodeUnreachable
from phalanx.protocols.control import ControlError
from phalanx.storage import Storage
from phalanx.testing._campaign_run import ChaosUnsupported
from phalanx.testing._check_conservation import check_counters
from phalanx.testing._invariant_result import DEFAULT_ACCOUNT, InvariantResult
from phalanx.testing._node_process import (
    _POLL_S,
    _node_pid,
    _restart_command,
    _start_node,
    _wait_released,
)
from phalanx.testing._venue_state import VenueState
from phalanx.testing._verdict import Verdict, check_all

__all__ = ["CREATE_ENDPOINT", "SocketDriver"]

CREATE_ENDPOINT = "POST /api/v3/order"
"""The venue endpoint of order placement (what ``fault_ratio`` is measured on)."""


def _gap(c: Mapping[str, Any]) -> int:
    keys = ("handled", "dead_lettered", "queued", "journaled")
    return int(c["sent"]) - sum(int(c[k]) for k in keys)


class SocketDriver:
    """Drive a campaign against the node whose var dir is ``var_dir`` (see module doc).

    ``venue_url`` (``http://127.0.0.1:PORT``) enables venue faults and the
    venue-side invariants. ``restart_cmd`` overrides ``VAR/node.cmd``.
    ``fault_endpoint`` replaces the ``*`` endpoint of planned faults (5xx,
    bans), so they hit that endpoint only. ``progress`` receives one line per
    notable step. Facts for the verdict (faults injected, node kills, restart
    times, the measured ``fault_ratio``) are merged into ``verdict.campaign``::

        driver = SocketDriver("var/chaos", "http://127.0.0.1:8123").connect()
        plan = plan_campaign(7, 60, kill_rate=2, fault_rate=0.6, node_kills=2)
        verdict = run_campaign(plan, driver)   # the node is shut down in order
        assert verdict.ok, verdict.dumps(indent=1)
    """

    def __init__(
        self,
        var_dir: str | Path,
        venue_url: str | None = None,
        *,
        restart_cmd: Sequence[str] | None = None,
        fault_endpoint: str | None = None,
        account: str = DEFAULT_ACCOUNT,
        timeout: float = 15.0,
        boot_timeout: float = 120.0,
        settle_timeout: float = 60.0,
        leave_running: bool = False,
        progress: Callable[[str], object] = print,
    ) -> None:
        self.var_dir = Path(var_dir)
        self.venue_url = venue_url.rstrip("/") if venue_url else None
        self.restart_cmd = list(restart_cmd) if restart_cmd else None
        self.fault_endpoint = fault_endpoint
        self.account = account
        self.timeout = timeout
        self.boot_timeout = boot_timeout
        self.settle_timeout = settle_timeout
        self.leave_running = leave_running
        self.progress = progress
        self.children: list[subprocess.Popen[bytes]] = []  # nodes this driver started
        self.facts: dict[str, Any] = {"faults_injected": {}, "node_kills": 0, "restart_s": []}
        self._faults: list[dict[str, Any]] = []
        self._client: ControlClient | None = None
        self._requests_before = 0

    # --- connections ------------------------------------------------------------------

    @property
    def socket_path(self) -> Path:
        """``VAR/control.sock``."""
        return self.var_dir / "control.sock"

    def connect(self) -> SocketDriver:
        """Attach to the node (:class:`NodeUnreachable` if none answers); note the venue's
        request count, so :meth:`verdict` measures this campaign's requests only."""
        self._call("health")
        if self.venue_url is not None:
            self._requests_before = len(self._venue("GET", "/__venue/requests"))
        return self

    def _connection(self) -> ControlClient:
        if self._client is None:
            client = ControlClient(self.socket_path, timeout=self.timeout, client="phalanx-chaos")
            self._client = client.connect()
        return self._client

    def _call(self, cmd: str, **args: Any) -> Any:
        """One control command; reconnects once if the connection was lost."""
        for attempt in (1, 2):
            try:
                return self._connection().call(cmd, **args)
            except NodeUnreachable:
                self.close()
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    def close(self) -> None:
        """Close the control connection (the node keeps running)."""
        if self._client is not None:
            self._client.close()
            self._client = None

    def _venue(self, method: str, path: str, body: Mapping[str, Any] | None = None) -> Any:
        if self.venue_url is None:
            raise ChaosUnsupported("no --venue-url: venue faults are off")
        data = json.dumps(dict(body)).encode() if body is not None else None
        request = urllib.request.Request(f"{self.venue_url}{path}", data=data, method=method)
        request.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(request, timeout=self.timeout) as reply:
            return json.loads(reply.read() or b"null")

    # --- the Driver protocol -------------------------------------------------------------

    def list_paths(self) -> list[str]:
        """Every actor path the node knows (control ``paths``)."""
        return [str(p) for p in self._call("paths")]

    def kill(self, path: str) -> bool:
        """Control ``kill``; False if nothing runs there (``not_found``/``conflict``)."""
        try:
            self._call("kill", path=path)
        except ControlError as exc:
            if exc.code in ("not_found", "conflict"):
                return False
            raise
        return True

    def inject_fault(self, fault: Mapping[str, Any]) -> None:
        """``POST /__venue/faults`` (``*`` endpoints narrowed to ``fault_endpoint``)."""
        body = dict(fault)
        if self.fault_endpoint and body.get("endpoint", "*") == "*":
            body["endpoint"] = self.fault_endpoint
        self._venue("POST", "/__venue/faults", body)
        self._faults.append(body)
        injected = self.facts["faults_injected"]
        injected[body["kind"]] = injected.get(body["kind"], 0) + 1

    def flood(self, path: str, n: int) -> int:
        """``n`` control ``tell`` s of a plain message no actor handles; how many went out."""
        sent = 0
        for i in range(n):
            try:
                self._call("tell", path=path, type="plain", body={"phalanx_chaos_flood": i})
            except ControlError as exc:
                if exc.code == "shutting_down":
                    break
                raise
            sent += 1
        return sent

    def sigkill_and_restart(self) -> None:
        """SIGKILL the node, start it again, wait for its socket and ``/sagas``."""
        argv, cwd = _restart_command(self.var_dir, self.restart_cmd)
        pid = _node_pid(self.var_dir)
        started = time.monotonic()
        self.close()
        os.kill(pid, signal.SIGKILL)
        _wait_released(self.var_dir, self.children, self.boot_timeout)
        self.facts["node_kills"] += 1
        child = _start_node(argv, cwd, self.var_dir)
        self.children.append(child)
        self._wait_trading(child, started + self.boot_timeout)
        self.facts["restart_s"].append(round(time.monotonic() - started, 3))

    def _wait_trading(self, child: subprocess.Popen[bytes], deadline: float) -> None:
        """Until the new node answers and its ``/sagas`` supervisor is up (trading resumed)."""
        while True:
            if child.poll() is not None:
                raise RuntimeError(
                    f"the restarted node exited with {child.returncode} "
                    f"(see {self.var_dir / 'node.restart.log'})"
                )
            try:
                if "/sagas" in self.list_paths():
                    return
            except (NodeUnreachable, ControlError):
                self.close()
            if time.monotonic() >= deadline:
                raise RuntimeError(f"the restarted node was not trading in {self.boot_timeout}s")
            time.sleep(_POLL_S)  # sleep-ok: bounded wait for another process to boot

    def verdict(self) -> Verdict:
        """End the chaos, let the node settle (bounded), check every invariant from outside."""
        facts: dict[str, Any] = {}
        if self.venue_url is not None:
            left = self._venue("GET", "/__venue/faults")
            self._venue("DELETE", "/__venue/faults")
            facts.update(self._fault_ratio(left))
        results: list[InvariantResult] = []
        try:
            self._stop_strategy()
            facts["settled"] = self._settle()
            results.append(self._conservation())
            if not self.leave_running:
                self._call("shutdown")
        except (NodeUnreachable, ControlError) as exc:
            facts["node_error"] = str(exc)
            results.append(InvariantResult("conservation", False, {"violation": str(exc)}))
        self.close()
        if not self.leave_running:
            facts["node_stopped"] = _wait_released(self.var_dir, self.children, self.settle_timeout)
            for child in self.children:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    child.wait(self.timeout)
        venue = VenueState.fetch(self.venue_url, self.account) if self.venue_url else None
        storage = Storage(self.var_dir / "state.lmdb", readonly=True)
        try:
            verdict = check_all(storage, venue, account=self.account)
        finally:
            storage.close()
        return Verdict.of([*results, *verdict.invariants.values()], **self.facts, **facts)

    def _stop_strategy(self) -> None:
        with contextlib.suppress(ControlError):  # no strategy (or already stopped)
            self._call("ask", path="/strategy", type="strategy.pause", body={}, timeout=10.0)
            self._call("stop", path="/strategy")

    def _settle(self) -> bool:
        """Wait (bounded) until no saga actor lives; True if none is left."""
        deadline = time.monotonic() + self.settle_timeout
        while any(p.startswith("/sagas/") for p in self.list_paths()):
            if time.monotonic() >= deadline:
                return False
            time.sleep(_POLL_S)  # sleep-ok: bounded polling of another process
        return True

    def _conservation(self) -> InvariantResult:
        """Conservation on the node's counters, polled (bounded) until the books close."""
        deadline = time.monotonic() + 10.0
        counters = self._call("metrics")["counters"]
        while _gap(counters) and time.monotonic() < deadline:
            time.sleep(0.01)  # sleep-ok: bounded polling for quiescence
            counters = self._call("metrics")["counters"]
        return check_counters({k: int(v) for k, v in counters.items()})

    def _fault_ratio(self, left: list[Mapping[str, Any]]) -> dict[str, Any]:
        """How many order placements the campaign's faults hit, over all placements."""
        requests = self._venue("GET", "/__venue/requests")[self._requests_before :]
        creates = sum(1 for r in requests if f"{r['method']} {r['path']}" == CREATE_ENDPOINT)
        aimed = sum(1 for f in self._faults if f.get("endpoint") == CREATE_ENDPOINT)
        unused = sum(int(f.get("count", 1)) for f in left if f.get("endpoint") == CREATE_ENDPOINT)
        hit = aimed - unused
        return {
            "venue_requests": len(requests),
            "create_requests": creates,
            "faulted_creates": hit,
            "fault_ratio": round(hit / creates, 4) if creates else 0.0,
            "faults_left_unused": len(left),
        }
