"""``phalanx shell``: an interactive control session (stdlib ``cmd`` + readline + rich).

Each line is parsed by the same grammar as ``phalanx ctl``. Command names and
actor paths (fetched from the node, cached for a few seconds) complete with
Tab. History is kept in ``VAR/shell_history`` (mode 0600). ``exit``, ``quit``
or EOF leave the shell; the node keeps running.
"""

from __future__ import annotations

import argparse
import cmd
import contextlib
import os
import shlex
import sys
import time
from pathlib import Path
from typing import Any

from phalanx.cli._client import ControlClient, NodeUnreachable
from phalanx.cli._ctl import add_commands, execute, exit_code_for, socket_path
from phalanx.cli._render import Renderer
from phalanx.errors import ConfigError
from phalanx.protocols.control import ControlError

__all__ = ["Shell", "add_parser"]

_PATH_COMMANDS = frozenset({"inspect", "tell", "ask", "kill", "restart", "stop"})
_PATH_CACHE_S = 3.0


class _ShellParser(argparse.ArgumentParser):
    """argparse that raises instead of exiting: a typo must not end the session."""

    def error(self, message: str) -> Any:
        raise ConfigError(f"{self.prog}: {message}")

    def exit(self, status: int = 0, message: str | None = None) -> Any:
        if message:
            print(message, end="", file=sys.stderr)
        raise _ParserExit()


class _ParserExit(Exception):
    """argparse finished early (``-h``): nothing to run."""


def _command_parser() -> argparse.ArgumentParser:
    parser = _ShellParser(prog="", add_help=False)
    sub = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND", parser_class=_ShellParser
    )
    add_commands(sub)
    return parser


class Shell(cmd.Cmd):
    """The interactive loop; every line goes through :meth:`default`."""

    intro = "phalanx shell: 'help' lists commands, Tab completes, 'exit' leaves (the node stays up)"
    prompt = "phalanx> "

    def __init__(self, socket: Path, timeout: float, renderer: Renderer) -> None:
        super().__init__()
        self.socket = socket
        self.timeout = timeout
        self.renderer = renderer
        self.parser = _command_parser()
        sub = next(a for a in self.parser._actions if isinstance(a, argparse._SubParsersAction))
        self.subparsers: dict[str, argparse.ArgumentParser] = dict(sub.choices)
        self.client: ControlClient | None = None
        self._paths: list[str] = []
        self._paths_at = 0.0

    def _connected(self) -> ControlClient:
        if self.client is None:
            self.client = ControlClient(self.socket, timeout=self.timeout, client="phalanx-shell")
            self.client.connect()
        return self.client

    def _drop(self) -> None:
        if self.client is not None:
            self.client.close()
            self.client = None

    # --- commands -----------------------------------------------------------

    def emptyline(self) -> bool:
        return False  # do not repeat the last command

    def default(self, line: str) -> bool:  # type: ignore[override]
        try:
            words = shlex.split(line)
        except ValueError as exc:
            self._error(f"cannot parse the line: {exc}")
            return False
        if not words:
            return False
        try:
            args = self.parser.parse_args(words)
        except _ParserExit:
            return False
        except ConfigError as exc:
            self._error(str(exc).strip())
            return False
        try:
            execute(self._connected(), args, self.renderer, as_json=False)
        except KeyboardInterrupt:
            self._drop()  # ends an events tail; the node drops the subscription with us
            self.renderer.console.print()
        except NodeUnreachable as exc:
            self._drop()
            self._error(str(exc))
        except ControlError as exc:
            if exit_code_for(exc) == 3:
                self._drop()
            self._error(str(exc))
        except ConfigError as exc:
            self._error(str(exc))
        return False

    def do_help(self, arg: str) -> None:
        """help [COMMAND]: list the commands, or one command's arguments."""
        name = arg.strip()
        if name in self.subparsers:
            self.subparsers[name].print_help()
            return
        for key, parser in self.subparsers.items():
            self.renderer.console.print(f"{key:10} {parser.description or ''}", markup=False)
        self.renderer.console.print(f"{'exit':10} leave the shell (the node keeps running)")

    def do_exit(self, arg: str) -> bool:
        """exit: leave the shell; the node keeps running."""
        return True

    do_quit = do_exit

    def do_EOF(self, arg: str) -> bool:
        """Ctrl-D: leave the shell."""
        self.renderer.console.print()
        return True

    def _error(self, text: str) -> None:
        self.renderer.console.print(f"[red]error:[/red] {text}", markup=True, highlight=False)

    # --- completion ---------------------------------------------------------

    def completenames(self, text: str, *ignored: Any) -> list[str]:
        names = [*self.subparsers, "exit", "quit", "help"]
        return [n for n in names if n.startswith(text)]

    def completedefault(self, text: str, line: str, begidx: int, endidx: int) -> list[str]:
        words = line[:begidx].split()
        if not words:
            return []
        if words[0] == "dlq" and len(words) == 1:
            actions = ("ls", "show", "stats", "redrive", "resolve", "purge")
            return [a for a in actions if a.startswith(text)]
        if words[0] in _PATH_COMMANDS and len(words) == 1:
            return [p for p in self.actor_paths() if p.startswith(text)]
        if words[0] == "dlq" and words[-1] == "--to":
            return [p for p in self.actor_paths() if p.startswith(text)]
        return []

    def complete_help(self, text: str, line: str, begidx: int, endidx: int) -> list[str]:
        """Command names for ``help <Tab>``."""
        return [n for n in self.subparsers if n.startswith(text)]

    def actor_paths(self) -> list[str]:
        """The node's actor paths, cached for a few seconds."""
        now = time.monotonic()
        if now - self._paths_at > _PATH_CACHE_S:
            try:
                self._paths = list(self._connected().call("paths"))
            except ControlError:
                self._drop()
                self._paths = []
            self._paths_at = now
        return self._paths


def _history(path: Path) -> tuple[Any, Path] | None:
    try:
        import readline  # noqa: PLC0415 - optional: absent on some platforms
    except ImportError:
        return None
    readline.set_history_length(1000)
    # Paths contain '/', '-' and '.': complete whole paths, not segments.
    readline.set_completer_delims(" \t\n")
    with contextlib.suppress(OSError):
        readline.read_history_file(path)
    return readline, path


def _save_history(state: tuple[Any, Path] | None) -> None:
    if state is None:
        return
    readline, path = state
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
        os.close(fd)
        readline.write_history_file(path)


def add_parser(sub: Any) -> None:
    """Register ``shell``."""
    p = sub.add_parser("shell", help="interactive control shell attached to a running node")
    p.add_argument("--var-dir", default="./var", help="the node's var dir (default ./var)")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for a reply")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """``phalanx shell``: attach, loop until exit/EOF; 3 if the node cannot be reached."""
    shell = Shell(socket_path(args.var_dir), args.timeout, Renderer())
    try:
        client = shell._connected()
    except ControlError as exc:
        print(f"phalanx: error: {exc}", file=sys.stderr)
        return exit_code_for(exc)
    node, pid = client.node.get("node"), client.node.get("pid")
    shell.intro = f"{Shell.intro}\nattached to node {node!r} (pid {pid})"
    history = _history(Path(args.var_dir) / "shell_history")
    try:
        while True:
            try:
                shell.cmdloop()
                break
            except KeyboardInterrupt:  # Ctrl-C at the prompt: a fresh prompt, not an exit
                shell.intro = ""
                shell.renderer.console.print("^C")
    finally:
        _save_history(history)
        shell._drop()
    return 0
