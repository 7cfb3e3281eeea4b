"""Several deliver processes in one consumer group: a killed one loses nothing, the rest go on.

Real processes (``python -m stream.cli deliver``), a real broker, the simulator over HTTP. The
simulator answers every request after 100 ms and each worker keeps one request in flight, so a
run lasts seconds and a kill lands mid-stream.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient

from stream.config import Settings
from stream.sim import FaultConfig, Latency, SimConfig, Simulator
from stream.supervise import Supervisor, cli_argv
from tests.integration.helpers import (
    committed_total,
    enriched_value,
    produce,
    stage_env,
    stage_names,
    stage_settings,
    start_stage,
    wait_until,
)

pytestmark = pytest.mark.integration

TOKEN = "tok-scaling-test"
PIXEL = "111"
PARTITIONS = 6
_COORDINATOR_NOT_READY = frozenset({
    KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
    KafkaError.COORDINATOR_NOT_AVAILABLE,
    KafkaError.NOT_COORDINATOR,
})  # fmt: skip


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


@pytest.fixture
def admin(kafka_bootstrap: str) -> AdminClient:
    return AdminClient({"bootstrap.servers": kafka_bootstrap})


def _settings(kafka_bootstrap: str, names: dict[str, str], sim: Simulator) -> Settings:
    settings = stage_settings(
        kafka_bootstrap, names, access_token=TOKEN,
        deliverer={"graph_url": sim.url, "linger_ms": 100, "max_events": 100,
                   "max_in_flight_per_lane": 1, "commit_interval_s": 0.5,
                   "request_timeout_s": 5.0, "retry_base_s": 0.1, "retry_max_s": 1.0,
                   "revoke_timeout_s": 5.0},
    )  # fmt: skip
    # the broker's minimum session: a killed member's partitions move after 6 s, not 45
    return settings.model_copy(
        update={"consumer": {"session.timeout.ms": 6000, "heartbeat.interval.ms": 500}}
    )


def _warming_up(exc: KafkaException) -> bool:
    """A fresh broker answers group requests with these until its coordinator has loaded."""
    error: KafkaError = exc.args[0]
    return error.retriable() or error.code() in _COORDINATOR_NOT_READY


def _members(admin: AdminClient, group: str) -> list[int]:
    """Partitions assigned to each live member of ``group`` (none while the broker warms up)."""
    try:
        description = admin.describe_consumer_groups([group])[group].result(10)
    except KafkaException as exc:
        if _warming_up(exc):
            return []
        raise
    return [len(m.assignment.topic_partitions) for m in description.members]


def _records(ids: list[str]) -> list[tuple[bytes | None, bytes]]:
    """Enriched records, encoded ahead so that producing them is quick."""
    now = time.time()
    return [(i.encode(), enriched_value(i, PIXEL, now)) for i in ids]


def _stop_all(procs: list[subprocess.Popen[bytes]]) -> list[int | None]:
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    codes = []
    for proc in procs:
        try:
            codes.append(proc.wait(30))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            codes.append(None)
    return codes


def test_three_workers_lose_nothing_when_one_is_killed_mid_stream(
    kafka_bootstrap: str,
    names: dict[str, str],
    sim: Simulator,
    admin: AdminClient,
    tmp_path: Path,
) -> None:
    """kill -9 of one of three deliverers: its partitions move, every event arrives, all commit."""
    total = 12_000
    ids = [f"scale-{i}" for i in range(total)]
    records = _records(ids)
    settings = _settings(kafka_bootstrap, names, sim)
    group = names["deliverer_group"]
    logs = [tmp_path / f"deliver-{i}.log" for i in range(3)]
    # each its own worker slot: one static group.instance.id per process
    procs = [start_stage(["deliver", "--worker", str(i)], settings, log)
             for i, log in enumerate(logs)]  # fmt: skip
    try:
        wait_until(lambda: sorted(_members(admin, group)) == [2, 2, 2], 60, "three members, 2 each")
        published = time.monotonic()
        produce(kafka_bootstrap, names["enriched"], records)
        killed = wait_until(lambda: sim.stats().accepted >= total // 5, 30, "a fifth delivered")
        os.kill(procs[0].pid, signal.SIGKILL)
        procs[0].wait(10)
        at_kill = sim.stats().accepted
        assert at_kill < total  # the kill landed mid-stream

        rebalanced = wait_until(
            lambda: sorted(_members(admin, group)) == [3, 3], 30, "the survivors to take over"
        )
        at_rebalance = sim.stats().accepted
        done = wait_until(lambda: sim.stats().accepted >= total, 30, "every event")
        wait_until(
            lambda: committed_total(kafka_bootstrap, group, names["enriched"], PARTITIONS) == total,
            30,
            "offsets committed to the end",
        )
    finally:
        codes = _stop_all(procs[1:])
    received = sim.stats()
    assert received.missing(("Purchase", i) for i in ids) == set()
    # throughput recovered: what was left at the move (the killed worker's share) went at the
    # pace of two live workers, measured against three before the kill; not a trickle
    assert at_rebalance < total
    before = (total // 5) / (killed - published)
    after = (total - at_rebalance) / max(done - rebalanced, 0.1)
    assert after > before / 3, (before, after)
    assert codes == [0, 0], [log.read_text()[-2000:] for log in logs[1:]]


def test_supervised_workers_restart_a_killed_one_and_drain_on_stop(
    kafka_bootstrap: str,
    names: dict[str, str],
    sim: Simulator,
    admin: AdminClient,
) -> None:
    """Under the supervisor a killed deliverer comes back; stop drains all three and exits 0."""
    total = 6000
    ids = [f"sup-{i}" for i in range(total)]
    records = _records(ids)
    settings = _settings(kafka_bootstrap, names, sim)
    group = names["deliverer_group"]
    sup = Supervisor(
        3, lambda i: cli_argv("deliver", "--worker", str(i)), stage_env(settings),
        backoff_base_s=0.5, drain_timeout_s=30, handle_signals=False,
    )  # fmt: skip
    result: dict[str, int] = {}
    thread = threading.Thread(target=lambda: result.update(code=sup.run()), daemon=True)
    thread.start()
    try:
        wait_until(lambda: sorted(_members(admin, group)) == [2, 2, 2], 60, "three members, 2 each")
        produce(kafka_bootstrap, names["enriched"], records)
        wait_until(lambda: sim.stats().accepted >= total // 5, 30, "a fifth delivered")
        killed = sup.pids[1]
        os.kill(killed, signal.SIGKILL)
        wait_until(lambda: sup.starts[1] == 2 and 1 in sup.pids, 30, "the restart")
        assert sup.pids[1] != killed
        wait_until(lambda: sim.stats().accepted >= total, 40, "every event")
        wait_until(
            lambda: committed_total(kafka_bootstrap, group, names["enriched"], PARTITIONS) == total,
            30,
            "offsets committed to the end",
        )
    finally:
        sup.stop()
        thread.join(60)
    assert result == {"code": 0}
    assert sup.starts == {0: 1, 1: 2, 2: 1}
    assert sim.stats().missing(("Purchase", i) for i in ids) == set()
