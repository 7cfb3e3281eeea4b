"""The deliver stage under faults: kill -9, a long outage, a throttling storm, a revoked token."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from confluent_kafka import Consumer
from confluent_kafka import TopicPartition as RdTopicPartition

from stream.config import Settings
from stream.deliver.stage import Deliverer
from stream.sim import FaultConfig, Latency, SimConfig, Simulator
from tests.integration.helpers import (
    enriched_value,
    produce,
    read_all,
    stage_names,
    stage_settings,
    start_stage,
    wait_until,
)

pytestmark = pytest.mark.integration

TOKEN_A = "tok-pixel-a"
TOKEN_B = "tok-pixel-b"
PIXEL_A = "1001"
PIXEL_B = "2002"
TOKENS = {TOKEN_A: frozenset({PIXEL_A}), TOKEN_B: frozenset({PIXEL_B})}


@pytest.fixture
def names(unique: Callable[[str], str]) -> dict[str, str]:
    return stage_names(unique)


@pytest.fixture
def sim() -> Iterator[Simulator]:
    with Simulator(SimConfig(tokens=TOKENS)) as simulator:
        yield simulator


def _settings(
    bootstrap: str, names: dict[str, str], sim: Simulator, **deliverer: object
) -> Settings:
    return stage_settings(
        bootstrap, names, access_tokens={PIXEL_A: TOKEN_A, PIXEL_B: TOKEN_B},
        deliverer={"graph_url": sim.url, "linger_ms": 100, "commit_interval_s": 0.3,
                   "request_timeout_s": 2.0, "retry_base_s": 0.1, "retry_max_s": 1.0,
                   **deliverer},
    )  # fmt: skip


def _publish(bootstrap: str, topic: str, ids: list[str], pixel_of: Callable[[int], str]) -> None:
    now = time.time()
    produce(bootstrap, topic, ((e.encode(), enriched_value(e, pixel_of(i), now))
                               for i, e in enumerate(ids)))  # fmt: skip


def _committed(bootstrap: str, group: str, topic: str, partitions: int) -> dict[int, int]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        parts = consumer.committed([RdTopicPartition(topic, p) for p in range(partitions)], 10)
        return {p.partition: max(p.offset, 0) for p in parts}
    finally:
        consumer.close()


def _offsets_to_ids(bootstrap: str, topic: str, expected: int) -> dict[tuple[int, int], str]:
    return {(r.partition, r.offset): (r.key or b"").decode()
            for r in read_all(bootstrap, topic, expected=expected, idle_s=1.0)}  # fmt: skip


def _uncovered(
    committed: dict[int, int], ids: dict[tuple[int, int], str], sim: Simulator
) -> set[str]:
    """Event ids below a committed offset that the simulator never accepted (must be empty)."""
    accepted = {event_id for _, event_id in sim.stats().event_keys}
    return {e for (p, o), e in ids.items() if o < committed.get(p, 0) and e not in accepted}


def _in_thread(stage: Deliverer) -> threading.Thread:
    thread = threading.Thread(target=stage.run, daemon=True)
    thread.start()
    return thread


def test_kill_9_under_load_loses_nothing_and_commits_only_delivered(
    kafka_bootstrap: str,
    names: dict[str, str],
    make_topics: Callable[..., None],
    sim: Simulator,
    tmp_path: Path,
) -> None:
    """SIGKILL mid-stream, three times: every event arrives, no commit covers an undelivered one."""
    make_topics(names["enriched"], names["dlq"], partitions=3)
    sim.set_faults(FaultConfig(latency=Latency(kind="uniform", min_ms=20, max_ms=120), seed=7))
    ids = [f"k9-{i}" for i in range(6000)]
    _publish(kafka_bootstrap, names["enriched"], ids, lambda i: PIXEL_A if i % 2 else PIXEL_B)
    where = _offsets_to_ids(kafka_bootstrap, names["enriched"], len(ids))
    settings = _settings(kafka_bootstrap, names, sim, max_events=200, max_in_flight_per_lane=2)
    log = tmp_path / "deliverer.log"
    kills = 0
    for run_s in (4.0, 4.5, 5.0):
        proc = start_stage(["deliver"], settings, log)
        time.sleep(run_s)  # the group join takes ~3 s; then it is mid-stream
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(10)
            kills += 1
        committed = _committed(kafka_bootstrap, names["deliverer_group"], names["enriched"], 3)
        assert _uncovered(committed, where, sim) == set()
    final = start_stage(["deliver", "--max-idle", "4"], settings, log)
    assert final.wait(180) == 0, log.read_text()[-3000:]
    assert kills == 3
    stats = sim.stats()
    assert stats.missing(("Purchase", e) for e in ids) == set()
    assert stats.accepted == len(ids)  # each once after dedup; re-sends show as duplicates
    committed = _committed(kafka_bootstrap, names["deliverer_group"], names["enriched"], 3)
    assert sum(committed.values()) == len(ids)


def test_a_30_second_outage_loses_nothing_and_keeps_memory_bounded(
    kafka_bootstrap: str, names: dict[str, str], make_topics: Callable[..., None], sim: Simulator
) -> None:
    """Through 30 s of 503s nothing is committed or lost, and pending events stay bounded."""
    make_topics(names["enriched"], names["dlq"], partitions=3)
    ids = [f"out-{i}" for i in range(8000)]
    _publish(kafka_bootstrap, names["enriched"], ids, lambda i: PIXEL_A if i % 3 else PIXEL_B)
    sim.set_faults(FaultConfig(outage_seconds=30))
    began = time.monotonic()
    stage = Deliverer(_settings(kafka_bootstrap, names, sim, max_pending=1000, resume_pending=500))
    thread = _in_thread(stage)
    try:
        wait_until(lambda: stage.stats.requests >= 5, 30, "failing requests")
        assert sum(_committed(kafka_bootstrap, names["deliverer_group"], names["enriched"], 3)
                   .values()) == 0  # fmt: skip
        wait_until(lambda: sim.stats().accepted == len(ids), 120, "delivery after the outage")
        assert time.monotonic() - began >= 30
    finally:
        stage.stop()
        thread.join(60)
    assert sim.stats().missing(("Purchase", e) for e in ids) == set()
    # paused at 1,000 pending; up to three poll batches (≤1,000 records each: two waiting in
    # the hand-off, one being decoded) may still land before the pause takes effect
    assert stage.stats.max_pending <= 4000
    assert stage.stats.dead_lettered == 0


def test_throttling_storm_slows_down_but_delivers_everything_once(
    kafka_bootstrap: str, names: dict[str, str], make_topics: Callable[..., None], sim: Simulator
) -> None:
    """Throttle answers (codes 4, 17, 613, 80004 with HTTP 429) delay delivery, lose nothing."""
    make_topics(names["enriched"], names["dlq"], partitions=3)
    rates = {"throttle_4": 0.2, "throttle_17": 0.1, "throttle_613": 0.1, "throttle_80004": 0.2}
    # usage below 100 % and no regain time: Retry-After (1 s) paces the storm, not the
    # minute a saturated usage header rightly asks for
    sim.set_faults(FaultConfig(seed=3, retry_after_seconds=1, regain_access_minutes=0,
                               throttle_usage_percent=95, rates=rates))  # fmt: skip
    ids = [f"thr-{i}" for i in range(3000)]
    _publish(kafka_bootstrap, names["enriched"], ids, lambda i: PIXEL_A if i % 2 else PIXEL_B)
    stats = Deliverer(_settings(kafka_bootstrap, names, sim, max_events=250)).run(max_idle_s=4)
    received = sim.stats()
    assert sum(received.faults.values()) >= 3  # the storm happened
    assert received.missing(("Purchase", e) for e in ids) == set()
    assert received.accepted == len(ids)
    assert stats.retries >= 3
    assert stats.dead_lettered == 0


def test_revoked_token_halts_its_pixel_only_until_fixed(
    kafka_bootstrap: str, names: dict[str, str], make_topics: Callable[..., None], sim: Simulator
) -> None:
    """A revoked token halts its lane (no commit past it, not ready); the other pixel goes on."""
    make_topics(names["enriched"], names["dlq"], partitions=1)
    sim.set_tokens({TOKEN_B: frozenset({PIXEL_B})})  # pixel A's token is revoked
    ids = [f"tok-{i}" for i in range(1000)]
    pixel_of = lambda i: PIXEL_A if i % 4 == 0 else PIXEL_B  # noqa: E731
    _publish(kafka_bootstrap, names["enriched"], ids, pixel_of)
    b_ids = [e for i, e in enumerate(ids) if pixel_of(i) == PIXEL_B]
    stage = Deliverer(_settings(kafka_bootstrap, names, sim))
    thread = _in_thread(stage)
    try:
        wait_until(lambda: sim.stats(PIXEL_B).accepted == len(b_ids), 60, "pixel B's events")
        wait_until(lambda: bool(stage.halted_lanes), 30, "pixel A's lane to halt")
        wait_until(lambda: not stage.ready(), 10, "readiness to turn red")
        assert sim.stats(PIXEL_A).accepted == 0
        # event 0 is pixel A's: nothing may be committed past it while A is halted
        assert _committed(kafka_bootstrap, names["deliverer_group"], names["enriched"], 1)[0] == 0
        sim.set_tokens(TOKENS)  # the token is fixed
        wait_until(lambda: sim.stats().accepted == len(ids), 90, "pixel A after the fix")
        wait_until(stage.ready, 10, "readiness to turn green")
        group, topic = names["deliverer_group"], names["enriched"]
        wait_until(
            lambda: _committed(kafka_bootstrap, group, topic, 1)[0] == len(ids), 30, "commit"
        )
    finally:
        stage.stop()
        thread.join(60)
    assert stage.stats.dead_lettered == 0
