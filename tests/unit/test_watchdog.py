"""The watchdog: a missed deadline ends the process (exit 3), a met one does not, and a stop
signal arms a shutdown deadline even while the main thread is stuck inside a C call.

The exit function is injected, so nothing here ends pytest; every wait is bounded.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from types import FrameType

import pytest
from structlog.testing import capture_logs

from stream.watchdog import EXIT_STUCK, SHUTDOWN, Deadline, Watchdog, no_deadline


class Exits:
    """Records the watchdog's exit calls; ``wait`` blocks (bounded) until the first."""

    def __init__(self) -> None:
        self.codes: list[int] = []
        self._called = threading.Event()

    def __call__(self, code: int) -> None:
        self.codes.append(code)
        self._called.set()

    def wait(self, timeout_s: float = 10.0) -> bool:
        return self._called.wait(timeout_s)


@pytest.fixture
def exits() -> Exits:
    return Exits()


@pytest.fixture
def watchdog(exits: Exits) -> Iterator[Watchdog]:
    dog = Watchdog(exit=exits).start()
    yield dog
    dog.stop()


def test_a_missed_deadline_exits_3_with_one_error_line_naming_the_call(
    watchdog: Watchdog, exits: Exits
) -> None:
    """A call still running past its deadline ends the process with exit code 3."""
    with capture_logs() as logs, watchdog.arm("send_offsets_to_transaction", 0.05):
        assert exits.wait(), "the watchdog did not fire"
    assert exits.codes == [EXIT_STUCK]
    assert watchdog.fired is not None
    assert watchdog.fired.name == "send_offsets_to_transaction"
    errors = [e for e in logs if e["log_level"] == "error"]
    assert len(errors) == 1
    assert errors[0]["call"] == "send_offsets_to_transaction"
    assert errors[0]["deadline_s"] == 0.05
    assert errors[0]["exit_code"] == EXIT_STUCK


def test_a_deadline_disarmed_in_time_never_fires(watchdog: Watchdog, exits: Exits) -> None:
    """Leaving the armed block in time disarms it: the later deadline is the one that fires."""
    with watchdog.arm("commit_transaction", 0.3):
        pass  # returned well within its deadline
    watchdog.arm_forever("a later deadline", 0.6)
    assert exits.wait()
    assert watchdog.fired is not None
    assert watchdog.fired.name == "a later deadline"  # the earlier, disarmed one did not fire
    assert exits.codes == [EXIT_STUCK]


def test_expiry_is_decided_on_the_monotonic_clock() -> None:
    """A deadline expires exactly when its allowance has passed, and not once disarmed."""
    now = [1000.0]
    dog = Watchdog(exit=Exits(), clock=lambda: now[0])  # never started: no thread
    with dog.arm("flush", 10.0):
        assert dog.expired(1009.9) is None
        assert dog.expired(1010.0) == Deadline("flush", 10.0, 1010.0)
        with dog.arm("abort_transaction", 2.0):
            assert dog.armed()[0].name == "abort_transaction"  # the earliest first
    assert dog.expired(5000.0) is None
    assert dog.armed() == []


def test_no_deadline_guards_nothing() -> None:
    """The default Arm of one-off tools is a plain context."""
    with no_deadline("flush", 0.0):
        pass


@pytest.mark.skipif(sys.platform != "linux", reason="a glibc mutex stands in for a stuck C call")
def test_sigterm_while_stuck_in_a_c_call_arms_the_shutdown_deadline(exits: Exits) -> None:
    """SIGTERM reaches the watchdog while the main thread cannot run Python signal handlers.

    The main thread blocks in ``pthread_mutex_lock`` on a mutex it already holds, as librdkafka
    blocks on its condition variable: the kernel's signal reaches the interpreter's C handler
    (which writes the wakeup fd), but the Python handler cannot run until the call returns.
    The watchdog must still end the process after the shutdown deadline.
    """
    libc = ctypes.CDLL(None)
    mutex = ctypes.create_string_buffer(64)  # all zeros: PTHREAD_MUTEX_INITIALIZER on glibc
    assert libc.pthread_mutex_lock(mutex) == 0
    handled: list[int] = []
    handled_at_exit: list[int] = []

    def exit_then_release(code: int) -> None:
        handled_at_exit.append(len(handled))
        exits(code)
        libc.pthread_mutex_unlock(mutex)  # what os._exit would end: the stuck call

    def handler(signum: int, _: FrameType | None) -> None:
        handled.append(signum)

    previous = signal.signal(signal.SIGTERM, handler)
    dog = Watchdog(exit=exit_then_release).start()
    safety = threading.Timer(20.0, libc.pthread_mutex_unlock, (mutex,))  # never hang the suite
    try:
        assert dog.watch_signals(0.5)
        sender = threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGTERM))
        began = time.monotonic()
        sender.start()
        safety.start()
        with capture_logs() as logs, dog.arm("send_offsets_to_transaction", 60.0):
            libc.pthread_mutex_lock(mutex)  # stuck in C until the watchdog "exits"
        took = time.monotonic() - began
    finally:
        safety.cancel()
        libc.pthread_mutex_unlock(mutex)
        dog.stop()
        signal.signal(signal.SIGTERM, previous)
    assert exits.codes == [EXIT_STUCK]
    assert dog.fired is not None
    assert dog.fired.name == SHUTDOWN
    assert handled_at_exit == [0]  # the Python handler had not run: the watchdog saw it alone
    assert handled == [signal.SIGTERM]  # and it ran once the call returned
    assert 0.6 <= took < 10.0  # the signal at 0.2 s + the 0.5 s deadline, not the safety timer
    [line] = [e for e in logs if e["log_level"] == "error"]
    assert line["call"] == SHUTDOWN
    assert line["during"] == ["send_offsets_to_transaction"]  # where the shutdown was stuck


def test_a_stop_signal_handled_in_python_arms_the_deadline_once(exits: Exits) -> None:
    """A handler that calls ``shutdown`` and the wakeup fd arm one shutdown deadline, not two."""
    dog = Watchdog(exit=exits).start()
    try:
        dog.shutdown(0.3)
        dog.shutdown(0.3)
        assert [d.name for d in dog.armed()] == [SHUTDOWN]
        assert exits.wait()
    finally:
        dog.stop()
    assert exits.codes == [EXIT_STUCK]
