"""Lag gauges that reach 0 on transactional topics: the normalize stage, and a read_committed
reader of the enriched topic (what the deliver stage reads), on the real broker."""

from __future__ import annotations

import gc
import threading
import time
from collections.abc import Callable, Iterator

import pytest
from confluent_kafka import Producer

from stream import schemas
from stream.collector import GC_GEN0_THRESHOLD
from stream.core.codec import AvroCodec
from stream.core.records import TopicPartition
from stream.core.sensors import MemorySensor
from stream.kafka.consumer import StageConsumer
from stream.normalizer import Normalizer
from tests.factories import raw_event
from tests.integration.helpers import stage_names, stage_settings, wait_until

pytestmark = pytest.mark.integration

EVENTS = 24
PARTITIONS = 2


def _produce_in_transactions(bootstrap: str, topic: str, values: list[bytes], tid: str) -> None:
    """Two committed transactions: each partition ends with a commit marker."""
    producer = Producer({"bootstrap.servers": bootstrap, "transactional.id": tid})
    producer.init_transactions(30)
    half = len(values) // 2
    for chunk in (values[:half], values[half:]):
        producer.begin_transaction()
        for i, value in enumerate(chunk):
            producer.produce(topic, value=value, partition=i % PARTITIONS)
        producer.commit_transaction(30)


def _gauge(sensor: MemorySensor, name: str) -> float | None:
    return sensor.gauges.get((name, (("stage", "normalize"),)))


@pytest.fixture
def running() -> Iterator[Callable[[Normalizer], threading.Thread]]:
    """Runs normalizers in threads; stops and joins them at the end of the test."""
    started: list[tuple[Normalizer, threading.Thread]] = []

    def run(normalizer: Normalizer) -> threading.Thread:
        thread = threading.Thread(target=normalizer.run, daemon=True)
        thread.start()
        started.append((normalizer, thread))
        return thread

    yield run
    for normalizer, thread in started:
        normalizer.stop()
        thread.join(60)


def test_normalize_lags_reach_zero_over_transaction_markers(
    kafka_bootstrap: str,
    unique: Callable[[str], str],
    make_topics: Callable[..., None],
    running: Callable[[Normalizer], threading.Thread],
) -> None:
    """The raw topic written in transactions (a marker ends each partition): once every record
    is processed, the stage reports consumer_lag 0 and commit_lag 0 with both partitions
    assigned, where "high watermark - (last offset + 1)" would say one per partition. The
    collector runs tuned while the stage runs and is restored after it."""
    names = stage_names(unique)
    make_topics(names["raw"], names["enriched"], names["dlq"], partitions=PARTITIONS)
    now = int(time.time())
    codec = AvroCodec(schemas.load("conversion_event"))
    values = [codec.encode(raw_event(event_id=f"lag-{i}", event_time=now)) for i in range(EVENTS)]
    _produce_in_transactions(kafka_bootstrap, names["raw"], values, unique("raw-writer"))

    settings = stage_settings(
        kafka_bootstrap, names, normalizer={"processing": "exactly_once", "poll_batch": 5}
    )
    sensor = MemorySensor()
    normalizer = Normalizer(settings, sensor=sensor)
    before = gc.get_threshold()
    thread = running(normalizer)
    wait_until(lambda: normalizer.stats.consumed == EVENTS, 90, "every raw record processed")
    assert gc.get_threshold()[0] == GC_GEN0_THRESHOLD
    sensor.gauges.clear()  # only reports made after the last batch count
    wait_until(lambda: _gauge(sensor, "consumer_lag") == 0, 30, "consumer_lag 0 after it")
    assert _gauge(sensor, "commit_lag") == 0
    assert _gauge(sensor, "assigned_partitions") == PARTITIONS
    normalizer.stop()
    thread.join(60)
    assert gc.get_threshold() == before

    # the markers are there: a lag taken from the last record read would be 1 per partition
    reader = StageConsumer(settings.consumer_config(unique("reader")))
    try:
        tps = [TopicPartition(names["raw"], p) for p in range(PARTITIONS)]
        reader.subscribe([names["raw"]])
        last: dict[TopicPartition, int] = {}
        read = 0
        deadline = time.monotonic() + 60
        while read < EVENTS:
            assert time.monotonic() < deadline, f"read {read} of {EVENTS} raw records back"
            for record in reader.poll(100, 0.5):
                last[record.tp] = max(last.get(record.tp, -1), record.offset)
                read += 1
        wait_until(lambda: len(reader.high_watermarks(tps)) == PARTITIONS, 30, "watermarks")
        highs = reader.high_watermarks(tps)
        assert all(highs[tp] > last[tp] + 1 for tp in tps), (highs, last)
    finally:
        reader.close()


