"""Deadlines for blocking calls that may never return, enforced from outside the call.

librdkafka's ``send_offsets_to_transaction`` can wait past its own timeout when the group
coordinator goes away (librdkafka issues #5456 and #5511), so a timeout argument is no guard.
A thread stuck in C cannot be cancelled either; the one safe answer to a missed deadline is to
end the process: one error line naming the call and its deadline, then exit code
:data:`EXIT_STUCK`. Its supervisor (``--workers``, systemd, Kubernetes) starts a fresh process,
whose ``init_transactions`` fences the stuck transaction and whose consumer re-reads from the
committed offsets, so nothing is lost or doubled::

    watchdog = Watchdog().start()
    with watchdog.arm("commit_transaction", 60.0):
        producer.commit_transaction(60.0)    # the main thread makes the call, as before

One daemon thread waits for the earliest armed deadline; it never touches the caller's objects,
it only ends the process.

Signals: Python runs a signal handler on the main thread between bytecodes, so a SIGTERM that
arrives while the main thread is inside a C call is not handled until that call returns, perhaps
never. :meth:`Watchdog.watch_signals` gives the interpreter a wakeup fd: its C-level handler
writes the signal number there at once, and the watchdog thread arms a shutdown deadline that no
``disarm`` cancels. The stage drains in time, or the process ends with :data:`EXIT_STUCK`.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import select
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass
from typing import Final, Protocol

from stream.logs import get_logger

log = get_logger("capi_stream.watchdog")

#: The exit code of a process ended by a missed deadline (1 is an error the stage saw itself).
EXIT_STUCK: Final = 3
#: The longest the thread sleeps without looking (only a safety net: arming wakes it).
_MAX_WAIT_S: Final = 5.0
_WAKE: Final = b"\x00"  # no signal has number 0, so this byte never means a signal
#: The name of the deadline armed by a stop signal.
SHUTDOWN: Final = "shutdown after a stop signal"


class Arm(Protocol):
    """What a caller needs to guard its calls: ``with arm(name, seconds): call()``."""

    def __call__(self, name: str, timeout_s: float) -> contextlib.AbstractContextManager[None]:
        """A context in which the call ``name`` must finish within ``timeout_s``."""
        ...


@contextlib.contextmanager
def no_deadline(name: str, timeout_s: float) -> Iterator[None]:  # noqa: ARG001 - an Arm
    """An :class:`Arm` that guards nothing (one-off tools, tests)."""
    yield


def hard_exit(code: int) -> None:
    """Flush what was logged, then end the process at once (no cleanup can hang it)."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)


@dataclass(frozen=True, slots=True)
class Deadline:
    """One armed deadline: the call's name, its allowance and when it runs out (monotonic)."""

    name: str
    timeout_s: float
    expires_at: float


