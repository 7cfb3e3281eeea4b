"""Oversized records never stall a partition (issue 10 part 2), against the real broker.

The three triggers of the issue, on the broker's default topics (``max.message.bytes`` 1,048,588)
and the stage's default producer (``message.max.bytes`` 1,000,000):

1. a valid raw event of 1,040,000 bytes (the topic takes it; its output cannot be produced);
2. a valid ~973 KB event with 24,000 e-mails whose hashed output is ~1.6 MB;
3. a ~995 KB event that is invalid (blank event_name): its dead letter would be too large.

Each ends as a dead letter that fits (``record_too_large``, or its own reason for 3) with the
original's length, SHA-256 and a prefix; the records after it are processed; the group commits
to the end. In both processing modes and both wire formats.
"""

from __future__ import annotations

import base64
import hashlib
import random
import re
import time
from collections.abc import Callable
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer
from confluent_kafka import TopicPartition as RdTopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from stream.config import Settings
from stream.core.dead_letter import (
    PREFIX_BYTES,
    RECORD_TOO_LARGE,
    dead_letter,
    letter_record,
    record_size,
)
from stream.core.enrich import Enricher
from stream.core.errors import KafkaError
from stream.core.records import Record
from stream.kafka.limits import PRODUCER_DEFAULT_MAX_BYTES, SAFETY_MARGIN, max_record_bytes
from stream.kafka.serde import build_codecs
from stream.normalizer import Normalizer, normalize_options
from tests.factories import custom_data, empty_user_data, raw_event
from tests.integration.helpers import read_all, run_cli, stage_names, stage_settings

pytestmark = pytest.mark.integration

BROKER_DEFAULT_MAX_BYTES = 1_048_588  # Kafka's max.message.bytes default for a new topic
DEFAULT_LIMIT = PRODUCER_DEFAULT_MAX_BYTES - SAFETY_MARGIN
NOW = int(time.time())  # events must be within Meta's 7 days to be enriched


def names_for(unique: Callable[[str], str]) -> dict[str, str]:
    return stage_names(unique)


def create_topics(bootstrap: str, *names: str, config: dict[str, str] | None = None) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics([NewTopic(n, 1, 1, config=config or {}) for n in names])
    for future in futures.values():
        future.result(30)


def big_producer_produce(bootstrap: str, topic: str, items: list[tuple[bytes, bytes]]) -> None:
    """Produce in order on partition 0 with a producer that allows 2 MB records (the stage's
    producer keeps librdkafka's 1,000,000 default)."""
    producer = Producer({
        "bootstrap.servers": bootstrap, "enable.idempotence": True,
        "message.max.bytes": 2_000_000,
    })  # fmt: skip
    for key, value in items:
        producer.produce(topic, key=key, value=value, partition=0)
        producer.poll(0)
    assert producer.flush(60) == 0


def committed(bootstrap: str, group: str, topic: str) -> int | None:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        (tp,) = consumer.committed([RdTopicPartition(topic, 0)], 10)
        return tp.offset if tp.offset >= 0 else None
    finally:
        consumer.close()


def padded_event(size: int, encode: Callable[[dict[str, Any]], bytes], **overrides: Any) -> bytes:
    """A raw event of exactly ``size`` encoded bytes: one long custom property."""

    def event(pad: int) -> dict[str, Any]:
        props = {"note": "x" * pad}
        return raw_event(
            event_time=NOW, custom_data=custom_data(custom_properties=props), **overrides
        )

    base = len(encode(event(0)))
    for pad in range(size - base - 8, size - base + 1):  # the varint length grows with the pad
        value = encode(event(pad))
        if len(value) == size:
            return value
    raise AssertionError(size)


def many_emails(count: int) -> dict[str, Any]:
    """A valid event with ``count`` distinct e-mails of 40 characters (41 bytes in Avro)."""
    user_data = empty_user_data()
    user_data.update(
        em=[f"customer.number.{i:07d}@mail.example.org" for i in range(count)],
        client_user_agent="Mozilla/5.0",
        client_ip_address="203.0.113.7",
    )
    return raw_event(event_id="many-emails", event_time=NOW, user_data=user_data)


