"""Rendering control results: JSON for scripts, ``rich`` tables and trees for people."""

from __future__ import annotations

import json
import sys
import time
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.tree import Tree

__all__ = ["Renderer"]

_COLOURS = {
    "running": "green",
    "green": "green",
    "closed": "green",
    "yellow": "yellow",
    "half_open": "yellow",
    "restarting": "yellow",
    "backoff": "yellow",
    "starting": "yellow",
    "red": "red",
    "open": "red",
    "circuit_open": "red",
    "stopped": "red",
    "undefined": "red",
}


def _c(value: Any) -> str:
    text = "-" if value is None else str(value)
    colour = _COLOURS.get(text)
    return f"[{colour}]{text}[/{colour}]" if colour else text


def _dumps(obj: Any) -> str:
    return json.dumps(obj, indent=2, sort_keys=False, default=str)


class Renderer:
    """Prints one result per command; ``as_json`` prints exactly the result as JSON."""

    def __init__(self, console: Console | None = None) -> None:
        if console is None:
            tty = sys.stdout.isatty()
            console = Console(highlight=False, width=None if tty else 160, soft_wrap=not tty)
        self.console = console

    def render(self, name: str, result: Any, as_json: bool) -> None:
        """Print ``result`` of command ``name``."""
        if as_json:
            print(_dumps(result), flush=True)
            return
        method = getattr(self, "_" + name.replace(".", "_"), None)
        if method is None:
            self.console.print_json(data=result, default=str)
        else:
            method(result)

    def event(self, event: dict[str, Any], as_json: bool) -> None:
        """One line per event (JSON Lines with ``as_json``)."""
        if as_json:
            print(json.dumps(event, default=str), flush=True)
            return
        fields = {k: v for k, v in event.items() if k not in ("kind", "path", "at")}
        at = time.strftime("%H:%M:%S", time.localtime(event.get("at", 0)))
        extra = escape(" ".join(f"{k}={v}" for k, v in fields.items()))
        self.console.print(
            f"{at} [bold]{event.get('kind')}[/bold] {event.get('path') or '-'} {extra}",
            soft_wrap=True,
        )

    # --- one method per command ----------------------------------------------

    def _tree(self, node: dict[str, Any]) -> None:
        root = Tree(self._label(node))
        self._grow(root, node)
        self.console.print(root)

    def _label(self, node: dict[str, Any]) -> str:
        parts = [f"[bold]{node['path']}[/bold]", node.get("kind", "")]
        if node.get("strategy"):
            sup = node["strategy"]
            if node.get("intensity") is not None:
                sup += f" {node['intensity']}/{node.get('period')}s"
            parts.append(f"({sup})")
        parts.append(_c(node.get("status")))
        if "restarts" in node:
            parts.append(f"restarts={node['restarts']}")
        if node.get("breaker"):
            parts.append(f"breaker={_c(node['breaker'])}")
        return " ".join(p for p in parts if p)

    def _grow(self, branch: Tree, node: dict[str, Any]) -> None:
        for child in node.get("children", []):
            self._grow(branch.add(self._label(child)), child)

    def _ps(self, rows: list[dict[str, Any]]) -> None:
        table = Table("PATH", "STATUS", "MAILBOX", "PROCESSED", "RESTARTS", "BREAKER")
        for r in rows:
            table.add_row(
                r["path"],
                _c(r["status"]),
                f"{r['mailbox_depth']}/{r['mailbox_capacity']}",
                str(r["processed"]),
                str(r["restarts"]),
                _c(r["breaker"]),
            )
        self.console.print(table)
        self.console.print(f"{len(rows)} actors")

    def _paths(self, paths: list[str]) -> None:
        for path in paths:
            self.console.print(path, markup=False)

    def _inspect(self, view: dict[str, Any]) -> None:
        skip = ("state", "recent_failures", "queued", "recent_events")
        table = Table("FIELD", "VALUE", title=f"[bold]{view.get('path')}[/bold]")
        for key, value in view.items():
            if key not in skip:
                shown = _c(value) if key in ("status", "breaker") else escape(str(value))
                table.add_row(key, shown)
        self.console.print(table)
        self.console.print("[bold]introspect()[/bold]")
        self.console.print_json(data=view.get("state"), default=str)
        failures = view.get("recent_failures") or []
        self.console.print(f"[bold]recent failures[/bold] ({len(failures)})")
        for f in failures:
            at = time.strftime("%H:%M:%S", time.localtime(f.get("at", 0)))
            self.console.print(
                f"{at} {f.get('where')} incarnation={f.get('incarnation')} "
                f"{f.get('error_type')}: {f.get('error')}",
                markup=False,
            )
            if f.get("traceback"):
                self.console.print(f["traceback"].rstrip(), markup=False, style="dim")
        queued = view.get("queued") or []
        self.console.print(f"[bold]queued[/bold] ({len(queued)} shown)")
        for q in queued:
            line = f"  {q['message_id']} attempt={q['attempt']} {q['message']}"
            self.console.print(line, markup=False)
        events = view.get("recent_events") or []
        if events:
            self.console.print(f"[bold]recent events[/bold] ({len(events)})")
            for e in events:
                self.event(e, as_json=False)

    def _breakers(self, rows: list[dict[str, Any]]) -> None:
        if not rows:
            self.console.print("no circuit breakers")
            return
        table = Table("PATH", "KIND", "STATE", "RESET TIMEOUT", "OPEN FOR", "FAILURES", "TRIALS")
        for r in rows:
            table.add_row(
                r.get("path", "?"),
                r.get("kind", "?"),
                _c(r.get("state")),
                str(r.get("reset_timeout")),
                str(r.get("opened_until_in_s")),
                str(r.get("failures")),
                str(r.get("trials")),
            )
        self.console.print(table)

    def _health(self, report: dict[str, Any]) -> None:
        table = Table("SUBSYSTEM", "STATUS", "DETAIL", title=f"health: {_c(report['status'])}")
        for name, entry in report["subsystems"].items():
            table.add_row(name, _c(entry["status"]), escape(str(entry.get("detail", ""))))
        self.console.print(table)

    def _dlq_ls(self, records: list[dict[str, Any]]) -> None:
        if not records:
            self.console.print("no dead letters")
            return
        table = Table("ID", "REASON", "STATUS", "ATT", "TARGET", "MESSAGE")
        for r in records:
            table.add_row(
                r["id"],
                r["reason"],
                r["status"],
                str(r["attempts"]),
                str(r["target"]),
                escape(f"{r['message_type']}: {r['payload_repr'][:60]}"),
            )
        self.console.print(table)

    def _dlq_show(self, record: dict[str, Any]) -> None:
        for key, value in record.items():
            if key != "traceback":
                self.console.print(f"{key:16} {value}", markup=False)
        if record.get("traceback"):
            self.console.print("traceback:\n" + record["traceback"], markup=False)

    def _dlq_stats(self, stats: dict[str, Any]) -> None:
        self.console.print(f"pending: {stats['depth']}  oldest: {stats['oldest_age_s']}")
        for name in ("by_reason", "by_target"):
            for key, count in sorted(stats[name].items()):
                self.console.print(f"  {name[3:]:7} {key:40} {count}", markup=False)

    def _dlq_redrive(self, record: dict[str, Any]) -> None:
        self.console.print(f"redriven {record['id']} (status {record['status']})")

    def _dlq_resolve(self, record: dict[str, Any]) -> None:
        self.console.print(f"resolved {record['id']}: {record.get('note')}")

    def _dlq_purge(self, result: dict[str, Any]) -> None:
        self.console.print(f"purged {result['purged']} records")

    def _kill(self, result: dict[str, Any]) -> None:
        self.console.print(f"killed {result['path']} (incarnation {result['incarnation']})")

    def _stop(self, result: dict[str, Any]) -> None:
        self.console.print(f"stopped {result['path']} via {result['via']}")

    def _restart(self, result: dict[str, Any]) -> None:
        self.console.print(f"restarted {result['path']} via {result['via']}")

    def _tell(self, result: dict[str, Any]) -> None:
        verdict = "queued" if result["queued"] else "dead-lettered (no live actor takes it)"
        self.console.print(f"{result['type']} to {result['path']}: {verdict}")

    def _ask(self, result: dict[str, Any]) -> None:
        self.console.print_json(data=result.get("reply"), default=str)

    def _shutdown(self, result: dict[str, Any]) -> None:
        self.console.print(f"node {result.get('node')} is shutting down in order")

    def _commands(self, result: dict[str, str]) -> None:
        for name, help_ in result.items():
            self.console.print(f"{name:12} {help_}", markup=False)
