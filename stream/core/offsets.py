"""Per-partition offset bookkeeping: which offsets may be committed.

Batches complete out of order (many lanes, many requests in flight), but Kafka commits one
number per partition, ``next_offset``, meaning "everything below this is done". The tracker
advances that watermark only over a run of done offsets, so a crash never skips an event that
was neither delivered nor dead-lettered (docs/design.md, "Commit rule").

"Contiguous" is over the offsets we *tracked*, not over the integers: Kafka leaves gaps
(transaction markers, compaction), and an offset we never saw can never be acked.

Worked example, one partition::

    track 5, 6, 9, 10           pending deque [5, 6, 9, 10]
    ack 6                       5 is not done: nothing committable
    ack 5                       pop 5, 6 -> next_offset 7
    ack 10                      9 is not done: next_offset stays 7
    ack 9                       pop 9, 10 -> next_offset 11 (7 and 8 never existed)

Each offset enters the deque once and leaves it once, so every operation is O(1) amortized.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping

from stream.core.errors import OffsetStateError
from stream.core.records import TopicPartition

# One partition type for the whole project: two look-alike frozen dataclasses would never
# compare equal, and a dict keyed by one would silently miss lookups made with the other.
__all__ = ["OffsetTracker", "TopicPartition"]


class _Partition:
    """The watermark of one partition; mutable, private to the tracker."""

    __slots__ = ("committed", "done", "last_tracked", "next_offset", "pending", "unacked")

    def __init__(self) -> None:
        self.pending: deque[int] = deque()  # tracked, in order, not yet behind the watermark
        self.unacked: set[int] = set()  # tracked and not yet acked
        self.done: set[int] = set()  # acked but still in `pending` (waiting on an older one)
        self.last_tracked = -1
        self.next_offset: int | None = None  # last contiguous done offset + 1
        self.committed: int | None = None  # the next_offset Kafka last confirmed


class OffsetTracker:
    """Tracks consumed offsets per partition and yields the committable ``next_offset``.

    Raises :class:`OffsetStateError` on states a correct caller cannot produce: acking an
    offset that is not tracked (or acking it twice), tracking out of order, committing past
    the watermark.
    """

    __slots__ = ("_parts", "_pending_total")

    def __init__(self) -> None:
        self._parts: dict[TopicPartition, _Partition] = {}
        self._pending_total = 0

    def track(self, tp: TopicPartition, offset: int) -> None:
        """Record that ``offset`` was consumed and is now owed a delivery or a dead letter."""
        if offset < 0:
            raise OffsetStateError(f"{tp.topic}[{tp.partition}]: negative offset {offset}")
        part = self._parts.get(tp)
        if part is None:
            part = self._parts[tp] = _Partition()
        if offset <= part.last_tracked:
            # A consumer hands out offsets in increasing order per partition; anything else
            # means a seek we were not told about or a record tracked twice.
            raise OffsetStateError(
                f"{tp.topic}[{tp.partition}]: offset {offset} tracked after {part.last_tracked}"
            )
        part.last_tracked = offset
        part.pending.append(offset)
        part.unacked.add(offset)
        self._pending_total += 1

    def ack(self, tp: TopicPartition, offset: int) -> None:
        """Mark ``offset`` done (delivered or dead-lettered) and advance the watermark."""
        part = self._parts.get(tp)
        if part is None or offset not in part.unacked:
            state = "untracked partition" if part is None else "not pending"
            raise OffsetStateError(f"{tp.topic}[{tp.partition}]: ack of offset {offset}: {state}")
        part.unacked.remove(offset)
        part.done.add(offset)
        self._pending_total -= 1
        # Pop every done offset from the front; stop at the first that is still owed.
        pending, done = part.pending, part.done
        while pending and pending[0] in done:
            head = pending.popleft()
            done.remove(head)
            part.next_offset = head + 1

    def committable(self) -> dict[TopicPartition, int]:
        """``next_offset`` per partition whose watermark moved since it was last committed."""
        return {
            tp: part.next_offset
            for tp, part in self._parts.items()
            if part.next_offset is not None and part.next_offset != part.committed
        }

    def mark_committed(self, offsets: Mapping[TopicPartition, int]) -> None:
        """Record what Kafka confirmed; those partitions drop out of :meth:`committable`."""
        for tp, next_offset in offsets.items():
            part = self._parts.get(tp)
            if part is None:
                raise OffsetStateError(f"{tp.topic}[{tp.partition}]: commit of untracked partition")
            if part.next_offset is None or next_offset > part.next_offset:
                raise OffsetStateError(
                    f"{tp.topic}[{tp.partition}]: commit of {next_offset} past the watermark "
                    f"{part.next_offset}"
                )
            if part.committed is not None and next_offset < part.committed:
                raise OffsetStateError(
                    f"{tp.topic}[{tp.partition}]: commit of {next_offset} below the previous "
                    f"commit {part.committed}"
                )
            part.committed = next_offset

    def forget(self, tps: Iterable[TopicPartition]) -> int:
        """Drop revoked partitions; return how many pending offsets were abandoned.

        The new owner re-reads them from the last commit; the stable ``event_id`` makes any
        repeat harmless. Partitions never tracked are ignored (assigned but empty).
        """
        abandoned = 0
        for tp in tps:
            part = self._parts.pop(tp, None)
            if part is not None:
                abandoned += len(part.unacked)
        self._pending_total -= abandoned
        return abandoned

    def tracking(self, tp: TopicPartition) -> bool:
        """Whether ``tp`` has state here; acks for a forgotten partition must be dropped."""
        return tp in self._parts

    def next_offset(self, tp: TopicPartition) -> int | None:
        """The current watermark of ``tp`` (committed or not); None before anything is done."""
        part = self._parts.get(tp)
        return None if part is None else part.next_offset

    def pending_count(self, tp: TopicPartition | None = None) -> int:
        """Offsets tracked and not yet acked: in one partition, or in all of them."""
        if tp is None:
            return self._pending_total
        part = self._parts.get(tp)
        return 0 if part is None else len(part.unacked)
