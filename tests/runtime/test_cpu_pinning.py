"""``pin_to_one_cpu`` and ``cpu_affinity``: every thread on one allowed CPU, bad CPUs refused.

Pinning is process-wide, so anything that pins runs in a child process: the
suite itself must keep every CPU it started with.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from phalanx.errors import ConfigError
from phalanx.runtime import _affinity
from phalanx.runtime._config import NodeConfig, load_config

ROOT = Path(__file__).resolve().parents[2]
ALLOWED = sorted(os.sched_getaffinity(0))

pytestmark = pytest.mark.skipif(
    not hasattr(os, "sched_setaffinity"), reason="no sched_setaffinity on this platform"
)


def _child(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        check=False,
    )


def test_every_thread_alive_at_the_pin_and_every_later_one_runs_on_the_one_chosen_cpu() -> None:
    result = _child(
        """
        import json, os, threading
        from phalanx.runtime import pin_to_one_cpu
        release = threading.Event()
        def wait():
            release.wait(30)
        before = [threading.Thread(target=wait) for _ in range(3)]
        for t in before:
            t.start()
        pinning = pin_to_one_cpu()
        after = threading.Thread(target=wait)
        after.start()
        tids = [int(t) for t in os.listdir("/proc/self/task")]
        masks = sorted({tuple(sorted(os.sched_getaffinity(tid))) for tid in tids})
        release.set()
        for t in [*before, after]:
            t.join()
        print(json.dumps({"cpu": pinning.cpu, "allowed": pinning.allowed, "threads":
                          pinning.threads, "reason": pinning.reason, "masks": masks,
                          "alive": len(tids)}))
        """
    )
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["reason"] == "pinned"
    assert out["cpu"] in ALLOWED
    assert out["allowed"] == ALLOWED
    assert out["threads"] == out["alive"] - 1  # all but the one started after the pin
    assert out["masks"] == [[out["cpu"]]]  # all 5 threads, the one started after included


def test_an_explicit_cpu_is_used_and_one_the_process_may_not_run_on_is_refused() -> None:
    target, beyond = ALLOWED[0], max(ALLOWED) + 1
    result = _child(
        f"""
        import os
        from phalanx.runtime import pin_to_one_cpu
        try:
            pin_to_one_cpu({beyond})
        except ValueError as exc:
            print("refused:", exc, sorted(os.sched_getaffinity(0)))
        pinning = pin_to_one_cpu({target})
        print(pinning.cpu, pinning.reason, sorted(os.sched_getaffinity(0)))
        """
    )
    assert result.returncode == 0, result.stderr
    refused, pinned = result.stdout.splitlines()
    # Refused before anything changed: the mask is still the whole allowed set.
    assert (
        refused == f"refused: CPU {beyond} is not one this process may run on: {ALLOWED} {ALLOWED}"
    )
    assert pinned == f"{target} pinned [{target}]"


def test_a_pin_refused_part_way_leaves_every_thread_with_the_mask_it_had() -> None:
    result = _child(
        """
        import json, os, threading
        from phalanx.runtime import pin_to_one_cpu
        release = threading.Event()
        threads = [threading.Thread(target=release.wait, args=(30,)) for _ in range(3)]
        for t in threads:
            t.start()
        def masks():
            return sorted({tuple(sorted(os.sched_getaffinity(int(tid))))
                           for tid in os.listdir("/proc/self/task")})
        before = masks()
        real, calls = os.sched_setaffinity, []
        def flaky(tid, mask):
            calls.append(tid)
            if len(calls) == 3:  # the third thread's pin is refused
                raise PermissionError(1, "Operation not permitted")
            real(tid, mask)
        os.sched_setaffinity = flaky
        pinning = pin_to_one_cpu()
        os.sched_setaffinity = real
        after = masks()
        release.set()
        for t in threads:
            t.join()
        print(json.dumps({"cpu": pinning.cpu, "reason": pinning.reason, "before": before,
                          "after": after}))
        """
    )
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["cpu"] is None
    assert out["reason"].startswith("refused: ")
    assert "not permitted" in out["reason"]
    assert out["after"] == out["before"] == [ALLOWED]


def test_the_least_busy_cpu_is_chosen_and_a_tie_is_broken_by_the_process_id(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def sampled(*samples: dict[int, int]) -> None:
        it = iter(samples)
        monkeypatch.setattr(_affinity, "_busy_ticks", lambda: next(it))

    monkeypatch.setattr(_affinity.time, "sleep", lambda s: None)
    sampled({0: 100, 1: 100, 2: 100}, {0: 150, 1: 190, 2: 160})
    assert _affinity._least_busy((0, 1, 2)) == 0
    sampled({0: 0, 1: 0, 2: 5}, {0: 5, 1: 1, 2: 5})
    assert _affinity._least_busy((0, 2)) == 2  # CPU 1 is not allowed, however idle
    for pid, cpu in ((300, 0), (301, 1), (302, 2)):  # an idle machine: spread by pid
        monkeypatch.setattr(_affinity.os, "getpid", lambda pid=pid: pid)
        sampled({0: 0, 1: 0, 2: 0}, {0: 5, 1: 5, 2: 5})
        assert _affinity._least_busy((0, 1, 2)) == cpu
    monkeypatch.setattr(_affinity, "_busy_ticks", dict)  # no /proc/stat
    assert _affinity._least_busy((0, 1)) == 1


def test_busy_ticks_count_user_nice_system_irq_softirq_and_steal_per_cpu(tmp_path: Path) -> None:
    stat = tmp_path / "stat"
    stat.write_text(
        "cpu  9 9 9 9 9 9 9 9 9 9\n"
        "cpu0 1 2 3 1000 500 4 5 6 70 80\n"  # idle, iowait and guest are not added
        "cpu1 10 0 0 0 0 0 0 0 0 0\n"
        "intr 12345\n"
    )
    assert _affinity._busy_ticks(str(stat)) == {0: 21, 1: 10}
    assert _affinity._busy_ticks(str(tmp_path / "missing")) == {}


def test_cpu_affinity_takes_one_inherit_or_a_cpu_number_and_names_the_field_otherwise(
    tmp_path: Path,
) -> None:
    assert NodeConfig().cpu_affinity == "one"
    assert NodeConfig(cpu_affinity="inherit").cpu_affinity == "inherit"
    assert NodeConfig(cpu_affinity=1).cpu_affinity == 1
    for bad in ('"two"', "-1", "true", '"1"', "1.0"):  # a CPU is a TOML integer, nothing else
        path = tmp_path / "node.toml"
        path.write_text(f"cpu_affinity = {bad}\n")
        with pytest.raises(ConfigError, match="cpu_affinity"):
            load_config(path)


def _run_node(tmp_path: Path, affinity: str) -> subprocess.CompletedProcess[str]:
    config = tmp_path / "node.toml"
    config.write_text(f"demo = false\ncpu_affinity = {affinity}\n")
    return subprocess.run(
        [sys.executable, "-m", "phalanx", "run", "-c", str(config),
         "--var-dir", str(tmp_path / "var"), "--for", "0.5"],
        capture_output=True, text=True, timeout=60,
        env={**os.environ, "PYTHONPATH": str(ROOT)}, check=False,
    )  # fmt: skip


def test_phalanx_run_pins_its_node_says_where_and_writes_a_health_line(tmp_path: Path) -> None:
    result = _run_node(tmp_path, '"one"')
    assert result.returncode == 0, result.stderr
    line = next(x for x in result.stdout.splitlines() if x.startswith("  cpu:"))
    cpu = int(line.split("CPU ", 1)[1].split()[0])
    assert cpu in ALLOWED
    assert line.endswith(f'of {ALLOWED} (cpu_affinity = "one")')
    health = [json.loads(x) for x in (tmp_path / "var/logs/health.jsonl").read_text().splitlines()]
    (event,) = [e for e in health if e["event"] == "cpu_pinning"]
    assert (event["cpu"], event["allowed"], event["reason"]) == (cpu, ALLOWED, "pinned")
    assert event["threads"] >= 1


def test_phalanx_run_with_a_cpu_it_may_not_run_on_exits_2_naming_cpu_affinity(
    tmp_path: Path,
) -> None:
    result = _run_node(tmp_path, str(max(ALLOWED) + 1))
    assert result.returncode == 2
    assert "cpu_affinity" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "var").exists()  # refused before the node started
