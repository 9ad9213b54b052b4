"""The connection's pure limits: the weighted token bucket and the adaptive timeout."""

from __future__ import annotations

import threading

from hypothesis import given
from hypothesis import strategies as st

from phalanx.actors.exchange import LatencyWindow, TokenBucket


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@given(
    st.lists(
        st.tuples(st.floats(0, 2, allow_nan=False), st.integers(1, 4)), min_size=1, max_size=60
    )
)
def test_bucket_never_grants_more_than_burst_plus_rate_times_elapsed(
    steps: list[tuple[float, int]],
) -> None:
    clock = Clock()
    bucket = TokenBucket(rate=10, burst=5, clock=clock)
    granted = 0.0
    for dt, weight in steps:
        clock.now += dt
        if bucket.headroom() >= weight:  # a call that needs no wait (the fake clock cannot)
            waited, _ = bucket.acquire(weight)
            assert waited == 0.0
            granted += weight
        assert granted <= 5 + 10 * clock.now + 1e-9
        assert bucket.headroom() <= 5


def test_a_call_heavier_than_the_burst_goes_into_debt_that_refills_at_the_rate() -> None:
    clock = Clock()
    bucket = TokenBucket(rate=10, burst=5, clock=clock)
    assert bucket.acquire(20) == (0.0, -15)  # a full bucket lets one heavy call through
    clock.now += 1.0
    assert bucket.headroom() == -5
    clock.now += 100.0
    assert bucket.headroom() == 5  # capped at the burst


def test_close_releases_a_caller_waiting_for_tokens() -> None:
    bucket = TokenBucket(rate=0.001, burst=1)  # the next token is 1000 s away
    bucket.acquire(1)
    done = threading.Event()

    def wait_for_token() -> None:
        bucket.acquire(1)
        done.set()

    waiter = threading.Thread(target=wait_for_token)
    waiter.start()
    bucket.close()
    assert done.wait(5)
    waiter.join(5)


def test_timeout_is_the_default_until_five_samples_then_p95_times_one_and_a_half() -> None:
    window = LatencyWindow(minimum_ms=50, maximum_ms=5000, default_ms=1000)
    for _ in range(4):
        window.add(100.0)
    assert window.timeout_ms() == 1000
    window.add(100.0)
    assert window.timeout_ms() == 150


def test_timeout_is_clamped_and_recomputed_every_sixteen_samples() -> None:
    window = LatencyWindow(minimum_ms=50, maximum_ms=400, default_ms=1000)
    for _ in range(5):
        window.add(10.0)
    assert window.timeout_ms() == 50  # 15 ms, clamped up to the minimum
    for _ in range(10):
        window.add(1000.0)
    assert window.timeout_ms() == 50  # cached: fifteen samples so far
    window.add(1000.0)
    assert window.timeout_ms() == 400  # the sixteenth: p95 1000 x 1.5, clamped down