@pytest.mark.parametrize("wire", ["schemaless", "confluent"])
@pytest.mark.parametrize("processing", ["exactly_once", "at_least_once"])
def test_oversized_records_become_bounded_dead_letters_and_the_partition_moves_on(
    kafka_bootstrap: str,
    schema_registry_url: str,
    unique: Callable[[str], str],
    processing: str,
    wire: str,
) -> None:
    """Three oversized triggers among small events on one partition: no crash, every small event
    enriched, three dead letters that fit with length, SHA-256 and prefix, committed to the end."""
    names = names_for(unique)
    create_topics(kafka_bootstrap, names["raw"], names["enriched"], names["dlq"])
    registry = {"schema_registry_url": schema_registry_url} if wire == "confluent" else {}
    settings = stage_settings(
        kafka_bootstrap, names, normalizer={"processing": processing}, **registry
    )
    codecs = build_codecs(settings)
    encode = codecs.raw.encode
    codecs.close()

    huge = padded_event(1_040_000, encode, event_id="huge")
    emails = encode(many_emails(24_000))
    invalid = padded_event(995_000, encode, event_id="invalid", event_name=" ")
    assert 960_000 < len(emails) < 1_000_000  # ~973 KB, under what the raw topic takes
    small = [encode(raw_event(event_id=f"ok-{i}", event_time=NOW)) for i in range(8)]
    items = [
        (b"ok-0", small[0]), (b"ok-1", small[1]),
        (b"huge", huge), (b"ok-2", small[2]), (b"ok-3", small[3]),
        (b"emails", emails), (b"ok-4", small[4]), (b"ok-5", small[5]),
        (b"invalid", invalid), (b"ok-6", small[6]), (b"ok-7", small[7]),
    ]  # fmt: skip
    big_producer_produce(kafka_bootstrap, names["raw"], items)

    stats = Normalizer(settings).run(max_idle_s=3)  # returns: the stage did not crash

    assert stats.consumed == len(items)
    # the stage has committed everything before run() returns: no need to wait for stragglers
    enriched = read_all(kafka_bootstrap, names["enriched"], expected=len(small), idle_s=0.5)
    dead = read_all(kafka_bootstrap, names["dlq"], expected=3, idle_s=0.5)
    assert sorted(r.key for r in enriched) == sorted(k for k, _ in items if k.startswith(b"ok-"))
    assert len(dead) == 3
    assert committed(kafka_bootstrap, names["normalizer_group"], names["raw"]) == len(items)

    reader = build_codecs(settings)
    try:
        letters = {r.key: (r, reader.dlq.decode(r.value or b"")) for r in dead}
    finally:
        reader.close()
    originals = dict(items)
    expected_reason = {b"huge": RECORD_TOO_LARGE, b"emails": RECORD_TOO_LARGE,
                       b"invalid": "missing_event_name"}  # fmt: skip
    for key, (rec, letter) in letters.items():
        original = originals[key]
        assert letter["reason"] == expected_reason[key], key
        assert record_size(rec.key, rec.value, rec.headers) <= DEFAULT_LIMIT
        assert dict(rec.headers)["capi.reason"] == letter["reason"].encode()
        assert letter["original_length"] == len(original)
        assert letter["original_sha256"] == hashlib.sha256(original).hexdigest()
        assert original.startswith(letter["original_value"])
        assert len(letter["message"]) < 400  # sizes, not data
        assert "customer.number" not in letter["message"]
    # over the limit even whole: cut to the prefix; the e-mails' raw value fits, so it is whole
    assert letters[b"huge"][1]["original_value"] == huge[:PREFIX_BYTES]
    assert letters[b"huge"][1]["original_truncated"] is True
    assert letters[b"invalid"][1]["original_truncated"] is True
    assert letters[b"emails"][1]["original_value"] == emails
    assert letters[b"emails"][1]["original_truncated"] is False
    assert letters[b"emails"][1]["event_id"] == "many-emails"


