"""The OTP dynamic API: start/terminate/restart/delete_child, which/count_children.

The ``_api_*`` methods run on the supervisor's thread (each call is an ask);
:class:`SupervisorRef` is the caller's side.
"""

from __future__ import annotations

from typing import Any

from phalanx.errors import (
    AlreadyPresent,
    AlreadyStarted,
    ChildNotFound,
    ChildRestarting,
    ChildRunning,
)
from phalanx.runtime._ref import Ref
from phalanx.supervision._children import _Call, _Child, _validate
from phalanx.supervision._intensity import START_FAILED
from phalanx.supervision._restarts import _Restarts
from phalanx.supervision._spec import ChildSpec, dynamic_child_spec

__all__ = ["SupervisorRef"]


class _DynamicApi(_Restarts):
    """The dynamic API and the ``which_children`` view."""

    def _api_start_child(self, spec_or_args: Any, kwargs: dict[str, Any]) -> str:
        if self.strategy == "simple_one_for_one":
            template = self._specs[0]
            child_id = kwargs.pop("child_id", None)
            if child_id is None:
                self._dynamic_seq += 1
                child_id = f"{template.id}-{self._dynamic_seq}"
            spec = dynamic_child_spec(
                template, child_id, (*template.args, *spec_or_args), {**template.kwargs, **kwargs}
            )
            # No _validate: the significant-child rules were checked on this very
            # template, with this auto_shutdown, when the supervisor started.
        else:
            spec = spec_or_args
            if not isinstance(spec, ChildSpec):
                raise TypeError(f"start_child needs a ChildSpec, got {type(spec).__qualname__}")
            _validate("one_for_one", [spec], self.auto_shutdown)  # significant-child rules
        existing = self._children.by_id(spec.id)
        if existing is not None:
            live = existing.cell is not None and existing.cell.status != "stopped"
            if live and not existing.restarting:
                raise AlreadyStarted(f"child {spec.id!r} is already started at {existing.path}")
            raise AlreadyPresent(f"child {spec.id!r} exists but is not running")
        child = _Child(spec, self._child_path(spec.id))
        error = self._start_child(child)
        if error is not None:
            if child.cell is not None:
                child.cell.finish(START_FAILED, keep_journaled=True)
            raise error
        with self._lock:
            self._children.append(child)
        return child.path

    def _child_by_id(self, key: str) -> _Child:
        child = self._children.by_id(key) or self._children.by_path(key)
        if child is not None:
            return child
        raise ChildNotFound(f"no child {key!r} under {self.path}")

    def _api_terminate_child(self, key: str) -> None:
        if self.strategy == "simple_one_for_one" and key.startswith(self._child_path("")):
            known = self._children.by_path(key) is not None
            if not known and not self.system.is_alive(key):
                return  # OTP: terminating a dynamic child that is already gone is ok
        child = self._child_by_id(key)
        stranded = self._stranded_by(child)
        self._terminate(child, finish=True)
        if child.spec.restart == "temporary" or self.strategy == "simple_one_for_one":
            with self._lock:
                self._children.remove(child)
        # OTP: the siblings its pending group restart had stopped stay terminated.
        for member in stranded:
            self._terminate(member, finish=True)
            if member.spec.restart == "temporary":
                with self._lock:
                    self._children.remove(member)

    def _stranded_by(self, child: _Child) -> list[_Child]:
        """Group members whose restart only ``child``'s pending retry would carry out."""
        holds_retry = child.restarting and (child.timer is not None or child.awaiting_end)
        if not holds_retry or self.strategy == "simple_one_for_one":
            return []
        return [
            m
            for m in self._restart_group(child)
            if m is not child and m.restarting and m.timer is None and not m.awaiting_end
        ]

    def _api_restart_child(self, key: str) -> str:
        child = self._child_by_id(key)
        if child.restarting:
            raise ChildRestarting(f"child {key!r} is restarting")
        if child.cell is not None and child.cell.status != "stopped":
            raise ChildRunning(f"child {key!r} is running")
        error = self._start_child(child)
        if error is not None:
            if child.cell is not None:
                child.cell.finish(START_FAILED, keep_journaled=True)
                child.cell = None
            raise error
        return child.path

    def _api_delete_child(self, key: str) -> None:
        child = self._child_by_id(key)
        if child.restarting:
            raise ChildRestarting(f"child {key!r} is restarting")
        if child.cell is not None and child.cell.status != "stopped":
            raise ChildRunning(f"child {key!r} is running")
        with self._lock:
            self._children.remove(child)

    def _api_which_children(self) -> list[dict[str, Any]]:
        return self.children_view()

    def _api_count_children(self) -> dict[str, int]:
        view = self.children_view()
        return {
            # OTP counts the template, not the dynamic children, under simple_one_for_one.
            "specs": 1 if self.strategy == "simple_one_for_one" else len(view),
            "active": sum(1 for c in view if c["status"] == "running"),
            "supervisors": sum(1 for c in view if c["type"] == "supervisor"),
            "workers": sum(1 for c in view if c["type"] == "worker"),
        }

    # --- views (safe from any thread) -----------------------------------------

    def children_view(self) -> list[dict[str, Any]]:
        """OTP ``which_children``: id, path, status, type, restart, significant."""
        with self._lock:
            children = list(self._children)
        out = []
        for child in children:
            cell = child.cell
            if child.restarting or (cell is not None and cell.status in ("restarting", "backoff")):
                status = "restarting"
            elif cell is not None and cell.status == "circuit_open":
                status = "circuit_open"
            elif cell is not None and cell.status != "stopped":
                status = "running"
            else:
                status = "undefined"
            out.append(
                {
                    "id": child.spec.id,
                    "path": child.path,
                    "status": status,
                    "type": "supervisor" if child.spec.is_supervisor else "worker",
                    "restart": child.spec.restart,
                    "significant": child.spec.significant,
                }
            )
        return out


