"""Run every ``bench/*.py`` and write one JSON file: machine, figures, baselines, targets.

Each script runs in its own subprocess (its own session, so a timeout kills
it and whatever it started) with a per-script timeout inside an overall
budget; a script that fails, times out or prints no JSON is recorded as such
and the run goes on. The figures and the ``targets`` table are read from the
scripts' own JSON (``FIGURES`` and ``TARGETS`` below); a ratio a script does
not print is computed here from its fields, and a figure whose fields are
missing is listed as missing, never dropped.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import load_average, machine, stolen_pct, versions, vm_cpu_ticks

HERE = Path(__file__).resolve().parent
# The whole of `make bench` must end within 10 minutes on 2 cores.
BUDGET_S = 570.0
DEFAULT_TIMEOUT_S = 90.0
# Seen with the machine's load average at 5-15 (other agents on the 2 cores),
# quick sizes: mailbox 12 s, supervision 10 s, exchange 12 s, trading 30 s,
# control 35 s, deadletters 60 s, ledger 60 s, scale 150 s. fsync-bound scripts
# slow down most when other processes write to the same disk.
TIMEOUTS_S = {
    "trading": 240.0,  # 3 rounds of each of three throughput figures (~70 s unloaded)
    "control": 120.0,
    "deadletters": 150.0,
    "ledger": 150.0,
    "storage_commit": 150.0,
    "scale": BUDGET_S,  # what is left
}
# Scripts with targets first, then any other script, then scale (which gets
# what is left of the budget, at least RESERVE_S["scale"] kept for it).
ORDER = ("mailbox", "supervision", "exchange", "trading", "control", "deadletters", "ledger")
LAST = ("scale",)
RESERVE_S = {"scale": 150.0}
# Quick mode (the default; --full runs every script as written): the sample
# sizes of the fsync-bound and subprocess-bound scripts, set before their
# ``__main__`` block runs. Same code paths and same figures, fewer samples.
QUICK: dict[str, dict[str, int]] = {
    "deadletters": {"DURABLE": 20_000, "BASELINE_TXNS": 1_000},
    "ledger": {"POSTINGS": 12_000, "BASELINE": 500},
    "control": {"SUBPROCESS_RUNS": 3},
    "storage_commit": {"RUNS": 2, "POSTINGS": 12_000, "OLD_POSTINGS": 3_000, "BASELINE": 500},
}
# Runs a script's module body, applies the size overrides (each must exist),
# then runs its ``if __name__ == "__main__":`` block: the script is not edited.
_BOOT = """
import ast, json, sys
path, sizes = sys.argv[1], json.loads(sys.argv[2])
sys.argv = [path]
tree = ast.parse(open(path).read(), path)
main = [n for n in tree.body if isinstance(n, ast.If) and ast.unparse(n.test)
        in ("__name__ == '__main__'", '__name__ == "__main__"')]
body = ast.Module([n for n in tree.body if n not in main], [])
g = {"__name__": "__main__", "__file__": path, "__builtins__": __builtins__}
exec(compile(body, path, "exec"), g)
unknown = sorted(set(sizes) - set(g))
if unknown:
    raise SystemExit(f"quick mode: {path} has no {unknown}")
g.update(sizes)
for node in main:
    exec(compile(ast.Module(node.body, []), path, "exec"), g)
