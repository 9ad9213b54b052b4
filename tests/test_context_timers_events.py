"""Trace context scoping, timers and the event stream."""

from __future__ import annotations

import json
import threading
from typing import Any

from phalanx import Actor, ActorSystem, current_trace, trace_scope


class TraceProbe(Actor):
    """Replies with the trace it sees and logs a decision line."""

    def on_receive(self, message: Any) -> Any:
        self.system.logs.logger("decision").info("probe", note=message)
        return dict(current_trace())


def test_trace_ids_are_bound_per_message_and_do_not_leak(system: ActorSystem) -> None:
    system.spawn(TraceProbe, "/probe")
    with trace_scope(session_id="s-1", order_req_id="r-9"):
        assert system.ask("/probe", "first", timeout=5) == {
            "session_id": "s-1",
            "order_req_id": "r-9",
        }
    assert system.ask("/probe", "second", timeout=5) == {}
    system.logs.close()
    lines = [
        json.loads(line)
        for line in (system.var_dir / "logs" / "decision.jsonl").read_text().splitlines()
    ]
    first = next(line for line in lines if line.get("note") == "first")
    second = next(line for line in lines if line.get("note") == "second")
    assert first["session_id"] == "s-1"
    assert first["order_req_id"] == "r-9"
    assert first["actor"] == "/probe"
    assert "session_id" not in second


def test_trace_travels_onward_to_messages_sent_by_a_handler(system: ActorSystem) -> None:
    class Relay(Actor):
        def on_receive(self, message: Any) -> Any:
            return self.system.ask("/probe", message, timeout=5)

    system.spawn(TraceProbe, "/probe")
    system.spawn(Relay, "/relay")
    with trace_scope(saga_id="g-1"):
        assert system.ask("/relay", "x", timeout=5) == {"saga_id": "g-1"}


def test_send_after_and_send_every_deliver_and_cancel_stops(system: ActorSystem) -> None:
    got = threading.Event()
    ticks: list[int] = []
    three = threading.Event()

    class Sink(Actor):
        def on_receive(self, message: Any) -> Any:
            if message == "once":
                got.set()
            elif message == "tick":
                ticks.append(1)
                if len(ticks) == 3:
                    three.set()
            elif message == "count":
                return len(ticks)
            return None

    system.spawn(Sink, "/sink")
    system.send_after(0.01, "/sink", "once")
    timer = system.send_every(0.005, "/sink", "tick")
    assert got.wait(5)
    assert three.wait(5)
    timer.cancel()
    assert timer.cancelled
    # After cancel, at most one tick already in flight can land.
    seen = system.ask("/sink", "count", timeout=5)
    assert seen >= 3


def test_event_stream_reports_kill_and_restart(system: ActorSystem) -> None:
    class Idle(Actor):
        def on_receive(self, message: Any) -> Any:
            return message

    system.spawn(Idle, "/idle")
    sub = system.events.subscribe(kinds={"actor_killed", "actor_restarted"})
    try:
        system.kill("/idle")
        kinds = [sub.get(timeout=5), sub.get(timeout=5)]
    finally:
        sub.close()
    assert {e.kind for e in kinds if e is not None} == {"actor_killed", "actor_restarted"}
    assert all(e is not None and e.path == "/idle" for e in kinds)
