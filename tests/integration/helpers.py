"""Helpers for integration tests: produce raw events, read topics back, run stages as processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, KafkaException, Producer
from confluent_kafka import TopicPartition as RdTopicPartition
from pydantic import SecretStr

from stream import schemas
from stream.config import Settings
from stream.core.codec import AvroCodec
from stream.core.records import Record
from stream.kafka.records import to_record

ROOT = Path(__file__).resolve().parents[2]


def stage_names(unique: Callable[[str], str]) -> dict[str, str]:
    """Topic and group names of both stages, unique to one test."""
    return {
        "raw": unique("raw"), "enriched": unique("enr"), "dlq": unique("dlq"),
        "normalizer_group": unique("norm"), "deliverer_group": unique("deliv"),
    }  # fmt: skip


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> float:
    """Poll ``condition`` until it holds; the monotonic time it did. Fails after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)
    return time.monotonic()


def stage_settings(bootstrap: str, names: Mapping[str, str], **extra: Any) -> Settings:
    """Settings for one test: its own topics and groups, short timeouts."""
    return Settings(
        bootstrap_servers=bootstrap,
        topics={"raw": names["raw"], "enriched": names["enriched"], "dlq": names["dlq"]},
        normalizer={
            "group_id": names["normalizer_group"],
            "transactional_id": names["normalizer_group"],
            **extra.pop("normalizer", {}),
        },
        deliverer={"group_id": names["deliverer_group"], **extra.pop("deliverer", {})},
        consumer={"session.timeout.ms": 10_000, "heartbeat.interval.ms": 1000},
        **extra,
    )


