"""The :class:`Actor` base class and the actor core loop.

An :class:`Actor` is a pykka ``ThreadingActor`` whose inbox is owned by its
address (an ``ActorCell``), not by the instance. pykka's ``ActorRef``, ``ask``,
``tell``, ``stop`` and proxies keep working: they feed the same bounded inbox.
"""

from __future__ import annotations

import ctypes
import os
import threading
from typing import TYPE_CHECKING, Any, ClassVar

import pykka
from pykka import messages as pykka_messages

from phalanx.errors import UnknownMessage
from phalanx.runtime import _context
from phalanx.runtime._envelope import Envelope
from phalanx.runtime._flags import Flag
from phalanx.runtime._mailbox import Control

if TYPE_CHECKING:
    from phalanx.runtime._cell import ActorCell
    from phalanx.runtime._ref import Ref
    from phalanx.runtime._system import ActorSystem
    from phalanx.runtime._timers import Timer

__all__ = ["Actor", "ActorKilled", "ExitReason", "interrupt_thread"]

# The cell being given a new incarnation on this thread (set around the factory call).
_constructing = threading.local()


class ActorKilled(BaseException):
    """Raised asynchronously in an actor thread whose shutdown overran its timeout.

    A BaseException so user ``except Exception`` blocks do not swallow it.
    CPython delivers it between bytecodes: code blocked inside one C call
    (a long ``time.sleep``, a socket read) is only interrupted when that
    call returns. That is the limit of stopping threads in Python.
    """


def interrupt_thread(thread: threading.Thread) -> bool:
    """Raise :class:`ActorKilled` inside ``thread``; True if it was delivered.

    Unguarded: it may land anywhere. The runtime uses :meth:`Actor._interrupt`,
    which only interrupts user code.
    """
    ident = thread.ident
    if ident is None or not thread.is_alive():
        return False
    delivered = ctypes.pythonapi.PyThreadState_SetAsyncExc(
        ctypes.c_ulong(ident), ctypes.py_object(ActorKilled)
    )
    return bool(delivered == 1)


# os.urandom releases the GIL (getrandom(2) runs in Py_BEGIN_ALLOW_THREADS): a
# spawn that called it once per actor gave the GIL away mid-spawn, and on a busy
# node getting it back is a hand-off of its own (measured in the buy-saga bench,
# median of 5 alternated rounds: 8.31 -> 7.67 voluntary switches per saga in
# each supervisor). Random bytes are drawn for _URN_BATCH urns at once;
# list.pop() and extend() are atomic under the GIL.
_URN_BATCH = 256
_urn_hex: list[str] = []


def _refill_urns() -> str:
    h = os.urandom(16 * _URN_BATCH).hex()
    batch = [h[i : i + 32] for i in range(0, len(h), 32)]
    mine = batch.pop()
    _urn_hex.extend(batch)
    return mine


# A forked child must not reuse the random bytes its parent already holds.
os.register_at_fork(after_in_child=_urn_hex.clear)


def _new_urn() -> str:
    """A random UUID4 URN, as ``uuid.uuid4().urn`` (~1 us instead of ~5 us)."""
    try:
        h = _urn_hex.pop()
    except IndexError:
        h = _refill_urns()
    variant = "89ab"[int(h[16], 16) & 3]  # RFC 4122: the top bits of clock_seq are 10
    return f"urn:uuid:{h[:8]}-{h[8:12]}-4{h[13:16]}-{variant}{h[17:20]}-{h[20:]}"


def _clear_pending_interrupt(ident: int) -> None:
    # PyThreadState_SetAsyncExc(id, NULL) drops an async exception not yet raised.
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(ident), None)


class ExitReason:
    """Why an incarnation ended (the OTP exit-reason vocabulary)."""

    NORMAL = "normal"  # self.stop() or pykka ActorRef.stop()
    SHUTDOWN = "shutdown"  # stopped by the system or a supervisor
    KILLED = "killed"  # system.kill(): abrupt, treated as a crash
    CRASHED = "crashed"  # a handler raised and the directive was not resume
    START_FAILED = "start_failed"  # the factory, on_start or post_restart raised


