"""The node's control server (the ``phalanx shell`` / ``phalanx ctl`` back end).

Split by concept: :mod:`._control_server` (socket, accepting, peer
credentials), :mod:`._control_connection` (one client: frames, subscriptions),
:mod:`._control_commands` (the command table, validation, node-wide commands),
:mod:`._control_actor_commands`, :mod:`._control_dlq_commands`,
:mod:`._control_args` (argument models), :mod:`._control_session` (what a
command sees) and :mod:`._control_health` (the ``health`` report). The wire
format is :mod:`phalanx.protocols.control`.
"""

from phalanx.runtime._control_commands import COMMANDS
from phalanx.runtime._control_server import ControlServer, peer_allowed, peer_credentials

__all__ = ["COMMANDS", "ControlServer", "peer_allowed", "peer_credentials"]
