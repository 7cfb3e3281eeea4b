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
from stream.kafka.offsets_admin import one_off
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
    """A consumer that reads ranges without a group.

    The consumer is made when the first range is read, not before: one made early and left
    without an assignment for a moment often starts fetching only about a second after its
    assignment (measured with librdkafka 2.16), longer than a whole copy of 50,000 records.
    """

    def __init__(self, settings: Settings) -> None:
        # a throwaway group id: librdkafka wants one, and nothing is ever committed under it
        self._config = dict(one_off(settings).consumer_config(
            f"capi-stream-reader-{uuid.uuid4().hex[:12]}", **{"enable.partition.eof": True}
        ))  # fmt: skip
        self._consumer: Consumer | None = None

    def batches(
        self, topic: str, ranges: Ranges, *, stall_timeout_s: float = 60.0
    ) -> Iterator[tuple[list[Message], int]]:
        """See :func:`read_batches`."""
        for messages, cursor in self.raw_batches(topic, ranges, stall_timeout_s=stall_timeout_s):
            batch = []
            for msg in messages:
                if cursor.take(msg):
                    batch.append(msg)
            yield batch, cursor.done()

    def raw_batches(
        self, topic: str, ranges: Ranges, *, stall_timeout_s: float = 60.0
    ) -> Iterator[tuple[list[Message], Cursor]]:
        """Each batch as consumed, with the cursor that says which of its messages belong to
        the ranges (:meth:`Cursor.take`); ends once every partition reached its range's end."""
        cursor = Cursor(topic, ranges)
        if not cursor.todo:
            return
        if self._consumer is None:
            self._consumer = Consumer(self._config)
        consumer = self._consumer
        consumer.assign([TopicPartition(topic, p, off) for p, off in cursor.position.items()])
        last_progress = time.monotonic()
        while cursor.todo:
            try:
                # consume() waits its whole timeout for a batch it cannot fill (the end of a
                # partition): a short one keeps the last batch of a range from idling
                messages = consumer.consume(BATCH, 0.1)
            except KafkaException as exc:
                raise translate(exc, f"reading {topic}") from exc
            if messages:
                last_progress = time.monotonic()
                yield messages, cursor
            elif time.monotonic() - last_progress > stall_timeout_s:
                raise KafkaError(f"reading {topic}: no progress for {stall_timeout_s:.0f}s")
        consumer.unassign()

    def close(self) -> None:
        """Release the consumer (it never joined a group: nothing to leave or commit)."""
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None


class Cursor:
    """Where a range read stands: the partitions still to read with their range's end
    (``todo``), the next offset of each (``position``) and the offsets passed (:meth:`done`)."""

    def __init__(self, topic: str, ranges: Ranges) -> None:
        self.topic = topic
        self.todo = {p: end for p, (start, end) in ranges.items() if start < end}
        self.position = {p: ranges[p][0] for p in self.todo}
        self.total = sum(end - self.position[p] for p, end in self.todo.items())

    def take(self, msg: Message) -> bool:
        """Whether ``msg`` is a record of the ranges (then the position moves past it); the
        end of a partition, or a record past its range, ends that partition's part."""
        partition, offset = msg.partition() or 0, msg.offset() or 0
        end = self.todo.get(partition, -1)
        err = msg.error()
        if err is not None or offset >= end:
            self.leave(partition, err)
            return False
        self.position[partition] = offset + 1
        if offset + 1 == end:
            del self.todo[partition]
        return True

    def leave(self, partition: int, err: RdKafkaError | None) -> None:
        """The partition's part is over: its end was reached (``_PARTITION_EOF``: records
        aborted or compacted away left a gap before the range's end) or passed; any other
        error is raised."""
        if err is not None and err.code() != _EOF:
            raise KafkaError(f"reading {self.topic}: {err.name()}: {err.str()}")
        self.todo.pop(partition, None)

    def done(self) -> int:
        """Offsets passed over all partitions: the ranges' total once every one ended."""
        return self.total - sum(end - self.position[p] for p, end in self.todo.items())
