"""Actor urns drawn from batched random bytes: valid UUID4 URNs, unique, fresh in a forked child."""

from __future__ import annotations

import os
import threading
import uuid

from phalanx.runtime import _actor


def _check_urn(urn: str) -> None:
    assert urn.startswith("urn:uuid:")
    parsed = uuid.UUID(urn[len("urn:uuid:") :])
    assert parsed.version == 4
    assert parsed.variant == uuid.RFC_4122
    assert parsed.urn == urn


def test_batched_urns_are_valid_and_unique_across_refills_and_threads() -> None:
    made: list[str] = []

    def make() -> None:
        made.extend(_actor._new_urn() for _ in range(3 * _actor._URN_BATCH))

    threads = [threading.Thread(target=make, name=f"urns-{i}") for i in range(4)]
    for thread in threads:
        thread.start()
    make()
    for thread in threads:
        thread.join(10.0)
    assert len(made) == 5 * 3 * _actor._URN_BATCH
    assert len(set(made)) == len(made)
    for urn in made[:: _actor._URN_BATCH // 4]:
        _check_urn(urn)


def test_a_forked_child_draws_fresh_urn_bytes() -> None:
    _actor._new_urn()  # the pool holds bytes now
    assert _actor._urn_hex
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report whether it kept the parent's bytes
        try:
            os.write(write, b"0" if _actor._urn_hex else b"1")  # cleared by the fork hook
        finally:
            os._exit(0)
    os.close(write)
    try:
        answer = os.read(read, 1)
    finally:
        os.close(read)
        os.waitpid(pid, 0)
    assert answer == b"1"
