"""The foundation against real servers: topics on Kafka, the Confluent format via the registry."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from confluent_kafka import Consumer, Producer

from stream.config import Settings
from stream.kafka.admin import create_topics
from stream.kafka.records import to_record
from stream.kafka.serde import build_codecs
from tests.factories import full_raw_event

pytestmark = pytest.mark.integration


def test_topics_create_is_idempotent(kafka_bootstrap: str, unique: Callable[[str], str]) -> None:
    """`topics create` makes the three topics, and a second run finds them existing."""
    settings = Settings(
        bootstrap_servers=kafka_bootstrap,
        topics={"raw": unique("raw"), "enriched": unique("enr"), "dlq": unique("dlq"),
                "partitions": 2},
    )  # fmt: skip
    first = {r.name: r.outcome for r in create_topics(settings)}
    second = {r.name: r.outcome for r in create_topics(settings)}
    assert set(first.values()) == {"created"}
    assert set(second.values()) == {"exists"}
    assert set(first) == {settings.topics.raw, settings.topics.enriched, settings.topics.dlq}


def test_confluent_format_round_trip_through_registry_and_broker(
    kafka_bootstrap: str,
    schema_registry_url: str,
    unique: Callable[[str], str],
    make_topics: Callable[..., None],
) -> None:
    """A raw event in the Confluent format, schema in the real registry, comes back equal."""
    settings = Settings(
        bootstrap_servers=kafka_bootstrap,
        schema_registry_url=schema_registry_url,
        topics={"raw": unique("raw"), "enriched": unique("enr"), "dlq": unique("dlq")},
    )
    make_topics(settings.topics.raw, partitions=1)
    codecs = build_codecs(settings)
    codecs.close()
    event = full_raw_event()
    data = codecs.raw.encode(event)
    assert data[0] == 0  # magic byte: the registry assigned the id in the header

    producer = Producer(settings.producer_config())
    producer.produce(settings.topics.raw, value=data, key=b"order-100045")
    assert producer.flush(30) == 0

    # a fresh codec knows no ids: it must resolve the writer schema through the registry
    reader_codecs = build_codecs(settings)
    reader = reader_codecs.raw
    consumer = Consumer(settings.consumer_config(unique("g")))
    consumer.subscribe([settings.topics.raw])
    try:
        msg = None
        for _ in range(60):
            msg = consumer.poll(1.0)
            if msg is not None and msg.error() is None:
                break
        assert msg is not None
        record = to_record(msg)
    finally:
        consumer.close()
    assert record.key == b"order-100045"
    try:
        assert reader.decode(record.value or b"") == event
    finally:
        reader_codecs.close()
