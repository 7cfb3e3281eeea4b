"""The crash bound of the deliver stage: what a ``kill -9`` re-sends, measured (issue 10, part 4).

README's promise: after ``kill -9`` at any moment, the events re-sent are at most the events in
flight at the kill plus the events accepted since the last commit; and a restarted worker with
the same slot (static membership) gets its partitions back without waiting out
``session.timeout.ms``.
"""

from __future__ import annotations

import os
import random
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from stream.sim import FaultConfig, JournalEntry, Latency, SimConfig, Simulator
from tests.integration.helpers import (
    GroupOffsets,
    enriched_value,
    produce,
    read_all,
    stage_names,
    stage_settings,
    start_stage,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TOKEN = "tok-crash-bound"
PIXELS = ("611", "622")
PARTITIONS = 3
KILLS = 4
#: Far above the time a restart may take: a restart that waited out the dead member's
#: session would show as a first delivery 45 s after the start.
SESSION_TIMEOUT_MS = 45_000


@pytest.fixture
def names(unique: Callable[[str], str], make_topics: Callable[..., None]) -> dict[str, str]:
    n = stage_names(unique)
    make_topics(n["enriched"], n["dlq"], partitions=PARTITIONS)
    return n


@pytest.fixture
def sim() -> Iterator[Simulator]:
    # every request takes 150-350 ms: a steady load with requests in flight at any moment
    slow = FaultConfig(latency=Latency(kind="uniform", min_ms=150, max_ms=350), seed=3)
    config = SimConfig(tokens={TOKEN: frozenset({"*"})}, journal=True, faults=slow)
    with Simulator(config) as simulator:
        yield simulator


@dataclass(frozen=True, slots=True)
class Kill:
    """One run of the deliverer process, ended by SIGKILL."""

    started: float  # wall clock (the simulator's clock) just before the process started
    first_delivery: float  # arrival of the run's first request at the simulator
    killed: float  # just before SIGKILL
    committed: dict[int, int]  # the group's next_offset per partition after the kill


def _committed(offsets: GroupOffsets) -> dict[int, int]:
    return offsets() or {}


def _settled_commits(offsets: GroupOffsets) -> dict[int, int]:
    """The committed offsets once two reads 300 ms apart agree (a last commit may be landing)."""
    deadline = time.monotonic() + 10
    last = _committed(offsets)
    while time.monotonic() < deadline:
        time.sleep(0.3)
        now = _committed(offsets)
        if now == last:
            return now
        last = now
    return last


def _wait_for(condition: Callable[[], float | None], timeout: float, what: str) -> float:
    deadline = time.monotonic() + timeout
    while (value := condition()) is None:
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)
    return value


def _first_arrival_after(sim: Simulator, since: float) -> float | None:
    arrivals = [e.arrived_at for e in sim.journal() if e.arrived_at >= since]
    return min(arrivals) if arrivals else None


def _ids(entries: list[JournalEntry]) -> set[str]:
    return {eid for entry in entries for _, eid in entry.keys}