def test_a_read_committed_reader_of_the_enriched_topic_ends_at_lag_zero(
    kafka_bootstrap: str,
    unique: Callable[[str], str],
    make_topics: Callable[..., None],
    running: Callable[[Normalizer], threading.Thread],
) -> None:
    """The enriched topic the exactly-once stage writes ends each partition with a marker; a
    read_committed StageConsumer (the deliver stage's) that read it all has lag 0. With a
    transaction left open on the topic, the lag stays 0 (the last stable offset bounds what it
    can read) while the high watermark is ahead; once committed, it reads them and is at 0."""
    names = stage_names(unique)
    make_topics(names["raw"], names["enriched"], names["dlq"], partitions=PARTITIONS)
    now = int(time.time())
    codec = AvroCodec(schemas.load("conversion_event"))
    values = [codec.encode(raw_event(event_id=f"enr-{i}", event_time=now)) for i in range(EVENTS)]
    _produce_in_transactions(kafka_bootstrap, names["raw"], values, unique("raw-writer"))
    settings = stage_settings(kafka_bootstrap, names, normalizer={"processing": "exactly_once"})
    normalizer = Normalizer(settings)
    running(normalizer)
    wait_until(lambda: normalizer.stats.enriched == EVENTS, 90, "every record enriched")

    reader = StageConsumer(
        settings.consumer_config(unique("deliver-like"), **{"statistics.interval.ms": 500})
    )
    tps = {TopicPartition(names["enriched"], p) for p in range(PARTITIONS)}
    read = 0
    try:
        reader.subscribe([names["enriched"]])
        deadline = time.monotonic() + 60
        while read < EVENTS:
            assert time.monotonic() < deadline, f"read {read} of {EVENTS} enriched records"
            read += len(reader.poll(100, 0.5))

        def lag_zero() -> bool:
            reader.poll(10, 0.2)
            lags = reader.lag(tps)
            return len(lags) == PARTITIONS and sum(lags.values()) == 0

        wait_until(lag_zero, 30, "lag 0 after reading every enriched record")

        # a transaction left open: three records past the last stable offset
        writer = Producer({"bootstrap.servers": kafka_bootstrap, "transactional.id": unique("o")})
        writer.init_transactions(30)
        writer.begin_transaction()
        for _ in range(3):
            writer.produce(names["enriched"], value=b"open", partition=0)
        writer.flush(30)
        tp0 = TopicPartition(names["enriched"], 0)

        def high_ahead() -> bool:
            reader.poll(10, 0.2)
            return reader.high_watermarks([tp0])[tp0] - reader.positions([tp0])[tp0] >= 3

        wait_until(high_ahead, 30, "the open transaction's records in the high watermark")
        assert sum(reader.lag(tps).values()) == 0
        writer.commit_transaction(30)
        late: list[object] = []
        wait_until(lambda: len(late.__iadd__(reader.poll(10, 0.2))) >= 3, 30, "the 3 committed")
        wait_until(lag_zero, 30, "lag 0 after reading the committed transaction")
    finally:
        reader.close()