EDGE_TOPIC_BYTES = 200_000  # the enriched topic's max.message.bytes in the edge test


def sized_to_enrich(target: int, settings: Settings, offset: int, key: bytes) -> bytes:
    """A raw event whose enriched record (key, value, headers) is exactly ``target`` bytes when
    read at ``offset`` of partition 0: one custom property of random base64, which lz4 cannot
    shrink (its 4-byte matches are rare in it, unlike in hex), so the broker sees the full size
    plus the framing."""
    codecs = build_codecs(settings)
    try:
        enricher = Enricher(codecs.raw, codecs.enriched, codecs.dlq, normalize_options(settings))
        pad = base64.b64encode(random.Random(target).randbytes(target)).decode()

        def sizes(length: int) -> tuple[bytes, int]:
            props = {"pad": pad[:length]}
            event = raw_event(event_id=f"edge-{target}", event_time=NOW,
                              custom_data=custom_data(custom_properties=props))  # fmt: skip
            value = codecs.raw.encode(event)
            record = Record(settings.topics.raw, 0, offset, key, value)
            out = enricher.process(record, time.time())
            assert out.destination == "enriched", out.reason
            return value, record_size(out.key, out.value, out.headers)

        _, base = sizes(0)
        for length in range(target - base - 8, target - base + 1):  # varint lengths grow
            value, size = sizes(length)
            if size == target:
                return value
        raise AssertionError(f"no pad makes an enriched record of {target} bytes")
    finally:
        codecs.close()


def test_an_enriched_record_at_the_topic_limit_is_written_and_one_byte_more_dead_lettered(
    kafka_bootstrap: str, unique: Callable[[str], str]
) -> None:
    """The enriched topic takes 200,000 bytes a record batch; the stage's limit is that less
    SAFETY_MARGIN. An incompressible event whose enriched record is exactly at the limit is
    written (the broker takes it with its batch and record framing), one whose record is one
    byte over is dead-lettered as record_too_large, and the partition commits to the end."""
    names = names_for(unique)
    create_topics(kafka_bootstrap, names["raw"], names["dlq"])
    create_topics(kafka_bootstrap, names["enriched"],
                  config={"max.message.bytes": str(EDGE_TOPIC_BYTES)})  # fmt: skip
    settings = stage_settings(kafka_bootstrap, names)
    limit = EDGE_TOPIC_BYTES - SAFETY_MARGIN
    small = build_codecs(settings)
    try:
        ok = [small.raw.encode(raw_event(event_id=f"ok-{i}", event_time=NOW)) for i in range(3)]
    finally:
        small.close()
    items = [
        (b"ok-0", ok[0]),
        (b"at-limit", sized_to_enrich(limit, settings, 1, b"at-limit")),
        (b"ok-1", ok[1]),
        (b"over", sized_to_enrich(limit + 1, settings, 3, b"over")),
        (b"ok-2", ok[2]),
    ]
    big_producer_produce(kafka_bootstrap, names["raw"], items)

    stats = Normalizer(settings).run(max_idle_s=3)

    assert (stats.consumed, stats.enriched, stats.dead_lettered) == (5, 4, 1)
    enriched = read_all(kafka_bootstrap, names["enriched"], expected=4, idle_s=0.5)
    assert [r.key for r in enriched] == [b"ok-0", b"at-limit", b"ok-1", b"ok-2"]
    at_limit = next(r for r in enriched if r.key == b"at-limit")
    assert record_size(at_limit.key, at_limit.value, at_limit.headers) == limit
    (dead,) = read_all(kafka_bootstrap, names["dlq"], expected=1, idle_s=0.5)
    assert dead.key == b"over"
    assert dict(dead.headers)["capi.reason"] == RECORD_TOO_LARGE.encode()
    assert committed(kafka_bootstrap, names["normalizer_group"], names["raw"]) == len(items)


