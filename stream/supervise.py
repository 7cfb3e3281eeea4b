"""``--workers N``: N processes of one stage in the same consumer group, supervised.

Kafka's consumer group does the sharing (partitions move to the live members), so the
supervisor only keeps N processes running:

- worker ``i`` runs ``argv_for(i)`` (``python -m stream.cli normalize --worker i …``); the index
  is the slot's identity, so a restarted normalizer reuses its transactional id and fences the
  zombie it replaces;
- a worker that exits abnormally (non-zero, or killed by a signal) is started again after a
  backoff that doubles per consecutive failure (``backoff_base_s`` … ``backoff_max_s``) and
  resets once a run lasted ``stable_s``; a worker that exits 0 is done and stays down;
- a worker exiting with a code of ``fatal_codes`` (2: invalid configuration) would fail the same
  way every time, so the whole group stops instead;
- SIGTERM or SIGINT (or :meth:`Supervisor.stop`) is forwarded to every worker, which drains and
  commits; after ``drain_timeout_s`` the stragglers get SIGKILL.

Exit code: 0 when every worker ended cleanly, the fatal code when one stopped the group, else 1.
"Cleanly" is exit 0, or, once stopping, ending of the very signal forwarded (``-SIGTERM``, or
``128 + SIGTERM`` from a shell): a worker gets that only before it installs its handler, i.e.
before it has consumed anything.

Workers stay in the supervisor's process group, so a terminal's Ctrl-C and a ``kill`` of the
group reach them directly as well; a second stop signal is harmless (stopping is idempotent).
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from types import FrameType
from typing import Final

from stream.logs import get_logger

log = get_logger("capi_stream.supervise")

EXIT_OK: Final = 0
EXIT_UNCLEAN: Final = 1
#: A slot's exit code when its process could not even be started (the shell's "not found").
EXIT_NOT_STARTED: Final = 127
#: How often the supervisor looks at its workers; also the latency of forwarding a signal.
POLL_S: Final = 0.1

ArgvFor = Callable[[int], Sequence[str]]
_Handler = Callable[[int, FrameType | None], object] | int | signal.Handlers | None


def cli_argv(*args: str) -> list[str]:
    """The command that runs ``capi-stream ARGS`` with this interpreter (for ``argv_for``)."""
    return [sys.executable, "-m", "stream.cli", *args]


@dataclass
class _Slot:
    """One worker index and its current process."""

    index: int
    proc: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    failures: int = 0  # consecutive abnormal exits
    restart_at: float | None = None
    last_code: int | None = None
    starts: int = 0

    @property
    def running(self) -> bool:
        return self.proc is not None


class Supervisor:
    """Runs and supervises ``n`` workers; :meth:`run` blocks until they are all done.

    ``env`` is the workers' whole environment (None: this process's). Signal handlers are
    installed only when ``handle_signals`` and running on the main thread; :meth:`stop` works
    from any thread.
    """

    def __init__(
        self,
        n: int,
        argv_for: ArgvFor,
        env: Mapping[str, str] | None = None,
        *,
        backoff_base_s: float = 1.0,
        backoff_max_s: float = 30.0,
        stable_s: float = 60.0,
        drain_timeout_s: float = 60.0,
        fatal_codes: Collection[int] = (2,),
        handle_signals: bool = True,
    ) -> None:
        if n < 1:
            raise ValueError("n must be at least 1")
        self.argv_for = argv_for
        self.env = dict(env) if env is not None else None
        self.backoff_base_s = backoff_base_s
        self.backoff_max_s = backoff_max_s
        self.stable_s = stable_s
        self.drain_timeout_s = drain_timeout_s
        self.fatal_codes = frozenset(fatal_codes)
        self.handle_signals = handle_signals
        self._slots = [_Slot(i) for i in range(n)]
        self._stop = threading.Event()
        self._signals: list[int] = []  # appended by the handler, forwarded by the loop
        self._forwarded = 0
        self._fatal: int | None = None

    # -- observing (any thread) --------------------------------------------------------------

    @property
    def pids(self) -> dict[int, int]:
        """Worker index → pid of its running process."""
        # read each slot's process once: the supervising thread may clear it meanwhile
        return {s.index: proc.pid for s in self._slots if (proc := s.proc) is not None}

    @property
    def starts(self) -> dict[int, int]:
        """Worker index → how many times it was started (1 + its restarts)."""
        return {s.index: s.starts for s in self._slots}

    def stop(self, signum: int = signal.SIGTERM) -> None:
        """Forward ``signum`` to every worker and drain (what SIGTERM does)."""
        self._signals.append(signum)
        self._stop.set()

    # -- running -----------------------------------------------------------------------------

    def run(self) -> int:
        """Start the workers, supervise them until all are done, return the exit code."""
        previous = self._install_handlers()
        try:
            for slot in self._slots:
                self._start(slot)
            self._supervise()
            return self._drain()
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)

    def _supervise(self) -> None:
        """Keep the workers running until a stop is asked or every worker is done."""
        while not self._stop.is_set():
            now = time.monotonic()
            for slot in self._slots:
                code = _reap(slot)
                if code is not None:
                    self._exited(slot, code, now)
                due = slot.restart_at is not None and now >= slot.restart_at
                if due and not self._stop.is_set():  # a fatal exit may have just stopped all
                    self._start(slot)
            if all(not s.running and s.restart_at is None for s in self._slots):
                return  # every worker exited 0
            self._stop.wait(POLL_S)

    def _exited(self, slot: _Slot, code: int, now: float) -> None:
        ran_s = now - slot.started_at
        if code == 0:
            log.info("worker done", worker=slot.index, ran_s=round(ran_s, 1))
            return
        if code in self.fatal_codes:
            log.error("worker failed for good; stopping all", worker=slot.index, code=code)
            self._fatal = code
            self.stop()
            return
        if ran_s >= self.stable_s:
            slot.failures = 0  # it ran long enough: this is a new failure, not a crash loop
        delay = self._backoff(slot, now)
        log.warning(
            "worker exited abnormally; restarting", worker=slot.index, code=code,
            ran_s=round(ran_s, 1), restart_in_s=round(delay, 2), failures=slot.failures,
        )  # fmt: skip

    def _backoff(self, slot: _Slot, now: float) -> float:
        """Schedule the slot's restart: base, 2·base, 4·base … up to the maximum."""
        slot.failures += 1
        delay = min(self.backoff_base_s * 2.0 ** (slot.failures - 1), self.backoff_max_s)
        slot.restart_at = now + delay
        return delay

    def _start(self, slot: _Slot) -> None:
        slot.restart_at = None
        slot.starts += 1
        slot.started_at = time.monotonic()
        argv = list(self.argv_for(slot.index))
        try:
            proc = subprocess.Popen(argv, env=self.env)  # noqa: S603 - our own argv, no shell
        except OSError as exc:
            # like an abnormal exit: the same backoff applies, and the log says why
            log.error("worker could not start", worker=slot.index, error=str(exc))
            slot.last_code = EXIT_NOT_STARTED
            self._backoff(slot, time.monotonic())
            return
        slot.proc = proc
        log.info("worker started", worker=slot.index, pid=proc.pid, start=slot.starts)

    def _drain(self) -> int:
        """Forward the stop signal(s), wait for every worker (bounded), then SIGKILL the rest."""
        for slot in self._slots:
            slot.restart_at = None  # nothing starts again once stopping
        deadline = time.monotonic() + self.drain_timeout_s
        while True:
            self._forward()
            for slot in self._slots:
                code = _reap(slot)
                if code is not None:
                    log.info("worker stopped", worker=slot.index, code=code)
            if not any(s.running for s in self._slots):
                break
            if time.monotonic() >= deadline:
                for slot in self._slots:
                    if (proc := slot.proc) is not None:
                        log.error("worker did not drain in time; killing it", worker=slot.index)
                        proc.kill()
                        proc.wait()
                        slot.proc, slot.last_code = None, proc.returncode
                break
            self._stop.wait(POLL_S)
        if self._fatal is not None:
            return self._fatal
        # a slot's last run decides: a crash that was waiting for its restart is not clean
        clean = all(s.last_code is None or self._clean(s.last_code) for s in self._slots)
        return EXIT_OK if clean else EXIT_UNCLEAN

    def _forward(self) -> None:
        """Send the signals received since the last call to every running worker."""
        while self._forwarded < len(self._signals):
            signum = self._signals[self._forwarded]
            self._forwarded += 1
            for slot in self._slots:
                if slot.proc is not None:
                    slot.proc.send_signal(signum)  # a no-op for a process already reaped

    def _clean(self, code: int) -> bool:
        sent = set(self._signals)
        return code == 0 or -code in sent or code - 128 in sent

    def _install_handlers(self) -> dict[int, _Handler]:
        if not self.handle_signals or threading.current_thread() is not threading.main_thread():
            return {}

        def handler(signum: int, _: FrameType | None) -> None:
            # only record it: the loop forwards within POLL_S, outside the signal context
            self.stop(signum)

        previous: dict[int, _Handler] = {}
        for signum in (signal.SIGTERM, signal.SIGINT):
            previous[signum] = signal.getsignal(signum)
            signal.signal(signum, handler)
        return previous


def _reap(slot: _Slot) -> int | None:
    """The exit code of the slot's process if it has ended (then the slot has no process)."""
    proc = slot.proc
    if proc is None or proc.poll() is None:
        return None
    slot.proc, slot.last_code = None, proc.returncode
    return proc.returncode


def run_workers(
    n: int,
    argv_for: ArgvFor,
    env: Mapping[str, str] | None = None,
    *,
    backoff_base_s: float = 1.0,
    backoff_max_s: float = 30.0,
    stable_s: float = 60.0,
    drain_timeout_s: float = 60.0,
    fatal_codes: Collection[int] = (2,),
    handle_signals: bool = True,
) -> int:
    """Run ``n`` supervised workers until they finish or a signal drains them; the exit code.

    The keyword arguments are :class:`Supervisor`'s (see the module docstring).
    """
    return Supervisor(
        n, argv_for, env, backoff_base_s=backoff_base_s, backoff_max_s=backoff_max_s,
        stable_s=stable_s, drain_timeout_s=drain_timeout_s, fatal_codes=fatal_codes,
        handle_signals=handle_signals,
    ).run()  # fmt: skip
