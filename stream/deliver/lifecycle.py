"""A stage's life around its asyncio main: run, stop, signals, liveness, crashes.

The stage's own work runs in its coroutine; this part owns what surrounds it: the watchdog
that ends a process stuck in C (:mod:`stream.watchdog`), SIGTERM's bounded drain, the liveness
that ``/healthz`` reads (from the health server's thread), and turning an error in a task or a
loop callback into a stop and a re-raise instead of a partition that stalls in silence.
"""

from __future__ import annotations

import asyncio
import signal
import threading
import time
from collections.abc import Coroutine
from types import FrameType

from stream.logs import get_logger
from stream.watchdog import Watchdog

log = get_logger("capi_stream.deliverer")


class Lifecycle:
    """Run, stop and watch one stage; the stage subclasses it and supplies its coroutine."""

    def __init__(
        self, *, stall_timeout_s: float, shutdown_s: float, watchdog: Watchdog | None
    ) -> None:
        self._stopping = threading.Event()
        self._crash: BaseException | None = None
        self._watchdog = watchdog or Watchdog()
        self._watch_signals = False
        self._stall_s = stall_timeout_s
        self.shutdown_s = shutdown_s
        # liveness (monotonic): when the loop last ticked and the poll thread last polled
        self._ticked_at = self._polled_at = time.monotonic()

    def stop(self) -> None:
        """Deliver what is batched (bounded by the revoke timeout), commit, and leave."""
        self._stopping.set()

    def install_signal_handlers(self) -> None:
        """SIGTERM and SIGINT drain and stop, and the process ends within :attr:`shutdown_s`.

        Should the last commit or the consumer's close hang (a broker gone), the watchdog ends
        the process. Nothing is lost either way: the next owner re-sends what is uncommitted.
        """

        def handler(signum: int, _: FrameType | None) -> None:
            log.info("stopping", signal=signum)
            self.stop()
            self._watchdog.shutdown(self.shutdown_s)

        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, handler)
        self._watch_signals = True

    def alive(self) -> bool:
        """Liveness: False when the loop or the poll thread has not ticked for ``stall_timeout_s``.

        A loop or a poll thread stuck in a call that never returns (or a hog) turns /healthz
        red, so a container health check restarts the process; nothing else can notice it.
        """
        now = time.monotonic()
        return now - self._ticked_at < self._stall_s and now - self._polled() < self._stall_s

    def _polled(self) -> float:
        """When the poll thread last polled (monotonic); the stage's bridge knows better."""
        return self._polled_at

    def _run(self, main: Coroutine[object, object, None]) -> None:
        """Run ``main`` under the watchdog; re-raise the error that stopped the stage."""
        watchdog = self._watchdog.start()
        if self._watch_signals:
            watchdog.watch_signals(self.shutdown_s)
        try:
            asyncio.run(main)
        finally:
            watchdog.stop()
        if self._crash is not None:
            # committed offsets never pass unsettled events, so stopping here loses nothing
            raise self._crash

    def _crashed(self, exc: BaseException) -> None:
        """A bug or a fatal Kafka error in a task or the poll thread: stop, then re-raise."""
        if self._crash is None:
            self._crash = exc
            log.error("stopping after an error", error=f"{type(exc).__name__}: {exc}")
        self._stopping.set()

    def _loop_error(self, _: asyncio.AbstractEventLoop, context: dict[str, object]) -> None:
        # an error in a loop callback (ingest producing a dead letter, say) would be logged and
        # forgotten, its record tracked but never settled: stop instead; nothing is lost
        exc = context.get("exception")
        if not isinstance(exc, BaseException):
            exc = RuntimeError(str(context.get("message", "an error in the event loop")))
        self._crashed(exc)
