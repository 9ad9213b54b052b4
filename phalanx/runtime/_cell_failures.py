"""Handler failures of a cell: the decider's directive, redelivery, dead letters.

Runs on the actor thread that caught the failure. RESUME answers the asker
with the error or dead-letters the message; RESTART puts the message back at
the head of the inbox while the retry budget lasts (this thread is the only
consumer), else dead-letters it; STOP and ESCALATE dead-letter it, as does a
KeyboardInterrupt/SystemExit, which also stops the cell. Every failure is
kept (with its traceback) for ``inspect`` and logged.
"""

from __future__ import annotations

import time
import traceback

from pydantic import ValidationError

from phalanx.errors import CircuitOpen, UnknownMessage
from phalanx.runtime._actor import Actor
from phalanx.runtime._cell_state import _CellState
from phalanx.runtime._envelope import Envelope
from phalanx.supervision import Directive
from phalanx.supervision._decider import retry_budget

__all__: list[str] = []


class _CellFailures(_CellState):
    """What a cell does when a handler raises (no state of its own)."""

    __slots__ = ()

    def _crash_directive(self, exc: BaseException) -> Directive:
        try:
            return self.decider(exc)
        except Exception:
            return Directive.RESTART

    def handle_failure(self, actor: Actor, exc: Exception, env: Envelope) -> bool:
        """Apply the directive for a handler failure. True means: keep running."""
        self.record_failure(exc, env, where="handler")
        directive = self._crash_directive(exc)
        self.last_directive = directive
        system = self.system
        if directive is Directive.RESUME:
            if env.reply_to is not None:
                self.processed += 1
                env.reply_to.set_exception((type(exc), exc, exc.__traceback__))
                if env.durable_key is not None:
                    self.ack_later(env)
            else:
                bad_input = isinstance(exc, UnknownMessage | ValidationError)
                reason = "validation_failed" if bad_input else "permanent_error"
                if isinstance(exc, CircuitOpen):
                    reason = "circuit_open"
                system.post.dead_letter(reason, env, self.path, error=exc)
            return True
        if directive is Directive.RESTART:
            fatal: BaseException | None = None
            try:
                actor.pre_restart(exc)
            except Exception as hook_exc:
                self.record_failure(hook_exc, None, where="pre_restart")
            except BaseException as hook_exc:  # SystemExit...: place the message first
                fatal = hook_exc
            budget = retry_budget(exc, self.retry)
            if env.attempt < budget:
                env.attempt += 1
                # Invariant: this thread is the only consumer, so the redelivered
                # envelope is the first one the next incarnation takes.
                self.inbox.put_head(env)
                system._event(
                    "retry_attempt",
                    self.path,
                    message_id=env.message_id,
                    attempt=env.attempt,
                    max_attempts=budget,
                    error=repr(exc),
                )
            else:
                system.post.dead_letter("retries_exhausted", env, self.path, error=exc)
            if fatal is not None:
                raise fatal  # ends the incarnation as a crash with this error
            return False
        system.post.dead_letter("handler_failed", env, self.path, error=exc)
        return False

    def handle_fatal(self, exc: BaseException, env: Envelope) -> None:
        """A handler raised KeyboardInterrupt/SystemExit: fail the message loudly."""
        self.record_failure(exc, env, where="handler")
        self.system.post.dead_letter("handler_failed", env, self.path, error=exc)
        with self._lock:
            self._stopping = True

    def record_failure(self, exc: BaseException, env: Envelope | None, *, where: str) -> None:
        """Keep the failure (with traceback) for ``inspect``, count it, and log it."""
        self.failures += 1
        self.system._log_failure(self.path, exc, env, where)
        self.recent_failures.append(
            {
                "at": time.time(),
                "where": where,
                "incarnation": self.incarnation,
                "error_type": type(exc).__qualname__,
                "error": str(exc),
                "traceback": "".join(traceback.format_exception(exc)),
                "message_id": env.message_id if env is not None else None,
                "attempt": env.attempt if env is not None else None,
            }
        )