"""
TAIL = 3000

# --- figures and targets, read from the scripts' JSON ----------------------

Data = dict[str, Any]
Src = str | Callable[[Data], float | None]  # a dotted path in the bench's JSON, or a derivation


def _path(data: Any, path: str) -> float | None:
    node = data
    for key in path.split("."):
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    if isinstance(node, bool) or not isinstance(node, int | float):
        return None
    return float(node)


def _read(data: Data | None, src: Src) -> float | None:
    if data is None:
        return None
    return _path(data, src) if isinstance(src, str) else src(data)


def _describe(src: Src) -> str:
    return src if isinstance(src, str) else (src.__doc__ or "derived").strip()


def _div(num: str, den: str, scale: float = 1.0, doc: str = "") -> Callable[[Data], float | None]:
    def get(data: Data) -> float | None:
        a, b = _path(data, num), _path(data, den)
        return None if a is None or not b else scale * a / b

    get.__doc__ = doc or f"{scale:g} * {num} / {den}" if scale != 1 else doc or f"{num} / {den}"
    return get


def _first(*srcs: Src) -> Callable[[Data], float | None]:
    def get(data: Data) -> float | None:
        for src in srcs:
            value = _read(data, src)
            if value is not None:
                return value
        return None

    get.__doc__ = " or ".join(_describe(s) for s in srcs)
    return get


def _overhead_pct(data: Data) -> float | None:
    """(create_cancel_round_trips.ccxt_direct_per_s / .through_connection_per_s - 1) * 100"""
    ratio = _div(
        "create_cancel_round_trips.ccxt_direct_per_s",
        "create_cancel_round_trips.through_connection_per_s",
    )(data)
    return None if ratio is None else (ratio - 1) * 100


def _sequential_ccxt_per_s(data: Data) -> float | None:
    """1000 / placement_latency.ccxt_create_order_ms (direct ccxt create_order, sequential)"""
    ms = _path(data, "placement_latency.ccxt_create_order_ms")
    return 1000 / ms if ms else None


def _storm_baseline(data: Data) -> float | None:
    """restart_storm.children * restart_latency_ms.baseline_raw_pykka_start_p50"""
    n = _path(data, "restart_storm.children")
    p50 = _path(data, "restart_latency_ms.baseline_raw_pykka_start_p50")
    return None if n is None or p50 is None else n * p50


@dataclass(frozen=True)
class Figure:
    """One figure of one script, next to its same-run baseline."""

    name: str
    bench: str
    meaning: str
    value: Src
    unit: str
    baseline: Src | None = None
    baseline_what: str | None = None
    ratio: Src | None = None  # the script's own ratio; else value / baseline


FIGURES: tuple[Figure, ...] = (
    Figure(
        "tell_throughput",
        "mailbox",
        "Ref.tell to one actor, until handled",
        "tell.phalanx_msgs_per_s",
        "msgs/s",
        "tell.pykka_msgs_per_s",
        "raw pykka ThreadingActor tell",
        "tell.ratio",
    ),
    Figure(
        "ask_round_trip",
        "mailbox",
        "Ref.ask round trip to one actor",
        "ask_round_trip.phalanx_us",
        "us",
        "ask_round_trip.pykka_us",
        "raw pykka ask().get()",
        "ask_round_trip.ratio",
    ),
    Figure(
        "overflow_spill",
        "deadletters",
        "tells to a full mailbox, dead-lettered to LMDB, fsync",
        "overflow_spill.per_s",
        "dead letters/s",
        "overflow_spill.baseline_one_txn_per_message_per_s",
        "one LMDB write txn per message, fsync",
        "overflow_spill.ratio_vs_baseline",
    ),
    Figure(
        "durable_mailbox_tell_many",
        "deadletters",
        "tell_many(100) to a durable mailbox, fsync per commit, until handled",
        "durable_mailbox.msgs_per_s.1_sender_tell_many_100_sync_on",
        "msgs/s",
        "durable_mailbox.baseline_one_txn_per_message_per_s",
        "one LMDB write txn per message, fsync",
    ),
    Figure(
        "durable_mailbox_tell_many_vs_plain",
        "deadletters",
        "the same, against the same actor with a non-durable mailbox",
        "durable_mailbox.msgs_per_s.1_sender_tell_many_100_sync_on",
        "msgs/s",
        "durable_mailbox.baseline_non_durable_msgs_per_s",
        "non-durable mailbox tell",
    ),
    Figure(
        "durable_mailbox_single_tell",
        "deadletters",
        "one durable tell per message, each waiting for its commit, fsync",
        "durable_mailbox.msgs_per_s.1_senders_sync_on",
        "msgs/s",
        "durable_mailbox.baseline_one_txn_per_message_per_s",
        "one LMDB write txn per message, fsync",
    ),
    Figure(
        "restart_latency_p99",
        "supervision",
        "crash to next message handled, new incarnation",
        "restart_latency_ms.p99",
        "ms",
        "restart_latency_ms.baseline_raw_pykka_start_p99",
        "raw pykka start + first ask, p99",
    ),
    Figure(
        "restart_latency_p50",
        "supervision",
        "the same, median",
        "restart_latency_ms.p50",
        "ms",
        "restart_latency_ms.baseline_raw_pykka_start_p50",
        "raw pykka start + first ask, p50",
        "restart_latency_ms.ratio_p50",
    ),
    Figure(
        "restart_storm_100",
        "supervision",
        "100 children under one_for_all, one crashes: all up",
        "restart_storm.ms_to_fully_restarted",
        "ms",
        _storm_baseline,
        "100 raw pykka starts at the same run's p50 (derived)",
    ),
    Figure(
        "create_cancel_round_trips",
        "exchange",
        "create + cancel through ExchangeConnection -> ccxt -> HTTP -> venue",
        "create_cancel_round_trips.through_connection_per_s",
        "round trips/s",
        "create_cancel_round_trips.ccxt_direct_per_s",
        "the same ccxt calls made directly",
    ),
    Figure(
        "venue_matching",
        "exchange",
        "paper venue matching engine alone, no HTTP",
        "venue_matching_orders_per_s",
        "orders/s",
    ),
    Figure(
        "buy_sagas",
        "trading",
        "buy sagas end to end on the embedded venue, 32 in flight",
        "buy_sagas.sagas_per_s",
        "sagas/s",
        _sequential_ccxt_per_s,
        "direct ccxt create_order, sequential (derived from its latency)",
    ),
    Figure(
        "buy_sagas_vs_bare_pykka",
        "trading",
        "buy sagas, next to the same flow in bare pykka (no guarantees), interleaved rounds",
        "buy_sagas.sagas_per_s",
        "sagas/s",
        "buy_sagas_bare_pykka.sagas_per_s",
        "the same actors, asks, ccxt call and LMDB writes in bare pykka",
        "buy_sagas.vs_bare_pykka",
    ),
    Figure(
        "placement_latency",
        "trading",
        "saga start to order placed (Order actor + saga)",
        "placement_latency.saga_start_to_placed_ms",
        "ms",
        "placement_latency.ccxt_create_order_ms",
        "direct ccxt create_order",
    ),
    Figure(
        "saga_end_to_end",
        "trading",
        "a whole buy saga, sequential",
        "placement_latency.saga_end_to_end_ms",
        "ms",
        "placement_latency.ccxt_create_order_ms",
        "direct ccxt create_order",
    ),
    Figure(
        "ledger_postings_durable",
        "ledger",
        "best public path, fsync: post_fills / PostFills of 100, or post_fill 1-64 threads",
        "best_durable_postings_per_s",
        "postings/s",
        "baseline_one_txn_per_posting_per_s",
        "one LMDB write txn per posting, fsync",
        "ratio_vs_baseline",
    ),
    Figure(
        "ledger_post_fill_durable",
        "ledger",
        "Ledger.post_fill (one fill per call), fsync, best of 1-64 threads",
        "best_durable_post_fill_per_s",
        "postings/s",
        "baseline_one_txn_per_posting_per_s",
        "one LMDB write txn per posting, fsync",
    ),
    Figure(
        "ledger_actor_post_fills_durable",
        "ledger",
        "/ledger PostFills of 100 order fills, 8 asking clients, fsync",
        "durable_actor_post_fills.8_clients.postings_per_s",
        "postings/s",
        "baseline_one_txn_per_posting_per_s",
        "one LMDB write txn per posting, fsync",
    ),
    Figure(
        "ctl_ps_5000",
        "control",
        "one ps request over the control socket, 5,000 actors",
        "ps_round_trip.median_ms",
        "ms",
        "baseline_in_process.median_ms",
        "the same cell scan in-process, no socket",
    ),
    Figure(
        "ctl_ps_subprocess",
        "control",
        "phalanx ctl --json ps as a new process",
        "ctl_subprocess.median_ms",
        "ms",
        "import_only.median_ms",
        "python -c 'import phalanx.cli'",
    ),
)


@dataclass(frozen=True)
class Target:
    """A figure targeted in issues 2-7, and its bound."""

    figure: str
    issue: int
    bench: str
    source: Src
    unit: str
    op: str  # ">=" or "<="
    bound: float


TARGETS: tuple[Target, ...] = (
    Target(
        "tell vs raw pykka",
        2,
        "mailbox",
        _first("tell.ratio", _div("tell.phalanx_msgs_per_s", "tell.pykka_msgs_per_s")),
        "x",
        ">=",
        0.7,
    ),
    Target(
        "ask round trip vs raw pykka",
        2,
        "mailbox",
        _first(
            "ask_round_trip.ratio", _div("ask_round_trip.phalanx_us", "ask_round_trip.pykka_us")
        ),
        "x",
        "<=",
        1.5,
    ),
    Target(
        "overflow spill to LMDB (fsync)",
        2,
        "deadletters",
        "overflow_spill.per_s",
        "dead letters/s",
        ">=",
        100_000,
    ),
    Target(
        "durable mailbox tell_many (fsync)",
        2,
        "deadletters",
        "durable_mailbox.msgs_per_s.1_sender_tell_many_100_sync_on",
        "msgs/s",
        ">=",
        50_000,
    ),
    Target("restart latency p99", 3, "supervision", "restart_latency_ms.p99", "ms", "<=", 5.0),
    Target(
        "exchange create+cancel overhead vs ccxt direct",
        4,
        "exchange",
        _first("create_cancel_round_trips.overhead_pct", _overhead_pct),
        "%",
        "<=",
        15,
    ),
    Target("buy sagas per second", 5, "trading", "buy_sagas.sagas_per_s", "sagas/s", ">=", 100),
    Target(
        "ledger postings per second, durable",
        5,
        "ledger",
        "best_durable_postings_per_s",
        "postings/s",
        ">=",
        20_000,
    ),
    Target("ctl ps on 5,000 actors", 6, "control", "ps_round_trip.median_ms", "ms", "<=", 200),
)


def _figure(fig: Figure, data: Data | None) -> dict[str, Any]:
    value = _read(data, fig.value)
    out: dict[str, Any] = {
        "name": fig.name,
        "bench": fig.bench,
        "meaning": fig.meaning,
        "value": _round(value),
        "unit": fig.unit,
        "source": f"{fig.bench}.{_describe(fig.value)}",
    }
    if value is None:
        out["missing"] = f"{_describe(fig.value)} not in {fig.bench}'s output"
    if fig.baseline is None:
        out["baseline"] = None
        return out
    base = _read(data, fig.baseline)
    out["baseline"] = {
        "what": fig.baseline_what,
        "value": _round(base),
        "source": f"{fig.bench}.{_describe(fig.baseline)}",
    }
    own = _read(data, fig.ratio) if fig.ratio is not None else None
    if own is not None:
        out["ratio"], out["ratio_from"] = _round(own), "script"
    elif value is not None and base:
        out["ratio"], out["ratio_from"] = _round(value / base), "run_all (value / baseline)"
    else:
        out["ratio"] = None
    return out


def _round(x: float | None) -> float | None:
    if x is None:
        return None
    return round(x, 3) if abs(x) < 100 else round(x)


def _scale_figures(data: Data) -> list[dict[str, Any]]:
    """Per N: spawn, RSS per actor, tell and stop rates, next to raw pykka at the same N."""
    out: list[dict[str, Any]] = []
    by_n = data.get("by_n", {})
    what = {
        "spawn_per_s": ("spawn rate, under a simple_one_for_one /orders", "actors/s"),
        "rss_per_actor_kib": ("VmRSS growth per live actor", "KiB"),
        "tell_per_s": ("tells round robin over all N, until handled", "msgs/s"),
        "stop_per_s": ("stopping all N (the supervisor with its children)", "actors/s"),
    }
    for n in by_n:
        for key, (meaning, unit) in what.items():
            fig = Figure(
                f"scale_{n}_{key}",
                "scale",
                f"{meaning}, N={n}",
                f"by_n.{n}.phalanx.{key}",
                unit,
                f"by_n.{n}.baseline_raw_pykka.{key}",
                f"raw pykka ThreadingActor at N={n}",
            )
            out.append(_figure(fig, data))
    small = data.get("small_stack", {})
    if small:
        n, kib = small.get("n"), small.get("stack_kib")
        for key in ("rss_per_actor_kib", "vm_per_actor_kib", "spawn_per_s", "tell_per_s"):
            fig = Figure(
                f"scale_stack_{kib}kib_{key}",
                "scale",
                f"threading.stack_size({kib} KiB), N={n}",
                f"small_stack.phalanx.{key}",
                "KiB" if "kib" in key else "per s",
                f"by_n.{n}.phalanx.{key}",
                f"default stack at N={n}",
            )
            out.append(_figure(fig, data))
    fig = Figure(
        "scale_largest_n_in_4gib",
        "scale",
        "estimated largest N of order-sized actors in 4 GiB RSS, capped by thread limits",
        "estimate.largest_n_in_4gib",
        "actors",
    )
    out.append(_figure(fig, data))
    return out


def _ratio_leaves(data: Any, prefix: str = "") -> list[tuple[str, float]]:
    """Every numeric field whose name says ratio, for a script with no extractor here."""
    found: list[tuple[str, float]] = []
    if isinstance(data, dict):
        for key, value in data.items():
            path = f"{prefix}.{key}" if prefix else str(key)
            if isinstance(value, dict):
                found += _ratio_leaves(value, path)
            elif "ratio" in str(key) and _path({"v": value}, "v") is not None:
                found.append((path, float(value)))
    return found


def figures(benches: dict[str, Data]) -> list[dict[str, Any]]:
    """Every figure with its baseline and ratio; unknown scripts by their ratio fields."""
    out = [_figure(f, benches.get(f.bench)) for f in FIGURES]
    if "scale" in benches:
        out += _scale_figures(benches["scale"])
    known = {f.bench for f in FIGURES} | {"scale"}
    for name in sorted(set(benches) - known):
        for path, value in _ratio_leaves(benches[name]):
            out.append(
                {
                    "name": f"{name}.{path}",
                    "bench": name,
                    "value": _round(value),
                    "unit": "x",
                    "meaning": f"a ratio printed by {name}.py",
                    "source": f"{name}.{path}",
                    "baseline": "see the script's output",
                }
            )
    return out


def targets(benches: dict[str, Data], runs: dict[str, Any], wall_s: float) -> list[dict[str, Any]]:
    """The targets table: measured value, bound, met (a missing figure is not met)."""
    out = []
    for t in TARGETS:
        value = _read(benches.get(t.bench), t.source)
        row: dict[str, Any] = {
            "figure": t.figure,
            "issue": t.issue,
            "measured": _round(value),
            "unit": t.unit,
            "target": f"{t.op} {t.bound:g}",
            "source": f"{t.bench}.{_describe(t.source)}",
        }
        if value is None:
            status = runs.get(t.bench, {}).get("status", "not run")
            row.update(met=False, missing=f"{t.bench}.py: {status}")
        else:
            row["met"] = value >= t.bound if t.op == ">=" else value <= t.bound
        out.append(row)
    out.append(
        {
            "figure": "make bench wall time",
            "issue": 7,
            "measured": round(wall_s, 1),
            "unit": "s",
            "target": "<= 600",
            "met": wall_s <= 600,
            "source": "run_all.py, all scripts",
        }
    )
    return out


def discover(only: list[str] | None = None) -> list[Path]:
    """Every bench script (``bench/*.py`` but private modules and this runner), in run order."""
    scripts = [
        p for p in HERE.glob("*.py") if not p.name.startswith("_") and p.name != Path(__file__).name
    ]

    def rank(p: Path) -> tuple[int, int, str]:
        if p.stem in ORDER:
            return (0, ORDER.index(p.stem), p.stem)
        return (2, LAST.index(p.stem), p.stem) if p.stem in LAST else (1, 0, p.stem)

    return sorted((p for p in scripts if not only or p.stem in only), key=rank)


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds")


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):  # it may have ended meanwhile
        os.killpg(pid, signal.SIGKILL)


def run_script(
    script: Path, timeout: float, sizes: dict[str, int] | None = None
) -> tuple[dict[str, Any], Any]:
    """Run one script; return its run record and its parsed JSON (or None)."""
    started, ticks = time.perf_counter(), vm_cpu_ticks()
    cmd = [sys.executable, str(script)]
    if sizes:
        cmd = [sys.executable, "-c", _BOOT, str(script), json.dumps(sizes)]
    # scale.py trims itself to fit: it gets its deadline in seconds.
    env = {**os.environ, "PHALANX_BENCH_DEADLINE_S": str(round(timeout - 5))}
    proc = subprocess.Popen(
        cmd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group: a timeout takes its children too
    )
    record: dict[str, Any] = {"timeout_s": round(timeout)}
    if sizes:
        record["quick_sizes"] = sizes
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(proc.pid)
        out, err = proc.communicate()
        record.update(status="timed_out", elapsed_s=round(time.perf_counter() - started, 1))
        record["stderr_tail"] = err[-TAIL:]
        return record, None
    except BaseException:  # Ctrl-C on make bench: the script's own session would outlive us
        _kill_group(proc.pid)
        raise
    record["elapsed_s"] = round(time.perf_counter() - started, 1)
    # A script's figures are read against the CPU the hypervisor took meanwhile.
    record["vm_cpu_stolen_pct"] = stolen_pct(ticks, vm_cpu_ticks())
    record["returncode"] = proc.returncode
    if proc.returncode != 0:
        record.update(status="failed", stderr_tail=err[-TAIL:])
        return record, None
    try:
        data = json.loads(out)
    except json.JSONDecodeError as exc:
        record.update(status="bad_json", error=str(exc), stdout_tail=out[-TAIL:])
        return record, None
    record["status"] = "ok"
    return record, data


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(HERE / "results" / "latest.json"))
    parser.add_argument("--budget", type=float, default=BUDGET_S, help="seconds for all scripts")
    parser.add_argument("--only", nargs="*", help="script stems to run (default: all)")
    parser.add_argument("--full", action="store_true", help="the scripts' own sample sizes")
    args = parser.parse_args()

    started, ticks = time.time(), vm_cpu_ticks()
    load_start = load_average()
    scripts = discover(args.only)
    runs: dict[str, Any] = {}
    benches: dict[str, Any] = {}
    deadline = time.monotonic() + args.budget
    for i, script in enumerate(scripts):
        reserve = sum(RESERVE_S.get(p.stem, 0.0) for p in scripts[i + 1 :])
        left = deadline - time.monotonic() - reserve
        if left < 5:
            runs[script.stem] = {"status": "skipped", "reason": "the run's time budget is spent"}
            print(f"bench: {script.name} skipped (budget spent)", file=sys.stderr, flush=True)
            continue
        timeout = min(TIMEOUTS_S.get(script.stem, DEFAULT_TIMEOUT_S), left)
        print(f"bench: {script.name} (timeout {timeout:.0f} s)", file=sys.stderr, flush=True)
        sizes = None if args.full else QUICK.get(script.stem)
        record, data = run_script(script, timeout, sizes)
        runs[script.stem] = record
        print(
            f"bench: {script.name} {record['status']} in {record.get('elapsed_s')} s",
            file=sys.stderr,
            flush=True,
        )
        if data is not None:
            benches[script.stem] = data
    wall = time.time() - started

    results: dict[str, Any] = {
        "machine": {**machine(), "versions": versions()},
        "run": {
            "started_at": _iso(started),
            "ended_at": _iso(time.time()),
            "wall_s": round(wall, 1),
            "load_average_start": load_start,
            "load_average_end": load_average(),
            "vm_cpu_stolen_pct": stolen_pct(ticks, vm_cpu_ticks()),
            "budget_s": args.budget,
            "mode": "full" if args.full else "quick",
            "note": "a shared machine: absolute figures swing with load, ratios are stable",
        },
        "scripts": runs,
        "figures": figures(benches),
        "targets": targets(benches, runs, wall),
        "benches": benches,
    }
    met = [t for t in results["targets"] if t["met"]]
    results["targets_met"] = f"{len(met)}/{len(results['targets'])}"
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    for t in results["targets"]:
        mark = "met" if t["met"] else "NOT MET"
        print(f"  {t['figure']}: {t['measured']} (target {t['target']}) {mark}", file=sys.stderr)
    print(f"targets met: {results['targets_met']}; wrote {args.out}", file=sys.stderr)
    bad = [name for name, r in runs.items() if r["status"] != "ok"]
    if bad:
        print(f"scripts not ok: {', '.join(bad)}", file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
