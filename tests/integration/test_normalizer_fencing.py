"""Kafka's fatal-error rule in the normalizer: a fenced instance stops, the newer one carries on.

Two instances with the same worker slot share a transactional id (a zombie and its replacement,
as after a network partition). The newer one's ``init_transactions`` fences the older one, whose
next transactional call fails with a fatal error: it must leave its loop with that error (the
CLI then exits non-zero) instead of going on, and nothing may be lost or doubled.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest

from stream import schemas
from stream.core.codec import AvroCodec
from stream.core.errors import KafkaError
from stream.normalizer import Normalizer
from stream.watchdog import Watchdog
from tests.factories import raw_event
from tests.integration.helpers import (
    committed_total,
    output_sources,
    produce,
    read_all,
    stage_names,
    stage_settings,
    wait_until,
)

pytestmark = pytest.mark.integration

EVENTS = 10_000
PARTITIONS = 3


def test_a_fenced_normalizer_stops_and_its_replacement_loses_and_doubles_nothing(
    kafka_bootstrap: str, unique: Callable[[str], str], make_topics: Callable[..., None]
) -> None:
    """The older instance ends with a fatal KafkaError; one output per raw record all the same."""
    names = stage_names(unique)
    make_topics(names["raw"], names["enriched"], names["dlq"], partitions=PARTITIONS)
    settings = stage_settings(
        kafka_bootstrap, names, normalizer={"poll_batch": 20, "default_pixel_id": "111"}
    )
    codec = AvroCodec(schemas.load("conversion_event"))
    now = int(time.time())
    produce(kafka_bootstrap, names["raw"], [
        (f"k{i}".encode(), b"\xff\x00garbage" if i % 10 == 0 else codec.encode(
            raw_event(event_id=f"f{i}", event_time=now - 60, pixel_id=None)))
        for i in range(EVENTS)
    ])  # fmt: skip
    group, raw = names["normalizer_group"], names["raw"]
    fired: list[int] = []  # a watchdog expiry would end pytest: record it instead
    outcomes: dict[str, object] = {}

    def run(name: str, stage: Normalizer) -> None:
        try:
            outcomes[name] = stage.run()
        except KafkaError as exc:
            outcomes[name] = exc

    older = Normalizer(settings, watchdog=Watchdog(exit=fired.append))
    newer = Normalizer(settings, watchdog=Watchdog(exit=fired.append))  # the same worker slot
    first = threading.Thread(target=run, args=("older", older), daemon=True)
    second = threading.Thread(target=run, args=("newer", newer), daemon=True)
    first.start()
    try:
        wait_until(
            lambda: committed_total(kafka_bootstrap, group, raw, PARTITIONS) > 0,
            60,
            "older's progress",
        )
        assert (
            committed_total(kafka_bootstrap, group, raw, PARTITIONS) < EVENTS
        )  # fenced mid-stream
        second.start()
        first.join(60)
        assert not first.is_alive(), "the fenced instance went on"
        wait_until(
            lambda: committed_total(kafka_bootstrap, group, raw, PARTITIONS) >= EVENTS,
            120,
            "the rest",
        )
    finally:
        older.stop()
        newer.stop()
        first.join(60)
        second.join(60)
    error = outcomes["older"]
    assert isinstance(error, KafkaError), error
    assert error.fatal, error
    assert fired == []

    enriched = read_all(kafka_bootstrap, names["enriched"], expected=EVENTS - EVENTS // 10)
    dead = read_all(kafka_bootstrap, names["dlq"], expected=EVENTS // 10)
    sources, _ = output_sources(enriched, dead)
    assert max(sources.values()) == 1  # no raw record has two outputs
    assert sum(sources.values()) == EVENTS  # and none has none
