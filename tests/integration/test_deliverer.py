"""The deliver stage against the real broker and the simulator over real HTTP."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterator

import pytest
from confluent_kafka import Consumer, Producer
from confluent_kafka import TopicPartition as RdTopicPartition
from pydantic import SecretStr

from stream import schemas
from stream.core.codec import AvroCodec
from stream.core.sensors import MemorySensor
from stream.deliver.stage import Deliverer
from stream.sim import FaultConfig, PoisonRule, SimConfig, Simulator
from tests.integration.helpers import (
    enriched_value,
    produce,
    read_all,
    stage_names,
    stage_settings,
    wait_until,
)

pytestmark = pytest.mark.integration

TOKEN = "tok-deliverer-test"
PIXEL = "111"


@pytest.fixture
def names(unique: Callable[[str], str], make_topics: Callable[..., None]) -> dict[str, str]:
    n = stage_names(unique)
    make_topics(n["enriched"], n["dlq"], partitions=3)
    return n


@pytest.fixture
def sim() -> Iterator[Simulator]:
    with Simulator(SimConfig(tokens={TOKEN: frozenset({"*"})})) as simulator:
        yield simulator


def _settings(kafka_bootstrap: str, names: dict[str, str], sim: Simulator, **deliverer: object):
    return stage_settings(
        kafka_bootstrap, names, access_token=TOKEN,
        deliverer={"graph_url": sim.url, "linger_ms": 200, "commit_interval_s": 0.5,
                   "request_timeout_s": 2.0, "retry_base_s": 0.1, "retry_max_s": 2.0,
                   **deliverer},
    )  # fmt: skip


def _publish(kafka_bootstrap: str, topic: str, ids: list[str], pixel: str = PIXEL) -> None:
    now = time.time()
    produce(kafka_bootstrap, topic, ((i.encode(), enriched_value(i, pixel, now)) for i in ids))


def _committed(kafka_bootstrap: str, group: str, topic: str, partitions: int = 3) -> int:
    consumer = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": group})
    try:
        parts = consumer.committed([RdTopicPartition(topic, p) for p in range(partitions)], 10)
        return sum(max(p.offset, 0) for p in parts)
    finally:
        consumer.close()


def _run_in_thread(stage: Deliverer) -> threading.Thread:
    thread = threading.Thread(target=stage.run, daemon=True)
    thread.start()
    return thread


def test_every_event_is_accepted_exactly_once(
    kafka_bootstrap: str, names: dict[str, str], sim: Simulator
) -> None:
    """2,500 events over two pixels arrive once each; offsets are committed to the end."""
    ids = [f"ev-{i}" for i in range(2500)]
    _publish(kafka_bootstrap, names["enriched"], ids[:1500], PIXEL)
    _publish(kafka_bootstrap, names["enriched"], ids[1500:], "222")
    stage = Deliverer(_settings(kafka_bootstrap, names, sim))
    stats = stage.run(max_idle_s=3)
    received = sim.stats()
    assert received.accepted == 2500
    assert received.duplicates == 0
    assert received.missing(("Purchase", i) for i in ids) == set()
    assert stats.delivered == 2500
    assert stats.requests <= 2500 / 1000 + 6  # batched: a handful of requests, not thousands
    assert _committed(kafka_bootstrap, names["deliverer_group"], names["enriched"]) == 2500


def test_a_commit_follows_each_accepted_batch_not_the_timer(
    kafka_bootstrap: str, names: dict[str, str], sim: Simulator
) -> None:
    """Offsets are committed within ~commit_min_interval_s of acceptance, not on a slow timer.

    The periodic timer is set to 60 s: only the coalesced commit after each accepted batch can
    bring the committed offsets to the end within the few seconds allowed.
    """
    ids = [f"cm-{i}" for i in range(600)]
    _publish(kafka_bootstrap, names["enriched"], ids)
    stage = Deliverer(_settings(kafka_bootstrap, names, sim, commit_interval_s=60.0))
    thread = _run_in_thread(stage)
    try:
        wait_until(lambda: sim.stats().accepted == len(ids), 60, "every event accepted")
        accepted_at = time.monotonic()
        group, topic = names["deliverer_group"], names["enriched"]
        wait_until(lambda: _committed(kafka_bootstrap, group, topic) == len(ids), 10, "the commit")
        # far below the 60 s timer; the slack is for a loaded machine's commits and probes
        assert time.monotonic() - accepted_at < 8.0
    finally:
        stage.stop()
        thread.join(60)


def test_nothing_is_committed_while_the_simulator_hangs(
    kafka_bootstrap: str, names: dict[str, str], sim: Simulator
) -> None:
    """While every request hangs past the client timeout, no offset is committed; after, all are."""
    sim.set_faults(FaultConfig(rates={"hang": 1.0}, hang_seconds=3.0))
    ids = [f"hang-{i}" for i in range(300)]
    _publish(kafka_bootstrap, names["enriched"], ids)
    stage = Deliverer(_settings(kafka_bootstrap, names, sim, request_timeout_s=1.0))
    thread = _run_in_thread(stage)
    try:
        wait_until(lambda: sim.stats().requests >= 3, 60, "hung requests")
        assert _committed(kafka_bootstrap, names["deliverer_group"], names["enriched"]) == 0
        sim.clear_faults()
        wait_until(lambda: sim.stats().accepted == 300, 60, "delivery after the hang")
        wait_until(
            lambda: _committed(kafka_bootstrap, names["deliverer_group"], names["enriched"]) == 300,
            30, "the commit",
        )  # fmt: skip
    finally:
        stage.stop()
        thread.join(60)
    assert sim.stats().missing(("Purchase", i) for i in ids) == set()


def test_one_poison_event_among_1000_is_isolated_by_bisection(
    kafka_bootstrap: str, names: dict[str, str], make_topics: Callable[..., None]
) -> None:
    """999 events are delivered, 1 is dead-lettered with Meta's error, in ≤ 2·log2(n)+1 requests."""
    config = SimConfig(
        tokens={TOKEN: frozenset({"*"})},
        report_event_index=False,  # Meta does not always name the event: bisection must find it
        faults=FaultConfig(poison=(PoisonRule(field="event_id", op="equals", value="p-437"),)),
    )
    # one partition, so the 1,000 events form exactly one batch
    single = names["enriched"] + "-one"
    make_topics(single, partitions=1)
    make = {**names, "enriched": single}
    ids = [f"p-{i}" for i in range(1000)]
    _publish(kafka_bootstrap, single, ids)
    with Simulator(config) as sim:
        stage = Deliverer(_settings(kafka_bootstrap, make, sim, linger_ms=2000))
        stats = stage.run(max_idle_s=3)
        received = sim.stats()
    assert received.accepted == 999
    assert ("Purchase", "p-437") not in received.event_keys
    assert stats.requests <= 2 * math.ceil(math.log2(1000)) + 1
    dead = read_all(kafka_bootstrap, names["dlq"], expected=1)
    assert len(dead) == 1
    letter = AvroCodec(schemas.load("dead_letter")).decode(dead[0].value or b"")
    assert letter["reason"] == "rejected_by_meta"
    assert letter["event_id"] == "p-437"
    assert letter["pixel_id"] == PIXEL
    assert letter["meta_error"]["code"] == 100
    assert letter["meta_error"]["fbtrace_id"]
    assert _committed(kafka_bootstrap, names["deliverer_group"], single, partitions=1) == 1000


