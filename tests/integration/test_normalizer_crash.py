"""The normalize stage survives kill -9: exactly one output per raw record (read_committed)."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from stream import schemas
from stream.core.codec import AvroCodec
from tests.factories import raw_event
from tests.integration.helpers import (
    committed_total,
    output_sources,
    produce,
    read_all,
    stage_names,
    stage_settings,
    start_stage,
    started_lines,
    wait_until,
)

pytestmark = pytest.mark.integration

EVENTS = 12000
PARTITIONS = 3


def _names(unique: Callable[[str], str]) -> dict[str, str]:
    return stage_names(unique)


def test_kill_9_repeatedly_leaves_exactly_one_output_per_raw_record(
    kafka_bootstrap: str,
    unique: Callable[[str], str],
    make_topics: Callable[..., None],
    tmp_path: Path,
) -> None:
    """Killing the stage with SIGKILL mid-stream, then restarting it, loses and repeats nothing."""
    names = _names(unique)
    make_topics(names["raw"], names["enriched"], names["dlq"], partitions=PARTITIONS)
    settings = stage_settings(
        kafka_bootstrap, names, normalizer={"poll_batch": 100, "default_pixel_id": "111"}
    )
    codec = AvroCodec(schemas.load("conversion_event"))
    now = int(time.time())
    # every tenth record is garbage and must end as a dead letter, the rest as enriched events
    items = [
        (f"k{i}".encode(), b"\xff\x00garbage" if i % 10 == 0 else codec.encode(
            raw_event(event_id=f"e{i}", event_time=now - 60, pixel_id=None)))
        for i in range(EVENTS)
    ]  # fmt: skip
    produce(kafka_bootstrap, names["raw"], items)

    log = tmp_path / "normalizer.log"
    group, raw = names["normalizer_group"], names["raw"]
    kills = 0
    for _ in range(4):
        before = max(committed_total(kafka_bootstrap, group, raw, PARTITIONS), 0)
        proc = start_stage(["normalize"], settings, log)
        # kill it hard only once it is mid-stream: it has committed at least one more batch
        wait_until(
            lambda b=before: committed_total(kafka_bootstrap, group, raw, PARTITIONS) > b,
            90,
            "progress",
        )
        if (
            committed_total(kafka_bootstrap, group, raw, PARTITIONS) < EVENTS
            and proc.poll() is None
        ):
            os.kill(proc.pid, signal.SIGKILL)
            kills += 1
        elif proc.poll() is None:
            proc.send_signal(signal.SIGTERM)  # it finished everything before the kill
        proc.wait(60)
    starts = started_lines(log)
    final = start_stage(["normalize"], settings, log)
    try:
        # its SIGTERM must come after its handler is in: the last run may have left nothing to
        # do, and a stop signal during the start ends the process with -15 (as it should)
        wait_until(lambda: started_lines(log) > starts, 60, "the final stage's start")
        # dead members keep their partitions until their session times out; wait on the outcome
        wait_until(
            lambda: committed_total(kafka_bootstrap, group, raw, PARTITIONS) >= EVENTS,
            180,
            "the rest",
        )
    finally:
        final.send_signal(signal.SIGTERM)
        assert final.wait(60) == 0, log.read_text()[-3000:]
    assert kills >= 3

    enriched = read_all(kafka_bootstrap, names["enriched"])
    dead = read_all(kafka_bootstrap, names["dlq"])
    sources, reasons = output_sources(enriched, dead)
    assert all(reason.startswith("decode_") for reason in reasons)

    assert len(enriched) == EVENTS - EVENTS // 10
    assert len(dead) == EVENTS // 10
    assert max(sources.values()) == 1  # no raw record has two outputs
    assert sum(sources.values()) == EVENTS  # and none has zero
