"""The paper venue's HTTP replies: one write each, no Server header, 100-continue honoured."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from typing import Any

import ccxt
import pytest

from phalanx.actors.venue import PaperVenue


@pytest.fixture
def venue() -> Iterator[PaperVenue]:
    with PaperVenue(seed=7) as v:
        yield v


def test_each_reply_leaves_in_one_write_with_its_headers_and_body(
    venue: PaperVenue, monkeypatch: pytest.MonkeyPatch
) -> None:
    ex = ccxt.binance(venue.ccxt_config())
    ex.load_markets()
    # The client (http.client) writes with sock.sendall; only the venue's buffered
    # wfile goes through SocketIO.write.
    writes: list[bytes] = []
    lock = threading.Lock()
    original = socket.SocketIO.write

    def write(self: socket.SocketIO, data: Any) -> int | None:
        with lock:
            writes.append(bytes(data))
        return original(self, data)

    monkeypatch.setattr(socket.SocketIO, "write", write)
    order = ex.create_order("BTC/USDT", "limit", "buy", 0.001, 30000, {"clientOrderId": "w-1"})
    ex.fetch_ticker("BTC/USDT")
    assert order["clientOrderId"] == "w-1"
    assert len(writes) == 2  # two requests, two writes
    for data in writes:
        head, _, body = data.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200")
        assert body.startswith(b"{")
        assert body.endswith(b"}")


def test_replies_carry_a_date_and_no_server_header(venue: PaperVenue) -> None:
    ex = ccxt.binance(venue.ccxt_config())
    ex.fetch_time()
    headers = {name.lower() for name in ex.last_response_headers}
    assert "server" not in headers
    assert {"date", "content-type", "content-length"} <= headers


def test_an_expect_100_request_gets_continue_before_it_sends_its_body(venue: PaperVenue) -> None:
    body = b'{"n": 1}'
    with socket.create_connection(("127.0.0.1", venue.port), timeout=5) as sock:
        sock.sendall(
            b"POST /__venue/step HTTP/1.1\r\nHost: 127.0.0.1\r\nExpect: 100-continue\r\n"
            b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body)
        )
        interim = sock.recv(4096)  # times out (fails) if the 100 stays in the buffer
        assert interim.startswith(b"HTTP/1.1 100")
        sock.sendall(body)
        reply = b""
        while not reply.endswith(b"}"):
            chunk = sock.recv(4096)
            assert chunk, "connection closed before the reply"
            reply += chunk
    assert reply.startswith(b"HTTP/1.1 200")
    assert reply.endswith(b'{"ok": true}')