def only_purchases(event: dict[str, object]) -> bool:
    """A Gateway filter hook: only Purchase events go to the Gateway."""
    return event.get("event_name") == "Purchase"


def test_gateway_with_graph_and_a_filter_hook(kafka_bootstrap: str, names: dict[str, str]) -> None:
    """With gateway_only off, every event goes to Graph; the filter picks what the Gateway gets."""
    config = SimConfig(tokens={TOKEN: frozenset({"*"})}, gateway_keys={"gw-key": frozenset({"*"})})
    now = time.time()
    items = [(f"gw-{i}".encode(), enriched_value(f"gw-{i}", PIXEL, now,
              event_name="Purchase" if i % 2 else "Lead")) for i in range(200)]  # fmt: skip
    produce(kafka_bootstrap, names["enriched"], items)
    with Simulator(config) as graph, Simulator(config) as gateway:
        settings = _settings(
            kafka_bootstrap,
            names,
            graph,
            destination="gateway",
            gateway_url=gateway.url,
            gateway_only=False,
            gateway_filter=f"{__name__}:only_purchases",
        ).model_copy(update={"gateway_access_key": SecretStr("gw-key")})
        stats = Deliverer(settings).run(max_idle_s=3)
        assert graph.stats().accepted == 200
        assert gateway.stats().accepted == 100
    assert stats.delivered == 200
    assert _committed(kafka_bootstrap, names["deliverer_group"], names["enriched"]) == 200


def test_lags_reach_zero_over_transaction_markers(
    kafka_bootstrap: str, names: dict[str, str], sim: Simulator, unique: Callable[[str], str]
) -> None:
    """The enriched topic written in transactions, as the exactly-once normalizer writes it (a
    commit marker ends each partition): once every event is delivered and committed, the stage
    reports consumer_lag 0 and commit_lag 0, not one per partition, and a pending of 0 with
    the oldest pending wait of the pixel back at 0."""
    now = time.time()
    producer = Producer({"bootstrap.servers": kafka_bootstrap, "transactional.id": unique("tx")})
    producer.init_transactions(30)
    for chunk in range(2):
        producer.begin_transaction()
        for i in range(chunk * 30, chunk * 30 + 30):
            value = enriched_value(f"tx-{i}", PIXEL, now)
            producer.produce(
                names["enriched"], value=value, key=f"tx-{i}".encode(), partition=i % 3
            )
        producer.commit_transaction(30)
    sensor = MemorySensor()
    stage = Deliverer(_settings(kafka_bootstrap, names, sim, commit_interval_s=0.2), sensor=sensor)
    thread = threading.Thread(target=stage.run, daemon=True)
    thread.start()
    try:
        wait_until(lambda: stage.stats.delivered == 60, 60, "every event delivered")
        sensor.gauges.clear()  # only reports made after the last delivery count

        def gauge(name: str, **labels: str) -> float | None:
            return sensor.gauges.get((name, tuple(sorted(labels.items()))))

        wait_until(lambda: gauge("consumer_lag", stage="deliver") == 0
                   and gauge("commit_lag", stage="deliver") == 0, 30, "both lags at 0")  # fmt: skip
        assert gauge("pending") == 0
        assert gauge("assigned_partitions", stage="deliver") == 3
        assert gauge("oldest_pending_wait_seconds", pixel=PIXEL) == 0
        assert gauge("oldest_pending_age_seconds", pixel=PIXEL) == 0
    finally:
        stage.stop()
        thread.join(60)
