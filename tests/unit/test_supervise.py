"""The worker supervisor with real child processes: restarts, backoff, signal forwarding, drain."""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from stream.supervise import Supervisor, run_workers

ROOT = Path(__file__).resolve().parents[2]

# One worker script, its behaviour picked by the mode argument. Each start appends a line to
# starts-<i> ("pid time"); a stop signal writes drained-<i>; ready-<i> appears once the worker's
# signal handling is in place, so a test signals only workers that can answer.
WORKER = """
import os, signal, sys, time
from pathlib import Path

index, out, mode = int(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
starts = out / f"starts-{index}"
with starts.open("a") as f:
    f.write(f"{os.getpid()} {time.time()}\\n")
n = len(starts.read_text().splitlines())

if mode == "exit0":
    sys.exit(0)
if mode == "crash-once":
    sys.exit(1 if n == 1 else 0)
if mode == "crash-4":
    sys.exit(3 if n <= 4 else 0)
if mode == "fatal-0" and index == 0:
    sys.exit(2)

def drained(signum, frame):
    (out / f"drained-{index}").write_text(str(signum))
    sys.exit(0)

if mode in ("serve", "fatal-0"):
    signal.signal(signal.SIGTERM, drained)
    signal.signal(signal.SIGINT, drained)
elif mode == "ignore":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
(out / f"ready-{index}-{os.getpid()}").touch()
while True:
    time.sleep(0.05)
"""


@pytest.fixture
def out(tmp_path: Path) -> Path:
    (tmp_path / "worker.py").write_text(WORKER)
    return tmp_path


def _argv(out: Path, mode: str) -> Callable[[int], list[str]]:
    return lambda i: [sys.executable, str(out / "worker.py"), str(i), str(out), mode]


def _starts(out: Path, index: int) -> list[tuple[int, float]]:
    path = out / f"starts-{index}"
    if not path.exists():
        return []
    rows = [line.split() for line in path.read_text().splitlines()]
    return [(int(pid), float(at)) for pid, at in rows]


def _ready(out: Path, index: int, pid: int) -> bool:
    return (out / f"ready-{index}-{pid}").exists()


def _wait(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


@pytest.fixture
def background() -> Iterator[Callable[[Supervisor], dict[str, int]]]:
    """Runs a supervisor on a thread; stops it at the end if the test did not."""
    running: list[tuple[Supervisor, threading.Thread]] = []

    def start(sup: Supervisor) -> dict[str, int]:
        result: dict[str, int] = {}
        thread = threading.Thread(target=lambda: result.update(code=sup.run()), daemon=True)
        thread.start()
        running.append((sup, thread))
        return result

    yield start
    for sup, thread in running:
        sup.stop()
        thread.join(30)


def _all_ready(sup: Supervisor, out: Path, n: int) -> bool:
    pids = sup.pids
    return len(pids) == n and all(_ready(out, i, pid) for i, pid in pids.items())


def test_workers_that_exit_zero_are_not_restarted(out: Path) -> None:
    """Three workers that finish with 0 run once each, and the supervisor returns 0."""
    code = run_workers(3, _argv(out, "exit0"), handle_signals=False)
    assert code == 0
    assert [len(_starts(out, i)) for i in range(3)] == [1, 1, 1]


def test_a_worker_that_exits_abnormally_is_restarted(out: Path) -> None:
    """A worker exiting 1 is started again in its slot; once it exits 0 it stays down."""
    code = run_workers(2, _argv(out, "crash-once"), backoff_base_s=0.05, handle_signals=False)
    assert code == 0
    assert [len(_starts(out, i)) for i in range(2)] == [2, 2]


def test_restarts_back_off_exponentially_up_to_the_maximum(out: Path) -> None:
    """Consecutive crashes wait base, 2·base, then the cap between starts."""
    sup = Supervisor(
        1, _argv(out, "crash-4"), backoff_base_s=0.5, backoff_max_s=0.6, handle_signals=False
    )
    assert sup.run() == 0
    times = [at for _, at in _starts(out, 0)]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert len(gaps) == 4
    for gap, delay in zip(gaps, (0.5, 0.6, 0.6, 0.6), strict=True):
        assert gap >= delay
    # uncapped, the fourth wait alone would be 4.0 s; a gap also holds the worker's start
    assert gaps[-1] < 4.0


def test_a_killed_worker_is_restarted_and_the_others_are_untouched(
    out: Path, background: Callable[[Supervisor], dict[str, int]]
) -> None:
    """kill -9 of one worker starts a new process in its slot; the other keeps its process."""
    sup = Supervisor(2, _argv(out, "serve"), backoff_base_s=0.05, handle_signals=False)
    result = background(sup)
    _wait(lambda: _all_ready(sup, out, 2), 20, "two ready workers")
    first = sup.pids
    os.kill(first[0], signal.SIGKILL)
    _wait(lambda: sup.starts[0] == 2 and _all_ready(sup, out, 2), 20, "the restart")
    assert sup.pids[0] != first[0]
    assert sup.pids[1] == first[1]
    sup.stop()
    _wait(lambda: "code" in result, 20, "the drain")
    assert result["code"] == 0
    assert sup.starts == {0: 2, 1: 1}


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_stop_signal_is_forwarded_and_every_worker_drains(out: Path, signum: int) -> None:
    """SIGTERM or SIGINT to the supervisor reaches every worker; all drain and it exits 0."""
    script = (
        "import sys; from stream.supervise import run_workers; "
        f"sys.exit(run_workers(3, lambda i: [sys.executable, {str(out / 'worker.py')!r}, "
        f"str(i), {str(out)!r}, 'serve'], drain_timeout_s=20))"
    )
    with (out / "supervisor.log").open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-c", script], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT
        )
    try:
        _wait(
            lambda: all(s and _ready(out, i, s[-1][0]) for i, s in
                        ((i, _starts(out, i)) for i in range(3))),
            20, "three ready workers",
        )  # fmt: skip
        proc.send_signal(signum)
        assert proc.wait(30) == 0, (out / "supervisor.log").read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert [(out / f"drained-{i}").read_text() for i in range(3)] == [str(int(signum))] * 3
    assert [len(_starts(out, i)) for i in range(3)] == [1, 1, 1]  # none restarted


