"""The node's control server (the ``phalanx shell`` / ``phalanx ctl`` back end).

Split by concept: :mod:`._control_server` (socket, clients, subscriptions,
peer credentials), :mod:`._control_commands` (validated commands) and
:mod:`._control_health` (the ``health`` report). The wire format is
:mod:`phalanx.protocols.control`.
"""

from phalanx.runtime._control_commands import COMMANDS
from phalanx.runtime._control_server import ControlServer, peer_allowed, peer_credentials

__all__ = ["COMMANDS", "ControlServer", "peer_allowed", "peer_credentials"]