def test_max_record_bytes_is_the_smaller_of_topic_and_producer(
    kafka_bootstrap: str, unique: Callable[[str], str]
) -> None:
    """Defaults: the producer's 1,000,000 wins over the topic's 1,048,588; a raised producer
    limit leaves the topic's; a topic with a lower max.message.bytes wins; margin taken off."""
    plain, small = unique("plain"), unique("small")
    create_topics(kafka_bootstrap, plain)
    create_topics(kafka_bootstrap, small, config={"max.message.bytes": "500000"})
    admin = {"bootstrap.servers": kafka_bootstrap}

    assert max_record_bytes(admin, {}, [plain]) == DEFAULT_LIMIT
    assert max_record_bytes(admin, {"message.max.bytes": "2000000"}, [plain]) == (
        BROKER_DEFAULT_MAX_BYTES - SAFETY_MARGIN
    )
    assert max_record_bytes(admin, {"message.max.bytes": 2_000_000}, [plain, small]) == (
        500_000 - SAFETY_MARGIN
    )


def test_max_record_bytes_refuses_a_missing_topic_and_a_tiny_limit(
    kafka_bootstrap: str, unique: Callable[[str], str]
) -> None:
    """A topic that does not exist is a retriable KafkaError naming it (never "no limit
    reported"); a limit too small for bounded dead letters is a fatal one naming the setting."""
    tiny = unique("tiny")
    create_topics(kafka_bootstrap, tiny, config={"max.message.bytes": "50000"})
    admin = {"bootstrap.servers": kafka_bootstrap}
    missing = unique("missing")
    with pytest.raises(KafkaError, match=re.escape(f"topic {missing} does not exist")) as gone:
        max_record_bytes(admin, {}, [missing], timeout_s=10)
    assert gone.value.retriable
    with pytest.raises(
        KafkaError, match=re.escape(f"topic {tiny} max.message.bytes is 50000")
    ) as info:
        max_record_bytes(admin, {}, [tiny])
    assert info.value.fatal


def test_settings_producer_config_gives_the_stage_limit(kafka_bootstrap: str) -> None:
    """The stage's own producer config (no message.max.bytes) answers librdkafka's default."""
    settings = Settings(bootstrap_servers=kafka_bootstrap)
    assert max_record_bytes(settings.admin_config(), settings.producer_config(), []) == (
        DEFAULT_LIMIT
    )


def test_dlq_republish_skips_letters_cut_to_a_prefix(
    kafka_bootstrap: str,
    unique: Callable[[str], str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A truncated letter holds only a prefix: republishing it would put a corrupt record on the
    raw topic, so ``dlq republish`` counts it as skipped; a whole one is republished as before."""
    names = names_for(unique)
    create_topics(kafka_bootstrap, names["raw"], names["enriched"], names["dlq"])
    settings = stage_settings(kafka_bootstrap, names)
    codecs = build_codecs(settings)
    whole = codecs.raw.encode(raw_event(event_id="whole", event_time=NOW))
    cut = padded_event(1_040_000, codecs.raw.encode, event_id="cut")
    producer = Producer(dict(settings.producer_config()))
    for key, value in ((b"whole", whole), (b"cut", cut)):
        record = Record(names["raw"], 0, 0, key, value)
        letter = dead_letter(stage="normalize", reason=RECORD_TOO_LARGE, message="m",
                             record=record, now_ms=NOW * 1000)  # fmt: skip
        out = letter_record(letter, codecs.dlq.encode, DEFAULT_LIMIT)
        producer.produce(names["dlq"], key=out.key, value=out.value, headers=list(out.headers))
    assert producer.flush(30) == 0
    codecs.close()

    code = run_cli(monkeypatch, settings, "dlq", "republish", "--to", "raw",
                   "--reason", RECORD_TOO_LARGE, "--no-progress")  # fmt: skip

    assert code == 0
    printed = capsys.readouterr().out
    assert "republished 1 dead letter to " in printed
    assert "skipped: 1 truncated" in printed
    republished = read_all(kafka_bootstrap, names["raw"], expected=1, idle_s=0.5)
    assert [(r.key, r.value) for r in republished] == [(b"whole", whole)]
