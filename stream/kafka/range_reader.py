"""Read fixed offset ranges of a topic once, outside any consumer group's bookkeeping.

The reader assigns partitions itself and never commits, so it disturbs no stage. It stops when
every partition reached its range's end (or the partition's end, whichever comes first): the
ends are taken before reading, so records written meanwhile (a replay's own copies) are not read.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator, Mapping

from confluent_kafka import Consumer, KafkaException, TopicPartition
from confluent_kafka import KafkaError as RdKafkaError

from stream.config import Settings
from stream.core.errors import KafkaError
from stream.core.records import Record
from stream.kafka.errors import translate
from stream.kafka.records import to_record

#: ``partition -> (start, end)``: offsets ``start <= offset < end``.
Ranges = Mapping[int, tuple[int, int]]


def read_ranges(
    settings: Settings, topic: str, ranges: Ranges, *, stall_timeout_s: float = 60.0
) -> Iterator[Record]:
    """Every committed record of ``topic`` in ``ranges``, partition by partition interleaved.

    Raises :class:`KafkaError` when no partition advances for ``stall_timeout_s``.
    """
    todo = {p: end for p, (start, end) in ranges.items() if start < end}
    if not todo:
        return
    # a throwaway group id: librdkafka wants one, and nothing is ever committed under it
    config = settings.consumer_config(
        f"capi-stream-reader-{uuid.uuid4().hex[:12]}", **{"enable.partition.eof": True}
    )
    consumer = Consumer(dict(config))
    try:
        consumer.assign([TopicPartition(topic, p, ranges[p][0]) for p in todo])
        last_progress = time.monotonic()
        while todo:
            try:
                # consume() waits its whole timeout for a batch it cannot fill (the end of a
                # partition): a short one keeps the last batch of a range from idling
                messages = consumer.consume(500, 0.1)
            except KafkaException as exc:
                raise translate(exc, f"reading {topic}") from exc
            if messages:
                last_progress = time.monotonic()
            elif time.monotonic() - last_progress > stall_timeout_s:
                raise KafkaError(f"reading {topic}: no progress for {stall_timeout_s:.0f}s")
            for msg in messages:
                partition = msg.partition() or 0
                err = msg.error()
                if err is not None:
                    if err.code() != RdKafkaError._PARTITION_EOF:
                        raise KafkaError(f"reading {topic}: {err.name()}: {err.str()}")
                    # the partition's end: records aborted or compacted away left a gap
                    todo.pop(partition, None)
                    continue
                end = todo.get(partition)
                offset = msg.offset() or 0
                if end is None or offset >= end:
                    todo.pop(partition, None)
                    continue
                yield to_record(msg)
                if offset + 1 >= end:
                    todo.pop(partition, None)
    finally:
        consumer.close()
