"""Consumer lag and commit lag, from offsets: what the stages export as gauges.

**Consumer lag** of a partition is the records the broker holds that this consumer can still
read: ``end - position``, where ``position`` is the consumer's next offset to read (librdkafka
moves it past transaction markers) and ``end`` is what it can read up to: the high watermark
for ``read_uncommitted``, the last stable offset (LSO) for ``read_committed``, since records of
a transaction still open cannot be read yet. A transactional topic ends with a commit marker
(a control record: it takes an offset but is never handed to the application), so a lag taken
from the last record read (``end - (last offset + 1)``) stays at one per partition forever.
Example, one partition written by two transactions of five records::

    offsets 0-4 records, 5 marker, 6-10 records, 11 marker; high watermark 12
    last record read 10  →  position 12  →  lag 0     (not 12 - 11 = 1)

**Commit lag** is the records read but not covered by a committed offset: ``read_end -
committed`` per partition, where ``read_end`` is the last read record's offset + 1.
"""

from __future__ import annotations

from collections.abc import Mapping

from stream.core.records import TopicPartition


def consumer_lag(
    ends: Mapping[TopicPartition, int], positions: Mapping[TopicPartition, int]
) -> dict[TopicPartition, int]:
    """Records left to read per partition that has both an end and a position.

    A position past the end (an end seen before the latest fetch) counts 0, never negative;
    a partition without a position yet (nothing fetched) is left out rather than guessed.

    >>> tp = TopicPartition("enriched", 0)
    >>> consumer_lag({tp: 12}, {tp: 12})[tp], consumer_lag({tp: 12}, {tp: 7})[tp]
    (0, 5)
    """
    return {
        tp: max(end - positions[tp], 0)
        for tp, end in ends.items()
        if end >= 0 and positions.get(tp, -1) >= 0
    }


def commit_lag(
    read_ends: Mapping[TopicPartition, int], committed: Mapping[TopicPartition, int]
) -> int:
    """Records read and not yet committed, summed; a partition with no commit yet counts from
    nothing committed as 0 (what was read before the first commit is not known here)."""
    return sum(max(end - committed.get(tp, end), 0) for tp, end in read_ends.items())