def test_a_worker_that_does_not_drain_is_killed_after_the_timeout(
    out: Path, background: Callable[[Supervisor], dict[str, int]]
) -> None:
    """A worker ignoring SIGTERM is SIGKILLed after drain_timeout_s, and the exit code is 1."""
    sup = Supervisor(1, _argv(out, "ignore"), drain_timeout_s=0.5, handle_signals=False)
    result = background(sup)
    _wait(lambda: _all_ready(sup, out, 1), 20, "a ready worker")
    pid = sup.pids[0]
    started = time.monotonic()
    sup.stop()
    _wait(lambda: "code" in result, 20, "the drain")
    assert 0.5 <= time.monotonic() - started < 10
    assert result["code"] == 1
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # reaped: no such process


def test_a_fatal_exit_code_stops_the_whole_group(out: Path) -> None:
    """A worker exiting 2 (invalid configuration) is not restarted: all stop, the code is 2."""
    code = run_workers(3, _argv(out, "fatal-0"), backoff_base_s=0.05, handle_signals=False)
    assert code == 2
    assert [len(_starts(out, i)) for i in range(3)] == [1, 1, 1]
    for i in range(3):
        for pid, _ in _starts(out, i):
            with pytest.raises(ProcessLookupError):
                os.kill(pid, 0)  # every worker ended and was reaped


def test_a_worker_ended_by_the_forwarded_signal_counts_as_clean(
    out: Path, background: Callable[[Supervisor], dict[str, int]]
) -> None:
    """A worker without a SIGTERM handler dies of the forwarded signal; the supervisor says 0."""
    sup = Supervisor(2, _argv(out, "default"), handle_signals=False)
    result = background(sup)
    _wait(lambda: _all_ready(sup, out, 2), 20, "two ready workers")
    sup.stop()
    _wait(lambda: "code" in result, 20, "the drain")
    assert result["code"] == 0


def test_a_worker_that_cannot_start_is_retried_and_reported(
    out: Path, background: Callable[[Supervisor], dict[str, int]]
) -> None:
    """A missing executable is retried with backoff, and the group's exit code is not 0."""
    missing = str(out / "no-such-program")
    sup = Supervisor(1, lambda _: [missing], backoff_base_s=0.05, handle_signals=False)
    result = background(sup)
    _wait(lambda: sup.starts[0] >= 3, 20, "retries")
    sup.stop()
    _wait(lambda: "code" in result, 20, "the stop")
    assert result["code"] == 1
