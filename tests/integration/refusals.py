"""What the refusal tests share: a live topic changed as an operator changes it, and the
group's commits watched while a stage meets the refusal.

Every refused record is made of random base64 (:func:`padding`) so that lz4 cannot shrink the
batch under a lowered limit.
"""

from __future__ import annotations

import base64
import os
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
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
from tests.factories import custom_data, raw_event
from tests.integration.chaos import Supervised, wait_for
from tests.integration.helpers import (
    produce,
    stage_names,
    stage_settings,
    topic_records,
    wait_until,
)

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


# -- the normalize stage past a record a shrunk topic refuses ---------------------------------


@dataclass(frozen=True)
class PastRefusal:
    """What a normalize stage left after :func:`normalize_past_a_shrunk_topic`."""

    settings: Settings
    per_source: Counter[int]  # outputs (enriched records and letters) per raw offset
    dead: list[tuple[Record, dict[str, Any]]]
    exits: list[int]  # the stage's own exits, each followed by its supervisor's restart


def normalize_past_a_shrunk_topic(
    bootstrap: str,
    unique: Callable[[str], str],
    log: Path,
    *,
    processing: str,
    shrink: str,
    **big: Any,
) -> PastRefusal:
    """The normalize stage (under a supervisor that restarts it when it exits) meets a record
    the broker refuses: after five events are committed, topic ``shrink`` ("enriched" or
    "dlq") takes at most :data:`SHRUNK_LIMIT` bytes; then six valid events arrive with, at
    offset 8, one of 250 KB (incompressible) with the raw fields ``big``. Asserted here: the
    stage commits nothing past offset 8 before its output is written, gets past it within
    40 s (a refused batch is retried for call_timeout_s, 6 s, then the restarted process must
    import, join and write; a stall never gets past), and then commits to the end (offset 12)."""
    names = stage_names(unique)
    create_topics(bootstrap, names["raw"], names["enriched"], names["dlq"])
    settings = stage_settings(
        bootstrap, names,
        normalizer={"processing": processing, "poll_timeout_s": 0.2, "call_timeout_s": 6},
    )  # fmt: skip
    codec = AvroCodec(schemas.load("conversion_event"))
    now = int(time.time())
    group, raw = names["normalizer_group"], names["raw"]
    stage = Supervised(["normalize"], settings, log)
    stage.start()
    try:
        produce(bootstrap, raw, raw_items(codec, [f"a{i}" for i in range(5)], now))
        wait_for(lambda: committed(bootstrap, group, raw) == 5, 60, "the first batch",
                 tick=stage.ensure)  # fmt: skip
        set_record_limit(bootstrap, names[shrink], SHRUNK_LIMIT)
        padded = custom_data(custom_properties={"pad": padding()})
        items = [*raw_items(codec, ["b0", "b1", "b2"], now),
                 *raw_items(codec, ["big"], now, custom_data=padded, **big),
                 *raw_items(codec, ["b3", "b4", "b5"], now)]  # fmt: skip
        with commits_watched(bootstrap, group, raw) as seen:
            produce(bootstrap, raw, items)  # offsets 5..11, the refused one at 8
            wait_for(lambda: any(o > 8 for o in seen) or bool(letters(settings)), 40,
                     "the stage to get past the refused record", tick=stage.ensure)  # fmt: skip
            assert not any(o > 8 for o in seen) or letters(settings), "committed past it"
        wait_for(lambda: committed(bootstrap, group, raw) == 12, 20, "a commit to the end",
                 tick=stage.ensure)  # fmt: skip
    finally:
        stage.stop()
    per_source, dead = outputs_per_source(settings)
    return PastRefusal(settings, per_source, dead, list(stage.exits))
