"""One poll batch as columns: what the deliver stage reads of each record, made once per poll.

A stage that keeps every record until Meta answers pays for each object it makes per record,
in time and in the collector's work. The deliver stage reads only a record's partition, offset,
value and timestamp on its way to Meta; the whole :class:`~stream.core.records.Record` is
needed only for a dead letter. So the consumer hands over a batch as columns (a list per field,
each built by one comprehension), each record's source (the consumer's own message, opaque
here) and a way to make the full record of a source on demand::

    polled = consumer.poll_batch(1000, 0.05)
    polled.offsets[i], polled.values[i]      # the hot path
    polled.record_of(polled.sources[i])      # a dead letter: the record, headers and all

An event keeps its own source, never the batch: a batch with one event still owed (a halted
lane's) would otherwise keep all its records in memory, and the stage's memory bound is per
pending event.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from stream.core.records import Record


@dataclass(frozen=True, slots=True)
class Polled:
    """The records of one poll, column by column (all columns have one entry per record)."""

    topics: Sequence[str]
    partitions: Sequence[int]
    offsets: Sequence[int]
    values: Sequence[bytes | None]
    timestamps_ms: Sequence[int | None]
    #: what each record was made from (opaque here: the consumer's message)
    sources: Sequence[object]
    #: the full record of a source (made on demand: dead letters only)
    record_of: Callable[[object], Record]
    #: how long the poll waited for these records (up to its timeout): the first of them may
    #: have been fetched that long before the poll returned, so its window counts from then
    waited_s: float = 0.0

    def __len__(self) -> int:
        return len(self.offsets)

    @classmethod
    def of(cls, records: Sequence[Record]) -> Polled:
        """The columns of records already made (tests, tools)."""
        kept = tuple(records)
        return cls(
            topics=[r.topic for r in kept], partitions=[r.partition for r in kept],
            offsets=[r.offset for r in kept], values=[r.value for r in kept],
            timestamps_ms=[r.timestamp_ms for r in kept], sources=kept, record_of=_itself,
        )  # fmt: skip


def _itself(source: object) -> Record:
    if not isinstance(source, Record):
        raise TypeError(f"not a Record: {type(source).__name__}")
    return source
