"""Read fixed offset ranges of a topic once, outside any consumer group's bookkeeping.

The reader assigns partitions itself and never commits, so it disturbs no stage. It stops when
every partition reached its range's end (or the partition's end, whichever comes first): the
ends are taken before reading, so records written meanwhile (a replay's own copies) are not read.

Progress is told in offsets passed (``done``), which is what a range's size is known in: a range
of a transactional topic holds a commit marker after each transaction, an offset but no record,
so counting records against the range's offsets would end short of 100 %. Each partition counts
as passed in full when it ends, markers included.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator, Mapping

from confluent_kafka import Consumer, KafkaException, Message, TopicPartition
from confluent_kafka import KafkaError as RdKafkaError

from stream.config import Settings
from stream.core.errors import KafkaError
from stream.core.records import Record
from stream.kafka.errors import translate
from stream.kafka.records import to_record

#: ``partition -> (start, end)``: offsets ``start <= offset < end``.
Ranges = Mapping[int, tuple[int, int]]
#: Messages asked of librdkafka at a time: the hand-off to Python is per batch, not per record.
BATCH = 1000
_EOF = RdKafkaError._PARTITION_EOF


def read_ranges(
    settings: Settings,
    topic: str,
    ranges: Ranges,
    *,
    stall_timeout_s: float = 60.0,
    on_batch: Callable[[int, int], None] | None = None,
) -> Iterator[Record]:
    """Every committed record of ``topic`` in ``ranges``, partition by partition interleaved.

    ``on_batch(done, count)`` hears after each batch the offsets passed and the records read so
    far. Raises :class:`KafkaError` when no partition advances for ``stall_timeout_s``.
    """
    count = 0
    for batch, done in read_batches(settings, topic, ranges, stall_timeout_s=stall_timeout_s):
        for msg in batch:
            yield to_record(msg)
        count += len(batch)
        if on_batch is not None:
            on_batch(done, count)


def read_batches(
    settings: Settings, topic: str, ranges: Ranges, *, stall_timeout_s: float = 60.0
) -> Iterator[tuple[list[Message], int]]:
    """The records of ``ranges`` as librdkafka hands them over, each batch with the offsets
    passed so far over all partitions (ending at the ranges' total size). For the bulk copiers
    of this package, which turn each message into what they produce without a record between.
    """
    reader = RangeReader(settings)
    try:
        yield from reader.batches(topic, ranges, stall_timeout_s=stall_timeout_s)
    finally:
        reader.close()


class RangeReader:
    """A consumer that reads ranges without a group: made before the ranges are known, so its
    connection is set up while the caller looks them up (a one-off tool's fixed cost)."""

    def __init__(self, settings: Settings) -> None:
        # a throwaway group id: librdkafka wants one, and nothing is ever committed under it
        config = settings.consumer_config(
            f"capi-stream-reader-{uuid.uuid4().hex[:12]}", **{"enable.partition.eof": True}
        )
        self._consumer = Consumer(dict(config))

    def batches(
        self, topic: str, ranges: Ranges, *, stall_timeout_s: float = 60.0
    ) -> Iterator[tuple[list[Message], int]]:
        """See :func:`read_batches`."""
        todo = {p: end for p, (start, end) in ranges.items() if start < end}
        if not todo:
            return
        starts = {p: ranges[p][0] for p in todo}
        position = dict(starts)  # the next offset per partition
        total = sum(end - starts[p] for p, end in todo.items())
        consumer = self._consumer
        consumer.assign([TopicPartition(topic, p, starts[p]) for p in todo])
        last_progress = time.monotonic()
        while todo:
            try:
                # consume() waits its whole timeout for a batch it cannot fill (the end of a
                # partition): a short one keeps the last batch of a range from idling
                messages = consumer.consume(BATCH, 0.1)
            except KafkaException as exc:
                raise translate(exc, f"reading {topic}") from exc
            if messages:
                last_progress = time.monotonic()
            elif time.monotonic() - last_progress > stall_timeout_s:
                raise KafkaError(f"reading {topic}: no progress for {stall_timeout_s:.0f}s")
            batch = _in_range(topic, messages, todo, position)
            done = total - sum(end - position[p] for p, end in todo.items())
            if batch or messages:
                yield batch, done
        consumer.unassign()

    def close(self) -> None:
        """Release the consumer (it never joined a group: nothing to leave or commit)."""
        self._consumer.close()


def _in_range(
    topic: str, messages: list[Message], todo: dict[int, int], position: dict[int, int]
) -> list[Message]:
    """The messages of ``todo``'s ranges; partitions that ended leave ``todo``."""
    batch = []
    for msg in messages:
        partition = msg.partition() or 0
        err = msg.error()
        if err is not None:
            if err.code() != _EOF:
                raise KafkaError(f"reading {topic}: {err.name()}: {err.str()}")
            # the partition's end: records aborted or compacted away left a gap
            todo.pop(partition, None)
            continue
        end = todo.get(partition)
        offset = msg.offset() or 0
        if end is None or offset >= end:
            todo.pop(partition, None)
            continue
        batch.append(msg)
        position[partition] = offset + 1
        if offset + 1 >= end:
            todo.pop(partition, None)
    return batch