class Actor(pykka.ThreadingActor):
    """Base class of phalanx actors.

    Override :meth:`on_receive` (and optionally ``on_start``, ``on_stop``,
    :meth:`pre_restart`, :meth:`post_restart`, :meth:`introspect`). Actors are
    created by :meth:`ActorSystem.spawn` or a ``ChildSpec``, never with
    ``Actor.start()``: a phalanx actor needs an address.
    """

    # Actor threads are not daemons: shutdown is orderly and joins them.
    use_daemon_thread: ClassVar[bool] = False

    def __init__(self, *_args: Any, **_kwargs: Any) -> None:
        cell: ActorCell | None = getattr(_constructing, "cell", None)
        if cell is None:
            raise RuntimeError(
                f"{type(self).__name__} must be started by ActorSystem.spawn() or a "
                "ChildSpec, not instantiated or started directly"
            )
        self._cell: ActorCell = cell
        self._envelope: Envelope | None = None
        # Interrupt window (see _interrupt): open only while user code runs.
        self._interrupt_lock = threading.Lock()
        self._in_user_code = False
        self._interrupt_sent = False
        self._loop_thread: threading.Thread | None = None
        # pykka.Actor.__init__ inlined (it calls no super().__init__ either): its
        # uuid4().urn and threading.Event() were ~9 us of every spawn (see _flags).
        self.actor_urn = _new_urn()
        self.actor_inbox = self._create_actor_inbox()
        self.actor_stopped = Flag(cell.signals)
        self._actor_ref = pykka.ActorRef(self)

    def _create_actor_inbox(self) -> Any:  # type: ignore[override]
        # pykka calls this from Actor.__init__; the cell owns the real inbox.
        return self._cell.pykka_inbox

    # --- public surface for subclasses -------------------------------------

    @property
    def path(self) -> str:
        """This actor's address, such as ``/exchanges/binance``."""
        return self._cell.path

    @property
    def system(self) -> ActorSystem:
        """The system this actor runs in."""
        return self._cell.system

    @property
    def ref(self) -> Ref:
        """A :class:`Ref` to this actor's address (stable across restarts)."""
        return self._cell.system.ref(self._cell.path)

    @property
    def envelope(self) -> Envelope | None:
        """The envelope of the message being handled (``attempt``, ``trace``...)."""
        return self._envelope

    @property
    def incarnation(self) -> int:
        """1 for the first instance at this address, +1 for each restart."""
        return self._cell.incarnation

    @property
    def stop_pending(self) -> bool:
        """True when a stop or kill is already queued for this actor.

        Control signals are taken ahead of every message, so a message this
        actor sends itself now would not be handled by this incarnation; a
        stop that lands after the check is still possible (a best-effort hint).
        """
        return self._cell.inbox.control_pending

    def send_after(self, delay: float, message: Any) -> Timer:
        """Tell ``message`` to this actor's address after ``delay`` seconds."""
        return self._cell.system.send_after(delay, self._cell.path, message)

    def send_every(self, interval: float, message: Any) -> Timer:
        """Tell ``message`` to this actor's address every ``interval`` seconds."""
        return self._cell.system.send_every(interval, self._cell.path, message)

    def on_receive(self, message: Any) -> Any:
        """Handle one message. The default refuses it with :class:`UnknownMessage`."""
        raise UnknownMessage(
            f"{type(self).__name__} at {self.path} does not handle messages of type "
            f"{type(message).__qualname__}"
        )

    def pre_restart(self, exc: BaseException) -> None:
        """Called on the failing incarnation, on its thread, before it is replaced."""

    def post_restart(self) -> None:
        """Called on the new incarnation after ``on_start``, when it is a restart."""

    def introspect(self) -> dict[str, Any]:
        """A JSON-safe view of this actor's state for the shell's ``inspect``."""
        return {"class": type(self).__qualname__}

    def _after_incarnation(self, reason: str) -> None:
        """Runtime hook: runs on this thread after every end, kill and crash included.

        Unlike ``on_stop`` it cannot be skipped; supervisors use it to take
        their children down with them (OTP links).
        """

    # --- the core loop -----------------------------------------------------

    def _start_actor_loop(self) -> None:
        thread = threading.Thread(
            target=self._actor_loop,
            name=f"phalanx:{self._cell.path}#{self._cell.incarnation}",
            daemon=self.use_daemon_thread,
        )
        self._loop_thread = thread
        self._cell.thread = thread
        thread.start()

    # --- interrupts ----------------------------------------------------------
    #
    # Invariant: an ActorKilled is raised in this incarnation's thread only while
    # user code runs (on_start, post_restart, a handler, on_stop), never in the
    # runtime's own code (bookkeeping, dead-lettering, storage, teardown). The
    # window closes under _interrupt_lock, which also drops an interrupt still
    # pending, and _interrupt sends under the same lock, so none is sent or
    # left pending once it is closed. At most one is sent per window: one that
    # surfaces just after the user code returned is the only one, and is
    # handled as an interrupt of that user code. Opening needs no lock: the
    # close before it already reset _interrupt_sent on this thread.

    def _enter_user_code(self) -> None:
        self._in_user_code = True

    def _leave_user_code(self) -> None:
        with self._interrupt_lock:
            self._in_user_code = False
            if self._interrupt_sent:
                self._interrupt_sent = False
                _clear_pending_interrupt(threading.get_ident())

    def _interrupt(self) -> bool:
        """Raise ActorKilled in this incarnation's thread if it runs user code now."""
        with self._interrupt_lock:
            thread = self._loop_thread
            if not self._in_user_code or self._interrupt_sent or thread is None:
                return False
            self._interrupt_sent = interrupt_thread(thread)
            return self._interrupt_sent

    def _user_start(self) -> None:
        try:
            self._enter_user_code()
            self.on_start()
            if self._cell.incarnation > 1:
                self.post_restart()
        finally:
            self._leave_user_code()

    def _user_stop(self) -> None:
        try:
            self._enter_user_code()
            self.on_stop()
        finally:
            self._leave_user_code()

    # --- the core loop -----------------------------------------------------

    def _actor_loop(self) -> None:
        cell = self._cell
        path_token = _context._path.set(cell.path)
        reason: str = ExitReason.KILLED
        exc: BaseException | None = None
        started = False
        try:
            try:
                self._user_start()
            except Exception as start_exc:
                reason, exc = ExitReason.START_FAILED, start_exc
                return
            started = True
            cell.incarnation_started(self)
            reason, exc = self._run_loop(cell)
            if reason in (ExitReason.NORMAL, ExitReason.SHUTDOWN):
                try:
                    self._user_stop()
                except Exception as stop_exc:
                    cell.record_failure(stop_exc, None, where="on_stop")
        except ActorKilled:
            self._leave_user_code()
            reason, exc = ExitReason.KILLED, None  # interrupted: an overrun shutdown
        except BaseException as err:
            # Not an interrupt: SystemExit/KeyboardInterrupt from on_start or on_stop,
            # or a runtime bug. A crash (or failed start) with the real error.
            self._leave_user_code()
            reason, exc = (ExitReason.CRASHED if started else ExitReason.START_FAILED), err
            if started:
                cell.record_failure(err, None, where="actor_loop")
        finally:
            # Invariant: every incarnation reports its end exactly once, whatever
            # raised above, so supervisors and shutdown never wait forever.
            try:
                self._after_incarnation(reason)
            except Exception as hook_exc:
                cell.record_failure(hook_exc, None, where="teardown")
            finally:
                self.actor_stopped.set()
                _context._path.reset(path_token)
                cell.incarnation_ended(self, reason, exc)

    def _run_loop(self, cell: ActorCell) -> tuple[str, BaseException | None]:
        """Handle envelopes until a control signal, a stop, or a crash.

        Invariants:
        - exactly one thread (this one) takes from the cell's inbox, so a
          redelivered envelope put at the head is the next one handled;
        - the trace context is set for one envelope and reset before the
          next, so no trace id leaks across messages;
        - every envelope taken leaves as handled (reply set, durable entry
          acked), redelivered at the head, or dead-lettered: never dropped.
        """
        get = cell.inbox.get
        trace_var = _context._trace
        stop_type = pykka_messages._ActorStop
        # pykka's _handle_receive runs four isinstance checks per message; only
        # its own message types need it, everything else goes to on_receive.
        pykka_types = (
            pykka_messages.ProxyCall,
            pykka_messages.ProxyGetAttr,
            pykka_messages.ProxySetAttr,
        )
        on_receive = self.on_receive
        handle_pykka = self._handle_receive
        ilock = self._interrupt_lock
        leave = self._leave_user_code
        while True:
            item = get()
            if type(item) is Control:
                return item.name, None
            env: Envelope = item  # type: ignore[assignment]
            message = env.message
            if type(message) is stop_type:
                cell.handled(env, None)
                return ExitReason.NORMAL, None
            self._envelope = env
            token = trace_var.set(env.trace)
            try:
                # Opened inside the try: an interrupt landing at once still
                # dead-letters this envelope below (nothing taken is lost).
                self._in_user_code = True  # inlined _enter_user_code(): the hot path
                try:
                    if isinstance(message, pykka_types):
                        result = handle_pykka(message)
                    else:
                        result = on_receive(message)
                finally:
                    with ilock:  # inlined _leave_user_code()
                        self._in_user_code = False
                        if self._interrupt_sent:
                            self._interrupt_sent = False
                            _clear_pending_interrupt(threading.get_ident())
            except Exception as exc:
                trace_var.reset(token)
                self._envelope = None
                if cell.handle_failure(self, exc, env):
                    continue  # resumed: the incarnation keeps running
                return ExitReason.CRASHED, exc
            except ActorKilled as exc:
                # Interrupted by an overrun shutdown: the message fails loudly.
                leave()  # if it surfaced while the window was closing
                trace_var.reset(token)
                self._envelope = None
                cell.system.post.dead_letter("handler_failed", env, cell.path, error=exc)
                return ExitReason.KILLED, None
            except BaseException as exc:
                # KeyboardInterrupt/SystemExit: fail the message and end the incarnation.
                trace_var.reset(token)
                self._envelope = None
                cell.handle_fatal(exc, env)
                return ExitReason.CRASHED, exc
            trace_var.reset(token)
            self._envelope = None
            # Inlined ActorCell.handled(): this is the per-message hot path.
            cell.processed += 1
            if env.reply_to is not None:
                env.reply_to.set(result)
            if env.durable_key is not None:
                cell.ack_later(env)
            if cell.trial_notify is not None:
                cell.report_trial()
