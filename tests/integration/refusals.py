"""What the refusal tests share: a live topic changed as an operator changes it, and the
group's commits watched while a stage meets the refusal.

Every refused record is made of random base64 (:func:`padding`) so that lz4 cannot shrink the
batch under a lowered limit.
"""

from __future__ import annotations

import base64
import os
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from confluent_kafka import Consumer, KafkaException
from confluent_kafka import TopicPartition as RdTopicPartition
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewTopic,
)
from confluent_kafka.admin._resource import ResourceType

from stream import schemas
from stream.config import Settings
from stream.core.codec import AvroCodec
from stream.core.records import Record
from tests.factories import raw_event
from tests.integration.helpers import topic_records, wait_until

#: The dead-letter topic's lowered record limit: above the stages' floor (64 KiB + 8 KiB), so a
#: restarted stage can still cut a letter to fit, and far below the letters made here.
SHRUNK_LIMIT = 100_000
#: Bytes of random base64 in a refused event's custom property (its letter keeps it whole).
PADDING = 250_000
#: A letter that fits the lowered limit alone (less the stages' 8 KiB margin), but not twice.
FITS_ALONE = 60_000
LETTERS = AvroCodec(schemas.load("dead_letter"))
ENRICHED = AvroCodec(schemas.load("capi_event"))


# -- the broker's refusals ------------------------------------------------------------------


def admin_client(bootstrap: str) -> AdminClient:
    # quiet: one kept alive by a failing test's traceback would log each lost node for good
    return AdminClient({"bootstrap.servers": bootstrap, "log_level": 0})


def create_topics(bootstrap: str, *names: str, config: dict[str, str] | None = None) -> None:
    """One partition each: offsets then name events, and the stage's order is the input's."""
    admin = admin_client(bootstrap)  # alive until its futures are done
    topics = [NewTopic(n, 1, 1, config=config or {}) for n in names]
    for future in admin.create_topics(topics).values():
        future.result(30)
    wait_until(lambda: exists(bootstrap, *names), 30, "the topics in the metadata")


def exists(bootstrap: str, *names: str) -> bool:
    topics = admin_client(bootstrap).list_topics(timeout=10).topics
    return all(name in topics and not topics[name].error for name in names)


def delete_topic(bootstrap: str, name: str) -> None:
    """Delete ``name`` and wait until the broker no longer lists it."""
    admin = admin_client(bootstrap)
    for future in admin.delete_topics([name]).values():
        future.result(30)
    wait_until(lambda: not exists(bootstrap, name), 30, f"{name} to be gone")


def alter_topic(bootstrap: str, topic: str, name: str, value: str | None) -> AdminClient:
    """Set the topic's config ``name`` (None: back to the cluster's default), as an operator
    changes a live topic; the admin client, still alive for a read of the result."""
    resource = ConfigResource(ResourceType.TOPIC, topic)
    op = AlterConfigOpType.SET if value is not None else AlterConfigOpType.DELETE
    resource.add_incremental_config(ConfigEntry(name, value or "", incremental_operation=op))
    admin = admin_client(bootstrap)
    for future in admin.incremental_alter_configs([resource]).values():
        future.result(30)
    return admin


def set_record_limit(bootstrap: str, topic: str, limit: int) -> None:
    """Set the topic's ``max.message.bytes`` and wait until the broker reports it."""
    admin = alter_topic(bootstrap, topic, "max.message.bytes", str(limit))
    resource = ConfigResource(ResourceType.TOPIC, topic)

    def applied() -> bool:
        entries = admin.describe_configs([resource])[resource].result(10)
        return bool(entries["max.message.bytes"].value == str(limit))

    wait_until(applied, 30, "the new max.message.bytes")


def padding(size: int = PADDING) -> str:
    """Incompressible text: lz4 must not bring a letter back under the lowered limit."""
    return base64.b64encode(os.urandom(size * 3 // 4)).decode()


# -- what the group committed, watched while the letter is refused --------------------------


def committed(bootstrap: str, group: str, topic: str) -> int:
    """The group's committed offset of partition 0 (0 when none; -1 when no answer)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "log_level": 0})
    try:
        (tp,) = consumer.committed([RdTopicPartition(topic, 0)], 10)
        return max(tp.offset, 0)
    except KafkaException:
        return -1
    finally:
        consumer.close()


@contextmanager
def commits_watched(bootstrap: str, group: str, topic: str) -> Iterator[list[int]]:
    """Sample the committed offset every 0.1 s while the block runs; yields the samples."""
    samples: list[int] = []
    done = threading.Event()
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "log_level": 0})

    def watch() -> None:
        while not done.is_set():
            try:
                (tp,) = consumer.committed([RdTopicPartition(topic, 0)], 5)
                samples.append(max(tp.offset, 0))
            except KafkaException:
                pass  # the coordinator did not answer this time
            done.wait(0.1)

    thread = threading.Thread(target=watch, name="commit-watch", daemon=True)
    thread.start()
    try:
        yield samples
    finally:
        done.set()
        thread.join(10)
        consumer.close()


def letters(settings: Settings) -> list[tuple[Record, dict[str, Any]]]:
    """Every dead letter in the topic now (read_committed), decoded."""
    return [
        (r, LETTERS.decode(r.value or b"")) for r in topic_records(settings, settings.topics.dlq)
    ]


def raw_items(
    codec: AvroCodec, ids: list[str], now: int, **overrides: Any
) -> list[tuple[bytes, bytes]]:
    return [
        (i.encode(), codec.encode(raw_event(event_id=i, event_time=now, **overrides))) for i in ids
    ]


def outputs_per_source(
    settings: Settings,
) -> tuple[Counter[int], list[tuple[Record, dict[str, Any]]]]:
    """How many outputs (enriched records and normalize letters) each raw offset has; every
    letter."""
    per_source: Counter[int] = Counter()
    for record in topic_records(settings, settings.topics.enriched):
        per_source[ENRICHED.decode(record.value or b"")["source"]["offset"]] += 1
    dead = letters(settings)
    for _, letter in dead:
        if letter["stage"] == "normalize":
            per_source[letter["source"]["offset"]] += 1
    return per_source, dead