class Watchdog:
    """Ends the process when an armed deadline passes; see the module docstring.

    ``exit`` is called with :data:`EXIT_STUCK` (``os._exit`` after flushing by default; a test
    passes a recorder, and the thread then stops after the first expiry). ``clock`` must be the
    monotonic clock the thread waits on, or a clock that runs no faster.
    """

    def __init__(
        self,
        *,
        exit: Callable[[int], object] = hard_exit,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._exit = exit
        self._clock = clock
        # re-entrant: a signal handler on the main thread may arm while that thread holds it
        self._lock = threading.RLock()
        self._armed: dict[int, Deadline] = {}
        self._ids = itertools.count()
        self._sockets: tuple[socket.socket, socket.socket] | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._signals: frozenset[int] = frozenset()
        self._shutdown_s = 0.0
        self._previous_wakeup_fd: int | None = None
        self.fired: Deadline | None = None

    # -- arming (any thread) -----------------------------------------------------------------

    @contextlib.contextmanager
    def arm(self, name: str, timeout_s: float) -> Iterator[None]:
        """The block must end within ``timeout_s``, or the process ends (an :class:`Arm`)."""
        token = self._add(name, timeout_s)
        try:
            yield
        finally:
            with self._lock:
                self._armed.pop(token, None)

    def arm_forever(self, name: str, timeout_s: float) -> None:
        """A deadline nothing disarms: the process must have ended by then (a shutdown)."""
        self._add(name, timeout_s)

    def armed(self) -> list[Deadline]:
        """The deadlines armed now, earliest first."""
        with self._lock:
            return sorted(self._armed.values(), key=lambda d: d.expires_at)

    def expired(self, now: float) -> Deadline | None:
        """The earliest deadline that has passed at ``now``, if any."""
        armed = self.armed()
        return armed[0] if armed and armed[0].expires_at <= now else None

    def _add(self, name: str, timeout_s: float) -> int:
        deadline = Deadline(name, timeout_s, self._clock() + timeout_s)
        with self._lock:
            token = next(self._ids)
            self._armed[token] = deadline
        self._wake()
        return token

    def _wake(self) -> None:
        sockets = self._sockets
        if sockets is not None:
            with contextlib.suppress(OSError):  # full (the thread looks anyway), or just closed
                sockets[1].send(_WAKE)

    # -- signals (main thread) ---------------------------------------------------------------

    def watch_signals(
        self,
        shutdown_s: float,
        signals: Collection[int] = (signal.SIGTERM, signal.SIGINT),
    ) -> bool:
        """Arm a ``shutdown_s`` deadline when one of ``signals`` arrives, even mid C call.

        Call it after :meth:`start`. The signals need a Python handler (the stage's own, which
        asks its loop to stop): only then does the interpreter write to the wakeup fd. Returns
        False, doing nothing, off the main thread (a stage run by a test), where signals are not
        the stage's to handle.
        """
        if threading.current_thread() is not threading.main_thread() or self._sockets is None:
            return False
        self._signals = frozenset(signals)
        self._shutdown_s = shutdown_s
        previous = signal.set_wakeup_fd(self._sockets[1].fileno(), warn_on_full_buffer=False)
        if self._previous_wakeup_fd is None:
            self._previous_wakeup_fd = previous
        return True

    def shutdown(self, shutdown_s: float) -> None:
        """Arm the shutdown deadline now, unless armed already (from a signal handler, say)."""
        with self._lock:
            if not any(d.name == SHUTDOWN for d in self._armed.values()):
                self.arm_forever(SHUTDOWN, shutdown_s)

    # -- the thread --------------------------------------------------------------------------

    def start(self) -> Watchdog:
        """Start the watching thread (a daemon: it never holds up the process's exit)."""
        if self._thread is None:
            reader, writer = socket.socketpair()
            reader.setblocking(False)
            writer.setblocking(False)
            self._sockets = (reader, writer)
            self._stopping.clear()
            self._thread = threading.Thread(
                target=self._watch, args=(reader,), name="capi-watchdog", daemon=True
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop watching and give back the wakeup fd; deadlines still armed lapse."""
        if self._previous_wakeup_fd is not None:
            if threading.current_thread() is not threading.main_thread():
                return  # the wakeup fd must stay open while it is the interpreter's
            signal.set_wakeup_fd(self._previous_wakeup_fd)
            self._previous_wakeup_fd = None
        self._stopping.set()
        self._wake()
        thread, sockets = self._thread, self._sockets
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=_MAX_WAIT_S)
        self._thread = self._sockets = None
        if sockets is not None:
            for sock in sockets:
                sock.close()

    def _watch(self, reader: socket.socket) -> None:
        while not self._stopping.is_set():
            now = self._clock()
            due = self.expired(now)
            if due is not None:
                self._fire(due)
                return
            armed = self.armed()
            wait_s = _MAX_WAIT_S if not armed else min(armed[0].expires_at - now, _MAX_WAIT_S)
            try:
                readable, _, _ = select.select([reader], [], [], max(wait_s, 0.0))
                data = reader.recv(4096) if readable else b""
            except BlockingIOError:
                continue
            except (OSError, ValueError):
                return  # closed by stop()
            got = {b for b in data if b in self._signals}
            if got:
                log.info(
                    "stop signal received; the process ends by its deadline",
                    signal=min(got), deadline_s=self._shutdown_s,
                )  # fmt: skip
                self.shutdown(self._shutdown_s)

    def _fire(self, due: Deadline) -> None:
        self.fired = due
        # what else was running says where a shutdown got stuck (send_offsets_to_transaction...)
        during = [d.name for d in self.armed() if d != due]
        log.error(
            "deadline missed; exiting so that a supervisor restarts the process",
            call=due.name, deadline_s=due.timeout_s, exit_code=EXIT_STUCK, during=during,
        )  # fmt: skip
        self._exit(EXIT_STUCK)
