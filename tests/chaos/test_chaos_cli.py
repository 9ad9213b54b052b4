"""``phalanx chaos`` against ``phalanx run`` in a subprocess (issue 7).

The venue is a separate ``phalanx venue`` process, so it outlives the node's
SIGKILLs and holds the evidence: every order it accepted, its balances and
fills. The chaos CLI (a subprocess too) attaches to the node's control
socket, runs the seeded campaign (actor kills, restart storms, venue
faults, floods, node SIGKILL + restart from ``VAR/node.cmd``), shuts the
node down in order and prints the JSON verdict. With the broken Order actor
(``PHALANX_TEST_BLIND_RESEND=1``, test only) the verdict must fail and name
the intent that was placed twice.

No sleeps: every wait is on a process's output line or exit, with a deadline.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from phalanx.cli import main

ROOT = Path(__file__).resolve().parents[2]
NODE_TOML = """
name = "chaos-cli-node"
demo = false

[[exchanges]]
name = "paper"
urls = {{ api = {{ public = "{url}/api/v3", private = "{url}/api/v3" }} }}
options = {{ defaultType = "spot", fetchMarkets = {{ types = ["spot"] }}, fetchCurrencies = false, fetchMargins = false }}
api_key_env = "PX_CHAOS_KEY"
secret_env = "PX_CHAOS_SECRET"
rate_limit_per_s = 10000
burst = 1000