def test_kill_9_re_sends_at_most_in_flight_plus_accepted_since_last_commit(
    kafka_bootstrap: str,
    names: dict[str, str],
    sim: Simulator,
    tmp_path: Path,
) -> None:
    """kill -9 at random moments under load: re-sent <= in flight + accepted since last commit.

    Measured per kill k from the simulator's journal (every request with the time it arrived,
    the time it was answered, and its event ids) and the group's committed offsets read after
    the process died. With S(k+1) the start of the next run and T(k) the kill:

    - in flight at the kill: events of requests that reached the simulator before S(k+1) and
      were answered at or after T(k). A request the dead process wrote before dying but the
      simulator read later counts here too: it is in flight from the client's side.
    - accepted since the last commit: events in a request answered before T(k) whose offset
      is at or past the committed next_offset of their partition at the kill (accepted, but
      not covered by a commit). That includes an answer the client never got to read.
    - re-sent: events that arrived in run k+1 (between S(k+1) and the next kill, or the end)
      and had arrived before S(k+1) already.

    Every copy that arrived before S(k+1) falls in one of the first two sets or lies below a
    committed offset, which a restart never reads again. The test also measures, per restart,
    the time from the process start to its first request at the simulator: with static
    membership the new process takes its slot's partitions back at once, far below the
    45 s ``session.timeout.ms`` its dead predecessor would otherwise hold them for.
    """
    total = 12_000
    ids = [f"cb-{i}" for i in range(total)]
    now = time.time()
    records = [(e.encode(), enriched_value(e, PIXELS[i % 2], now)) for i, e in enumerate(ids)]
    produce(kafka_bootstrap, names["enriched"], records)
    enriched = read_all(kafka_bootstrap, names["enriched"], expected=total, idle_s=0.5)
    offset_of = {(r.key or b"").decode(): (r.partition, r.offset) for r in enriched}
    settings = stage_settings(
        kafka_bootstrap, names, access_token=TOKEN,
        deliverer={"graph_url": sim.url, "linger_ms": 100, "max_events": 100,
                   "max_in_flight_per_lane": 1, "request_timeout_s": 5.0,
                   "retry_base_s": 0.1, "retry_max_s": 1.0},
    )  # fmt: skip
    settings = settings.model_copy(
        update={"consumer": {"session.timeout.ms": SESSION_TIMEOUT_MS,
                             "heartbeat.interval.ms": 3000}}
    )  # fmt: skip
    group = names["deliverer_group"]
    offsets = GroupOffsets(kafka_bootstrap, group, names["enriched"], PARTITIONS)
    seed = random.randrange(1 << 30)  # the kill moments; printed to replay a run
    rnd = random.Random(seed)
    log = tmp_path / "deliverer.log"
    kills: list[Kill] = []
    for _ in range(KILLS):
        started = time.time()
        proc = start_stage(["deliver"], settings, log)
        try:
            first = _wait_for(lambda s=started: _first_arrival_after(sim, s), 30, "a delivery")
            time.sleep(rnd.uniform(0.2, 2.5))  # the random moment of the kill
            assert proc.poll() is None, log.read_text()[-3000:]
            killed = time.time()
            os.kill(proc.pid, signal.SIGKILL)
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait(10)
        kills.append(Kill(started, first, killed, _settled_commits(offsets)))
    restarted = time.time()
    final = start_stage(["deliver", "--max-idle", "4"], settings, log)
    first_final = _wait_for(lambda: _first_arrival_after(sim, restarted), 30, "a delivery")
    assert final.wait(180) == 0, log.read_text()[-3000:]
    assert sim.stats().missing(("Purchase", e) for e in ids) == set()
    final_commits = _committed(offsets)
    offsets.close()
    assert sum(final_commits.values()) == total

    journal = sim.journal()
    starts = [k.started for k in kills[1:]] + [restarted]
    ends = [k.killed for k in kills[1:]] + [float("inf")]
    report = [f"seed {seed}"]
    for kill, next_start, next_end in zip(kills, starts, ends, strict=True):
        before = [e for e in journal if e.arrived_at < next_start]
        in_flight = _ids([e for e in before if e.answered_at >= kill.killed])
        accepted = {
            eid
            for eid in _ids([e for e in before if e.answered_at < kill.killed and not e.short])
            if offset_of[eid][1] >= kill.committed.get(offset_of[eid][0], 0)
        }
        after = _ids([e for e in journal if next_start <= e.arrived_at < next_end])
        resent = after & _ids(before)
        report.append(
            f"re-sent {len(resent)} <= in flight {len(in_flight)} + accepted since the last "
            f"commit {len(accepted)}; restart to first delivery "
            f"{kill.first_delivery - kill.started:.1f} s"
        )
        assert resent <= in_flight | accepted, (report, sorted(resent - in_flight - accepted)[:5])
    report.append(f"final restart to first delivery {first_final - restarted:.1f} s")
    print("\n".join(report))  # the measured figures (pytest -s)
    # a static member's restart takes its partitions back at once: well under the session
    # timeout a new member would wait for (the start itself, imports included, is in the figure)
    for kill in kills:
        assert kill.first_delivery - kill.started < SESSION_TIMEOUT_MS / 1000 / 2, report
    assert first_final - restarted < SESSION_TIMEOUT_MS / 1000 / 2, report
