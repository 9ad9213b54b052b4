"""Subprocess for the durable-mailbox crash test (not collected by pytest).

usage: durable_child.py VAR_DIR OUT_FILE N send|recover

``send`` tells N durable messages, prints "sent", then keeps handling until
killed. ``recover`` restarts on the same var dir, lets the replay finish, and
prints "done" once message N-1 was handled.
"""

from __future__ import annotations

import os
import sys
import threading
from typing import Any

from phalanx import Actor, ActorSystem, Mailbox


def main() -> None:
    var_dir, out_file, n, mode = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    last = threading.Event()
    out = open(out_file, "a", buffering=1)  # noqa: SIM115 - lives as long as the process
    pause = threading.Event()

    class Sink(Actor):
        def on_receive(self, message: Any) -> Any:
            pause.wait(0.0002)  # slower than the sender, so a backlog builds up
            out.write(f"{message['seq']}\n")
            if message["seq"] == n - 1:
                last.set()
            return None

    with ActorSystem(name=f"durable-{mode}", var_dir=var_dir, sync=False) as system:
        system.spawn(Sink, "/sink", mailbox=Mailbox(capacity=n + 10, durable=True))
        if mode == "send":
            for seq in range(n):
                system.tell("/sink", {"seq": seq})
            print("sent", flush=True)
            last.wait(60)
            print("finished-before-kill", flush=True)
            os._exit(0)
        last.wait(60)
        print("done" if last.is_set() else "timeout", flush=True)


if __name__ == "__main__":
    main()