[trading.strategy]
seed = 7
max_sagas = 0
interval_s = 0.05
max_in_flight = 6
fill_timeout_s = 0.5
"""  # noqa: E501


def _env(**extra: str) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "PX_CHAOS_KEY": "paper-key",
            "PX_CHAOS_SECRET": "paper-secret", **extra}  # fmt: skip


class _Proc:
    """A ``phalanx ...`` subprocess whose output lines are collected by a reader thread."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "phalanx", *args],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True, env=env,
        )  # fmt: skip
        self.lines: list[str] = []
        self._seen = threading.Condition()
        self._reader = threading.Thread(target=self._drain, name="test-proc-stdout")
        self._reader.start()

    def _drain(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._seen:
                self.lines.append(line)
                self._seen.notify_all()
        with self._seen:
            self._seen.notify_all()

    def wait_line(self, pattern: str, timeout: float) -> re.Match[str]:
        """The first output line matching ``pattern``; fails the test after ``timeout``."""
        regex = re.compile(pattern)

        def found() -> re.Match[str] | None:
            for line in self.lines:
                m = regex.search(line)
                if m:
                    return m
            return None

        with self._seen:
            self._seen.wait_for(lambda: found() is not None or not self._reader.is_alive(),
                                timeout)  # fmt: skip
            m = found()
        if m is None:
            pytest.fail(f"no line matching {pattern!r} within {timeout}s:\n{''.join(self.lines)}")
        return m

    def stop(self) -> None:
        """SIGTERM (then SIGKILL) if still running; reap it and join the reader."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._reader.join(10)


@pytest.fixture
def venue() -> Iterator[str]:
    """A ``phalanx venue`` process on a free loopback port; its URL."""
    proc = _Proc(["venue", "--port", "0", "--seed", "7", "--step", "0.02"], _env())
    try:
        yield proc.wait_line(r"paper venue on (http://127\.0\.0\.1:\d+)", 60).group(1)
    finally:
        proc.stop()


def _kill_leftover_node(var: Path) -> None:
    """Teardown safety net: a node the chaos CLI restarted must not outlive the test."""
    with contextlib.suppress(OSError, ValueError):
        os.kill(int((var / "node.pid").read_text()), signal.SIGKILL)


def campaign(
    tmp_path: Path, url: str, *chaos_args: str, env: dict[str, str] | None = None,
    timeout: float = 600,
) -> tuple[int, dict[str, Any], str]:  # fmt: skip
    """Boot ``phalanx run``, run ``phalanx chaos --json`` at it; (exit code, verdict, stderr)."""
    env = env or _env()
    var = tmp_path / "var"
    config = tmp_path / "node.toml"
    config.write_text(NODE_TOML.format(url=url))
    node = _Proc(["run", "-c", str(config), "--var-dir", str(var), "--for", "900"], env)
    try:
        node.wait_line(r"strategy: mean reversion", 120)  # trading is on
        chaos = subprocess.run(
            [sys.executable, "-m", "phalanx", "chaos", "--var-dir", str(var), "--venue-url", url,
             "--json", *chaos_args],
            capture_output=True, text=True, env=env, timeout=timeout, check=False,
        )  # fmt: skip
        node.proc.wait(60)  # SIGKILLed by the campaign, or shut down in order by it
    finally:
        node.stop()
        _kill_leftover_node(var)
    assert chaos.stdout.strip(), chaos.stderr
    return chaos.returncode, json.loads(chaos.stdout), chaos.stderr


def _assert_passing(code: int, verdict: dict[str, Any], stderr: str) -> None:
    assert code == 0, json.dumps(verdict, indent=1) + stderr[-3000:]
    assert verdict["ok"] is True
    invariants = verdict["invariants"]
    assert set(invariants) == {
        "conservation", "no_duplicate_intents", "sagas_terminal", "ledger_balanced",
        "ledger_matches_venue", "positions_match_fills",
    }  # fmt: skip
    assert all(r["ok"] for r in invariants.values())
    assert invariants["no_duplicate_intents"]["details"]["duplicates"] == {}
    assert invariants["sagas_terminal"]["details"]["not_terminal"] == {}
    assert invariants["sagas_terminal"]["details"]["sagas"] > 0  # it really traded
    assert invariants["conservation"]["details"]["gap"] == 0
    assert invariants["ledger_matches_venue"]["details"]["differences"] == {}
    camp = verdict["campaign"]
    assert camp["errors"] == [], camp
    assert camp["skipped"] == {}, camp
    assert camp["settled"] is True, camp
    assert camp["node_stopped"] is True, camp


def _assert_names_a_duplicate(code: int, verdict: dict[str, Any], stderr: str) -> None:
    assert code == 1, json.dumps(verdict, indent=1) + stderr[-3000:]
    assert verdict["ok"] is False
    dup = verdict["invariants"]["no_duplicate_intents"]
    assert dup["ok"] is False
    duplicates = dup["details"]["duplicates"]
    assert duplicates, dup
    intent, client_ids = next(iter(duplicates.items()))
    # Named by its order_req_id (from the node's idempotency records), not a bare prefix.
    assert not intent.startswith("px-"), intent
    assert len(client_ids) >= 2, client_ids
    assert len(set(client_ids)) == 1, client_ids  # the same client id, accepted twice
    assert intent in dup["details"]["violation"]


# --- without a node ------------------------------------------------------------------


def _cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(argv))
    return code, out.getvalue(), err.getvalue()


def test_the_same_seed_gives_the_same_schedule(tmp_path: Path) -> None:
    args = ("--var-dir", str(tmp_path), "--duration", "30", "--node-kills", "2", "--dry-run",
            "--json")  # fmt: skip
    code, first, _ = _cli("chaos", "--seed", "7", *args)
    assert code == 0
    _, again, _ = _cli("chaos", "--seed", "7", *args)
    _, other, _ = _cli("chaos", "--seed", "8", *args)
    plan = json.loads(first)
    assert first == again
    assert other != first
    kinds = {a["kind"] for a in plan}
    assert kinds == {"kill", "restart_storm", "venue_fault", "flood", "node_sigkill"}
    assert sum(a["kind"] == "node_sigkill" for a in plan) == 2
    assert [a["at_s"] for a in plan] == sorted(a["at_s"] for a in plan)


def test_bad_usage_exits_2_naming_the_option(tmp_path: Path) -> None:
    code, _, err = _cli("chaos", "--var-dir", str(tmp_path), "--seed", "1", "--duration", "0")
    assert code == 2
    assert "--duration" in err
    code, _, err = _cli("chaos", "--var-dir", str(tmp_path), "--seed", "1", "--duration", "5",
                        "--fault-mix", "meteor=1")  # fmt: skip
    assert code == 2
    assert "meteor" in err


def test_no_node_on_the_var_dir_exits_3(tmp_path: Path) -> None:
    code, out, err = _cli("chaos", "--var-dir", str(tmp_path), "--seed", "1", "--duration", "5")
    assert code == 3
    assert "cannot reach the node" in err
    assert out == ""


# --- against a node ------------------------------------------------------------------


@pytest.mark.timeout(300)
def test_a_short_campaign_with_a_node_sigkill_ends_with_a_passing_verdict(
    tmp_path: Path, venue: str
) -> None:
    code, verdict, stderr = campaign(
        tmp_path, venue, "--seed", "7", "--duration", "12", "--kill-rate", "2",
        "--fault-rate", "0.6", "--node-kills", "1", "--storm-rate", "0.1", "--flood-rate", "0.1",
    )  # fmt: skip
    _assert_passing(code, verdict, stderr)
    camp = verdict["campaign"]
    assert camp["node_kills"] == 1
    assert len(camp["restart_s"]) == 1
    assert camp["kills"] >= 10, camp
    assert camp["faulted_creates"] > 0, camp
    assert "node SIGKILLed and restarted" in stderr
    assert "verdict: ok" in stderr


@pytest.mark.timeout(300)
def test_the_blind_resend_order_actor_fails_the_verdict_naming_the_duplicate_intent(
    tmp_path: Path, venue: str
) -> None:
    # Accepted-but-lost faults on order placement: the broken actor resends the same
    # client id, and a marketable order that filled is accepted a second time. A
    # duplicate must happen within the run: 6 s at 2 faults/s once had none on a
    # box shared by three suites (fewer placements), so 8 s at 4 faults/s.
    code, verdict, stderr = campaign(
        tmp_path, venue, "--seed", "7", "--duration", "8", "--kill-rate", "0",
        "--storm-rate", "0", "--flood-rate", "0", "--fault-rate", "4", "--fault-mix", "lost=1",
        env=_env(PHALANX_TEST_BLIND_RESEND="1"),
    )  # fmt: skip
    _assert_names_a_duplicate(code, verdict, stderr)


# --- the campaign: 60 s, >= 50 kills, 2 node SIGKILLs, ~20% faulted orders -----

SIXTY = ("--seed", "7", "--duration", "60", "--kill-rate", "2", "--storm-rate", "0.1",
         "--fault-rate", "0.6", "--flood-rate", "0.1", "--node-kills", "2")  # fmt: skip


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_sixty_seconds_of_chaos_with_two_node_sigkills_end_with_a_passing_verdict(
    tmp_path: Path, venue: str
) -> None:
    code, verdict, stderr = campaign(tmp_path, venue, *SIXTY)
    _assert_passing(code, verdict, stderr)
    camp = verdict["campaign"]
    assert camp["kills"] >= 50, camp
    assert camp["node_kills"] == 2, camp
    assert 0.1 <= camp["fault_ratio"] <= 0.35, camp  # about 20% of order placements
    print(json.dumps(camp))


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_the_sixty_second_campaign_with_blind_resend_fails_naming_the_duplicate(
    tmp_path: Path, venue: str
) -> None:
    code, verdict, stderr = campaign(
        tmp_path, venue, *SIXTY, env=_env(PHALANX_TEST_BLIND_RESEND="1")
    )
    _assert_names_a_duplicate(code, verdict, stderr)