class SupervisorRef(Ref):
    """A :class:`Ref` to a supervisor, with the OTP dynamic API.

    Each call is an ``ask`` to the supervisor, so it waits its turn behind
    child exits and restarts already queued. Errors are typed, one per OTP
    error return: ``AlreadyStarted``, ``AlreadyPresent``, ``ChildNotFound``,
    ``ChildRunning``, ``ChildRestarting``.
    """

    __slots__ = ()

    def _call(self, op: str, *args: Any, timeout: float | None = 30.0, **kwargs: Any) -> Any:
        return self.ask(_Call(op, args, kwargs), timeout=timeout)

    def start_child(self, spec_or_arg: Any = None, *args: Any, **kwargs: Any) -> Ref:
        """Start a child from a ChildSpec, or (simple_one_for_one) with extra args.

        For ``simple_one_for_one``, positional args are appended to the
        template's, keyword args override its kwargs, and ``child_id=`` names
        the child (default ``<template id>-<n>``).
        """
        if isinstance(spec_or_arg, ChildSpec):
            path = self._call("start_child", spec_or_arg, {})
        else:
            extra = args if spec_or_arg is None else (spec_or_arg, *args)
            path = self._call("start_child", extra, dict(kwargs))
        return Ref(self._system, path)

    def terminate_child(self, child: str | Ref) -> None:
        """Stop a child by its shutdown spec; its spec is kept unless temporary or dynamic."""
        self._call("terminate_child", child.path if isinstance(child, Ref) else child)

    def restart_child(self, child_id: str) -> Ref:
        """Start a terminated child again from its kept spec."""
        return Ref(self._system, self._call("restart_child", child_id))

    def delete_child(self, child_id: str) -> None:
        """Forget a terminated child's spec."""
        self._call("delete_child", child_id)

    def which_children(self) -> list[dict[str, Any]]:
        """Each child: id, path, status (running|restarting|circuit_open|undefined), type."""
        result: list[dict[str, Any]] = self._call("which_children")
        return result

    def count_children(self) -> dict[str, int]:
        """OTP counts: specs, active, supervisors, workers."""
        result: dict[str, int] = self._call("count_children")
        return result
