"""The ask reply future: pykka's ThreadingFuture contract with a cheaper get."""

from __future__ import annotations

import queue
import threading
import traceback
from typing import Any

import pykka
import pytest

from phalanx import Actor, ActorSystem, AskTimeout
from phalanx.runtime._future import ReplyFuture


def _set_from_thread(future: ReplyFuture[Any], value: Any, started: threading.Event) -> None:
    started.wait(timeout=5)
    future.set(value)


def test_a_reply_future_is_a_pykka_threading_future() -> None:
    assert isinstance(ReplyFuture(), pykka.ThreadingFuture)


def test_get_returns_a_value_set_on_another_thread_and_again_on_each_later_get() -> None:
    future: ReplyFuture[int] = ReplyFuture()
    started = threading.Event()
    setter = threading.Thread(target=_set_from_thread, args=(future, 42, started))
    setter.start()
    started.set()
    assert future.get(timeout=5) == 42
    setter.join()
    assert future.get(timeout=0) == 42
    assert future.get() == 42


def test_every_thread_waiting_on_one_future_gets_the_value() -> None:
    future: ReplyFuture[str] = ReplyFuture()
    got: queue.SimpleQueue[str] = queue.SimpleQueue()
    waiters = [threading.Thread(target=lambda: got.put(future.get(timeout=5))) for _ in range(4)]
    for waiter in waiters:
        waiter.start()
    future.set("v")
    for waiter in waiters:
        waiter.join()
    assert sorted(got.get_nowait() for _ in waiters) == ["v"] * 4


def test_get_raises_pykka_timeout_when_nothing_is_set() -> None:
    future: ReplyFuture[int] = ReplyFuture()
    with pytest.raises(pykka.Timeout):
        future.get(timeout=0.01)
    with pytest.raises(pykka.Timeout):
        future.get(timeout=0)
    with pytest.raises(pykka.Timeout):
        future.get(timeout=-1)
    future.set(1)  # a timed-out get leaves the future usable
    assert future.get(timeout=0) == 1


def _raise_in_handler() -> None:
    raise ValueError("bad input")


def test_an_exception_set_on_it_is_raised_with_its_traceback() -> None:
    future: ReplyFuture[int] = ReplyFuture()
    try:
        _raise_in_handler()
    except ValueError:
        future.set_exception()
    for _ in range(2):  # and again on a later get
        with pytest.raises(ValueError, match="bad input") as info:
            future.get(timeout=1)
        frames = [frame.name for frame in traceback.extract_tb(info.value.__traceback__)]
        assert "_raise_in_handler" in frames


def test_an_exception_class_alone_is_raised_as_an_instance() -> None:
    future: ReplyFuture[int] = ReplyFuture()
    future.set_exception((KeyError, None, None))
    with pytest.raises(KeyError):
        future.get(timeout=1)


def test_a_second_set_or_a_set_after_a_get_hook_raises_queue_full() -> None:
    future: ReplyFuture[int] = ReplyFuture()
    future.set(1)
    with pytest.raises(queue.Full):
        future.set(2)
    with pytest.raises(queue.Full):
        future.set_exception((ValueError, ValueError("x"), None))
    with pytest.raises(queue.Full):
        future.set_get_hook(lambda timeout: 3)
    assert future.get(timeout=0) == 1
    hooked: ReplyFuture[int] = ReplyFuture()
    hooked.set_get_hook(lambda timeout: 3)
    with pytest.raises(queue.Full):
        hooked.set(4)


def test_a_get_hook_gives_the_value_once_and_gets_the_timeout() -> None:
    future: ReplyFuture[str] = ReplyFuture()
    calls: list[float | None] = []

    def hook(timeout: float | None) -> str:
        calls.append(timeout)
        return "hooked"

    future.set_get_hook(hook)
    assert future.get(timeout=2.5) == "hooked"
    assert future.get(timeout=1) == "hooked"
    assert calls == [2.5]


def test_a_get_hook_set_while_a_getter_waits_answers_that_getter() -> None:
    future: ReplyFuture[str] = ReplyFuture()
    got: queue.SimpleQueue[str] = queue.SimpleQueue()
    waiting = threading.Thread(target=lambda: got.put(future.get(timeout=5)))
    waiting.start()
    future.set_get_hook(lambda timeout: "late hook")
    waiting.join()
    assert got.get_nowait() == "late hook"


def test_map_filter_join_and_get_all_work_on_reply_futures() -> None:
    a: ReplyFuture[int] = ReplyFuture()
    b: ReplyFuture[int] = ReplyFuture()
    items: ReplyFuture[list[int]] = ReplyFuture()
    a.set(2)
    b.set(3)
    items.set([1, 2, 3, 4])
    assert a.map(lambda x: x * 10).get(timeout=1) == 20
    assert items.filter(lambda x: x % 2 == 0).get(timeout=1) == [2, 4]
    assert a.join(b).get(timeout=1) == [2, 3]
    assert pykka.get_all([a, b], timeout=1) == [2, 3]
    pending: ReplyFuture[int] = ReplyFuture()
    with pytest.raises(pykka.Timeout):
        pykka.get_all([a, pending], timeout=0.01)


class _Slow(Actor):
    def __init__(self, gate: threading.Event) -> None:
        super().__init__()
        self.gate = gate

    def on_receive(self, message: Any) -> Any:
        if message == "wait":
            self.gate.wait(timeout=5)
        if message == "boom":
            raise ValueError("handler failed")
        return message


def test_ask_replies_time_out_and_raise_through_reply_futures(system: ActorSystem) -> None:
    gate = threading.Event()
    system.spawn(_Slow, "/slow", gate)
    future = system.ask_future("/slow", "ping")
    assert isinstance(future, ReplyFuture)
    assert future.get(timeout=5) == "ping"
    with pytest.raises(ValueError, match="handler failed"):
        system.ask("/slow", "boom", timeout=5)
    blocked = system.ask_future("/slow", "wait")
    with pytest.raises(AskTimeout):
        system.ask("/slow", "after", timeout=0.05)
    gate.set()
    assert blocked.get(timeout=5) == "wait"
