"""Static membership's trade-off, measured: a worker stopped for good holds its partitions for
``session.timeout.ms``; the others take them over after that and lose nothing.

A static member (``group.instance.id``) does not leave the group when it closes (KIP-345): that
is what lets a restarted worker take its partitions back without a rebalance. The price is paid
when a worker goes away for good (scaling down): its partitions wait out the session timeout.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from stream.sim import FaultConfig, Latency, SimConfig, Simulator
from tests.integration.helpers import (
    enriched_value,
    produce,
    stage_names,
    stage_settings,
    start_stage,
    wait_until,
)

pytestmark = pytest.mark.integration

TOKEN = "tok-static"
PIXEL = "711"
PARTITIONS = 4
SESSION_TIMEOUT_MS = 8000


@pytest.fixture
def names(unique: Callable[[str], str], make_topics: Callable[..., None]) -> dict[str, str]:
    n = stage_names(unique)
    make_topics(n["enriched"], n["dlq"], partitions=PARTITIONS)
    return n


@pytest.fixture
def sim() -> Iterator[Simulator]:
    slow = FaultConfig(latency=Latency(kind="fixed", ms=100))
    with Simulator(SimConfig(tokens={TOKEN: frozenset({"*"})}, faults=slow)) as simulator:
        yield simulator


def _members(admin: AdminClient, group: str) -> dict[str, int]:
    """Partitions per member, by group.instance.id (empty while the coordinator loads)."""
    try:
        description = admin.describe_consumer_groups([group])[group].result(10)
    except KafkaException:
        return {}
    return {
        str(m.group_instance_id): len(m.assignment.topic_partitions) for m in description.members
    }


def test_a_stopped_static_worker_holds_its_partitions_until_the_session_times_out(
    kafka_bootstrap: str, names: dict[str, str], sim: Simulator, tmp_path: Path
) -> None:
    """SIGTERM of worker 1 of 2: no rebalance at its close; worker 0 gets all partitions once
    session.timeout.ms (8 s here) has passed, and every event is delivered."""
    group = names["deliverer_group"]
    settings = stage_settings(
        kafka_bootstrap, names, access_token=TOKEN,
        deliverer={"graph_url": sim.url, "linger_ms": 100, "max_events": 100,
                   "revoke_timeout_s": 2.0, "group_instance_id": group},
    )  # fmt: skip
    settings = settings.model_copy(
        update={"consumer": {"session.timeout.ms": SESSION_TIMEOUT_MS,
                             "heartbeat.interval.ms": 1000}}
    )  # fmt: skip
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    procs = [
        start_stage(["deliver", "--worker", str(i)], settings, tmp_path / f"d{i}.log")
        for i in range(2)
    ]
    try:
        slots = {f"{group}-0": 2, f"{group}-1": 2}
        wait_until(
            lambda: _members(admin, group) == slots, 60, "two static members, 2 partitions each"
        )
        # from the signal, not the exit: the member heartbeats until its consumer closes, and the
        # process's teardown after that (slow on a loaded machine) is no part of the session
        stopped = time.monotonic()
        procs[1].send_signal(signal.SIGTERM)
        assert procs[1].wait(30) == 0
        # the closed static member stays in the group with its partitions: no rebalance yet
        assert _members(admin, group) == slots
        moved = wait_until(lambda: _members(admin, group) == {f"{group}-0": PARTITIONS}, 60,
                      "worker 0 to take every partition")  # fmt: skip
        waited = moved - stopped
        print(f"partitions moved {waited:.1f} s after the stop")  # the measured trade-off
        assert SESSION_TIMEOUT_MS / 1000 - 2 <= waited <= SESSION_TIMEOUT_MS / 1000 + 10
        ids = [f"st-{i}" for i in range(800)]
        now = time.time()
        produce(kafka_bootstrap, names["enriched"],
                ((e.encode(), enriched_value(e, PIXEL, now)) for e in ids))  # fmt: skip
        wait_until(lambda: sim.stats().accepted == len(ids), 60, "every event by worker 0")
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        codes = [proc.wait(30) for proc in procs]
    assert codes == [0, 0]
