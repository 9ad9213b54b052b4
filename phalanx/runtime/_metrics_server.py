"""The loopback HTTP exposition server of a node's metrics (``/metrics``).

One serving thread per server (``wsgiref``, ``make_wsgi_app`` over the node's
own registry); a stalled scraper is cut off after the handler timeout. Only
loopback hosts are accepted; the server closes itself at ``node_stopped``.
"""

from __future__ import annotations

import socket
import threading
from typing import TYPE_CHECKING, Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import make_wsgi_app

from phalanx.errors import ConfigError
from phalanx.runtime._alert_config import check_loopback
from phalanx.runtime._events import Event
from phalanx.runtime._metrics import SystemMetrics, metrics_for

if TYPE_CHECKING:
    from phalanx.runtime._system import ActorSystem

__all__ = ["MetricsServer", "start_metrics_server"]


class _QuietHandler(WSGIRequestHandler):
    timeout = 5.0  # a stalled scraper cannot hold the single serving thread for long

    def log_message(self, format: str, *args: Any) -> None:
        """Scrapes are not logged."""


class _Server4(WSGIServer):
    address_family = socket.AF_INET


class _Server6(WSGIServer):
    address_family = socket.AF_INET6


class MetricsServer:
    """A running exposition server (``.host``, ``.port``, ``.url``); :meth:`close` joins it."""

    def __init__(self, system: ActorSystem, metrics: SystemMetrics, host: str, port: int) -> None:
        server_class = _Server6 if ":" in host else _Server4
        try:
            self._server = make_server(
                host, port, make_wsgi_app(metrics.registry),
                server_class=server_class, handler_class=_QuietHandler,
            )  # fmt: skip
        except OSError as exc:
            raise ConfigError(
                f"cannot serve metrics on {host}:{port}: {exc.strerror or exc}"
            ) from exc
        self.host = host
        self.port: int = self._server.server_address[1]
        self.url = f"http://{'[' + host + ']' if ':' in host else host}:{self.port}/metrics"
        self._closed = False
        self._close_lock = threading.Lock()
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.1},
            name=f"phalanx-metrics:{system.name}:{self.port}",
        )
        self._thread.start()

    def close(self) -> None:
        """Stop serving and join the thread. Idempotent."""
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5.0)

    @property
    def closed(self) -> bool:
        """True once :meth:`close` ran."""
        return self._closed


def start_metrics_server(
    system: ActorSystem, host: str = "127.0.0.1", port: int = 0
) -> MetricsServer:
    """Serve ``system``'s metrics on a loopback ``host:port`` (0: a free port).

    Raises :class:`ConfigError` for a non-loopback host or a port in use. The
    server closes itself when the node stops (``node_stopped``); closing it
    earlier is the caller's job.
    """
    try:
        host = check_loopback(host)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    if not 0 <= port <= 65535:
        raise ConfigError(f"metrics port must be 0..65535, got {port}")
    server = MetricsServer(system, metrics_for(system), host, port)

    def close_at_stop(event: Event) -> None:
        if event.kind == "node_stopped":
            server.close()

    system.events.add_listener(close_at_stop)
    return server