def stage_env(settings: Settings) -> dict[str, str]:
    """The environment that gives a stage process the same settings (as CAPI_STREAM_ vars)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CAPI_STREAM_")}
    dump = _reveal(settings.model_dump(exclude_defaults=True))
    for key, value in dump.items():
        env[f"CAPI_STREAM_{key.upper()}"] = value if isinstance(value, str) else _json(value)
    return env


def _reveal(value: Any) -> Any:
    """The dump with secrets in clear text: the child process must get the real token."""
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    if isinstance(value, dict):
        return {k: _reveal(v) for k, v in value.items()}
    if isinstance(value, Path):
        return str(value)
    return value


def _json(value: Any) -> str:
    import json

    return json.dumps(value)


def produce(bootstrap: str, topic: str, items: Iterable[tuple[bytes | None, bytes]]) -> int:
    """Produce (key, value) pairs idempotently and wait for all of them."""
    producer = Producer(
        {"bootstrap.servers": bootstrap, "enable.idempotence": True, "linger.ms": 5}
    )
    count = 0
    for key, value in items:
        producer.produce(topic, key=key, value=value)
        count += 1
        if count % 1000 == 0:
            producer.poll(0)
    assert producer.flush(60) == 0
    return count


def read_all(bootstrap: str, topic: str, expected: int | None = None, idle_s: float = 3.0,
             timeout_s: float = 120.0) -> list[Record]:  # fmt: skip
    """Every committed record of ``topic`` (read_committed), waiting for ``expected`` of them."""
    consumer = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": f"reader-{time.monotonic_ns()}",
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
        "isolation.level": "read_committed",
    })  # fmt: skip
    consumer.subscribe([topic])
    records: list[Record] = []
    deadline = time.monotonic() + timeout_s
    last = time.monotonic()
    assigned = False
    try:
        while time.monotonic() < deadline:
            msgs = consumer.consume(500, 0.5)
            got = [to_record(m) for m in msgs if m.error() is None]
            records.extend(got)
            if got:
                last = time.monotonic()
            if not assigned:  # idle counts from the group's assignment, not from the join's start
                assigned = bool(consumer.assignment())
                last = time.monotonic()
            reached = expected is None or len(records) >= expected
            if reached and time.monotonic() - last > idle_s:
                break
    finally:
        consumer.close()
    return records


class GroupOffsets:
    """Reads ``group``'s committed next_offset per partition of ``topic``, again on each call.

    A consumer of the group that never subscribes (so never joins it) reads them, not the admin
    client: librdkafka's ListConsumerGroupOffsets crashes the process when the broker answers
    NOT_COORDINATOR, as a coordinator that is loading or moving does (librdkafka issue #5040).
    """

    def __init__(self, bootstrap: str, group: str, topic: str, partitions: int) -> None:
        self._consumer = Consumer(
            {"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False}
        )
        self._tps = [RdTopicPartition(topic, p) for p in range(partitions)]

    def __call__(self) -> dict[int, int] | None:
        """The partitions with a commit and their offsets; None while the group's coordinator
        does not answer."""
        try:
            parts = self._consumer.committed(self._tps, 10)
        except KafkaException:
            return None
        return {tp.partition: tp.offset for tp in parts if tp.offset >= 0}

    def close(self) -> None:
        self._consumer.close()


def group_offsets(bootstrap: str, group: str, topic: str, partitions: int) -> dict[int, int] | None:
    """One read of :class:`GroupOffsets` (a consumer made and closed for it)."""
    offsets = GroupOffsets(bootstrap, group, topic, partitions)
    try:
        return offsets()
    finally:
        offsets.close()


def committed_total(bootstrap: str, group: str, topic: str, partitions: int) -> int:
    """The group's committed offsets summed over ``topic``'s partitions; -1 while its
    coordinator does not answer (a rebalance, a broker starting), which no wait takes for 0."""
    got = group_offsets(bootstrap, group, topic, partitions)
    return -1 if got is None else sum(got.values())


def started_lines(log: Path) -> int:
    """How many stage processes logged ``started`` into ``log`` (their signal handlers are in
    by then: a stop signal before that ends a process with -SIGTERM, as it should)."""
    return log.read_text(errors="replace").count('"event":"started"') if log.exists() else 0


def stop_code(code: int, log: Path, starts_before: int) -> int:
    """``code`` of a stage process stopped with SIGTERM, as 0 when it ended by the signal's
    default action before it logged its start (``starts_before``: the count when it began):
    a supervisor restarted it just before the stop, and it had nothing to drain yet."""
    if code == -signal.SIGTERM and started_lines(log) == starts_before:
        return 0
    return code


def start_stage(command: list[str], settings: Settings, log: Path) -> subprocess.Popen[bytes]:
    """Start ``capi-stream COMMAND`` as its own process with ``settings`` in its environment."""
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "stream.cli", *command],
            env=stage_env(settings), cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip


def enriched_value(
    event_id: str, pixel_id: str, now: float, *, version: int = 2, **raw_overrides: Any
) -> bytes:
    """One enriched record (schemaless Avro) as the normalize stage writes it.

    ``version=1`` writes the previous record (``capi_event.v1.avsc``), as a normalizer before
    issue 11 did: a backlog of those must still drain.
    """
    from stream.core.envelope import envelope
    from stream.core.normalize import Normalized, normalize_event
    from tests.factories import raw_event

    result = normalize_event(
        raw_event(event_id=event_id, pixel_id=pixel_id, event_time=int(now) - 60, **raw_overrides),
        now,
    )
    assert isinstance(result, Normalized), result
    common = {
        "pixel_id": result.pixel_id, "event_id": result.event_id,
        "test_event_code": result.test_event_code, "warnings": list(result.warnings),
    }  # fmt: skip
    if version == 1:
        source = {"topic": "raw", "partition": 0, "offset": 0}
        return _ENRICHED_V1.encode(
            {"event": result.event, **common, "source": source, "normalized_at": int(now * 1000)}
        )
    return _ENRICHED.encode(
        envelope(result.event, **common, source=("raw", 0, 0), normalized_at_ms=int(now * 1000))
    )


def _enriched_codec(name: Any) -> Any:
    from stream import schemas
    from stream.core.codec import AvroCodec

    return AvroCodec(schemas.load(name))


_ENRICHED = _enriched_codec("capi_event")
_ENRICHED_V1 = _enriched_codec("capi_event.v1")


def run_cli(monkeypatch: Any, settings: Settings, *argv: str) -> int:
    """Run `capi-stream ARGV` in this process with ``settings`` as its only environment."""
    from stream import cli

    for key in [k for k in os.environ if k.startswith("CAPI_STREAM_")]:
        monkeypatch.delenv(key)
    for key, value in stage_env(settings).items():
        if key.startswith("CAPI_STREAM_"):
            monkeypatch.setenv(key, value)
    return cli.main(list(argv))


def topic_records(settings: Settings, topic: str) -> list[Record]:
    """Every record the topic holds now (read by offset range, no consumer group)."""
    from stream.kafka.offsets_admin import OffsetsAdmin
    from stream.kafka.range_reader import read_ranges

    return list(read_ranges(settings, topic, OffsetsAdmin(settings).ranges(topic)))


def output_sources(
    enriched: Iterable[Record], dead: Iterable[Record]
) -> tuple[Counter[tuple[int, int]], list[str]]:
    """How many outputs each raw (partition, offset) has, and the dead letters' reasons.

    Exactly once means every count is 1 and the counts add up to the raw records.
    """
    enriched_codec = AvroCodec(schemas.load("capi_event"))
    dlq_codec = AvroCodec(schemas.load("dead_letter"))
    sources: Counter[tuple[int, int]] = Counter()
    reasons = []
    for rec in enriched:
        src = enriched_codec.decode(rec.value or b"")["source"]
        sources[(src["partition"], src["offset"])] += 1
    for rec in dead:
        letter = dlq_codec.decode(rec.value or b"")
        reasons.append(letter["reason"])
        sources[(letter["source"]["partition"], letter["source"]["offset"])] += 1
    return sources, reasons
