"""The deliver stage's record of unsettled events, and the offsets it may commit.

An event is *settled* when every destination it goes to accepted it, or when it was
dead-lettered. Kafka commits one number per partition, ``next_offset``: everything below it is
settled. Requests complete out of order, so the watermark advances only over a run of settled
offsets (design.md, "Commit rule"), as :class:`stream.core.offsets.OffsetTracker` does; here the
offsets are kept as *runs*: the consecutive offsets of one partition within one poll batch,
each a list of its unsettled events (None once settled). Kafka's gaps (transaction markers,
compaction) start a new run: an offset never read can never be settled, and never blocks.

Worked example, one partition, poll batches [5, 6, 7] and [9, 10]::

    track batch 1         runs [5: e5 e6 e7]
    track batch 2         runs [5: e5 e6 e7] [9: e9 e10]      (8 is a marker: a gap)
    settle e6             runs [5: e5 -- e7] [9: e9 e10]      next_offset None
    settle e5             runs [7: e7] [9: e9 e10]            next_offset 7
    settle e7, e9         runs [10: e10]                      next_offset 10
    settle e10            runs []                             next_offset 11

Each event holds its run, and the run its partition, so settling is O(1) and needs no lookup;
the head of a run advances past settled events, each passed once (O(1) amortized). What all
events of a run share (partition state, arrival time, how to make a record) is kept once, on
the run.

Assignment: a partition assigned again after a revoke gets a fresh state object. An event
read before the revoke still points at the old one, so :meth:`Settlement.current` is False
for it and any completion that comes back late is ignored: the new owner settles its own copy.
This is the one "is this still the current assignment?" check of the stage.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Collection, Hashable, Iterable, Iterator, Mapping

from stream.core.errors import OffsetStateError
from stream.core.polled import Polled
from stream.core.records import Record, TopicPartition


class Unsettled:
    """One event read from Kafka and not yet settled: the stage's state for it, and what the
    windows and requests need of it (it is the stage's pending event, in every lane it goes to).

    One is made per record, so it holds little beyond what differs per event: its arrival time
    is its run's, and its :attr:`record` is made on demand (a dead letter) from its source
    (:class:`~stream.core.polled.Polled`).

    ``destinations`` counts the destinations still owed an answer; ``attempts`` the failed
    requests that carried it and ``first_failure_ms`` when the first one failed, for its dead
    letter. ``lanes`` name where it goes; ``event_json`` (spliced into requests as is),
    ``event_id``, ``event_name`` and ``expires_at`` are set when the rules admitted it.
    """

    __slots__ = (
        "attempts", "destinations", "event_id", "event_json", "event_name", "event_time",
        "expires_at", "first_failure_ms", "index", "lanes", "offset", "pixel_id", "run", "source",
        "timestamp_ms", "tp",
    )  # fmt: skip

    def __init__(self, run: _Run, index: int, source: object, timestamp_ms: int | None) -> None:
        self.run = run
        self.index = index  # in its run
        self.offset = run.first + index
        self.tp = run.part.tp  # the one object the settlement keys its partition by
        self.source = source  # the consumer's message: its record, made on demand
        self.timestamp_ms = timestamp_ms
        self.destinations = 0
        self.attempts = 0
        self.first_failure_ms: int | None = None
        self.pixel_id: str | None = None
        self.event_time: float | None = None
        self.lanes: tuple[Hashable, ...] = ()
        self.event_json: bytes | memoryview = b""
        self.event_id = ""
        self.event_name = ""
        self.expires_at = math.inf

    @property
    def entry(self) -> Unsettled:
        """Itself: a pending event made outside the stage points at its entry instead."""
        return self

    @property
    def arrived_at(self) -> float:
        """When its poll batch was tracked."""
        return self.run.arrived_at

    @property
    def record(self) -> Record:
        """The record as read (made now from its source: for dead letters)."""
        return self.run.record_of(self.source)

    def failed(self, now_ms: int) -> None:
        """A request that carried this event failed (or was rejected) at ``now_ms``."""
        self.attempts += 1
        if self.first_failure_ms is None:
            self.first_failure_ms = now_ms


class _Run:
    """Consecutive offsets of one partition from one poll batch; private to the settlement."""

    __slots__ = ("arrived_at", "events", "first", "head", "part", "record_of")

    def __init__(self, part: _Partition, polled: Polled, first: int, now: float) -> None:
        self.part = part
        self.record_of = polled.record_of  # not the batch: see Polled
        self.arrived_at = now
        self.first = first  # the offset of events[0]
        self.events: list[Unsettled | None] = []
        self.head = 0  # events before it are settled

    @property
    def end(self) -> int:
        """The offset after the run's last."""
        return self.first + len(self.events)


class _Partition:
    """One assigned partition: its runs and watermark; replaced, never reused, on re-assign."""

    __slots__ = ("committed", "live", "next_offset", "pending", "read_end", "runs", "tp")

    def __init__(self, tp: TopicPartition) -> None:
        self.tp = tp
        self.live = True
        self.runs: deque[_Run] = deque()
        self.pending = 0
        self.next_offset: int | None = None  # last contiguous settled offset + 1
        self.committed: int | None = None  # the next_offset Kafka last confirmed
        self.read_end: int | None = None  # the offset after the last one read


class Settlement:
    """Unsettled events per assigned partition, and the ``next_offset`` each may commit.

    Raises :class:`OffsetStateError` on states a correct caller cannot produce: offsets out of
    order, settling an event twice, committing past the watermark.
    """

    __slots__ = ("_by_key", "_parts", "_pending", "generation")

    def __init__(self) -> None:
        self._parts: dict[TopicPartition, _Partition] = {}
        self._by_key: dict[tuple[str, int], _Partition] = {}  # the same, for the hot path
        self._pending = 0
        #: counts assignments and revokes: a commit taken before one may meet fresh state
        self.generation = 0

    # -- assignment --------------------------------------------------------------------------

    def assign(self, tps: Iterable[TopicPartition]) -> None:
        """Start owning ``tps``, each with fresh state (a previous assignment's events die)."""
        self.generation += 1
        for tp in tps:
            old = self._parts.get(tp)
            if old is not None:
                self._drop(old)
            self._parts[tp] = self._by_key[tp.topic, tp.partition] = _Partition(tp)

    def revoke(self, tps: Iterable[TopicPartition]) -> tuple[dict[TopicPartition, int], int]:
        """Stop owning ``tps``: their ``next_offset`` still to commit, and how many were abandoned.

        Abandoned events are read again by the new owner from the last commit; their stable
        ``event_id`` makes the repeat harmless.
        """
        self.generation += 1
        next_offsets: dict[TopicPartition, int] = {}
        abandoned = 0
        for tp in tps:
            part = self._parts.pop(tp, None)
            if part is None:
                continue
            del self._by_key[tp.topic, tp.partition]
            if part.next_offset is not None and part.next_offset != part.committed:
                next_offsets[tp] = part.next_offset
            abandoned += part.pending
            self._drop(part)
        return next_offsets, abandoned

    def assigned(self) -> set[TopicPartition]:
        """The partitions owned now."""
        return set(self._parts)

    def owns(self, tp: TopicPartition) -> bool:
        """Whether ``tp`` is assigned now."""
        return tp in self._parts

    @staticmethod
    def current(event: Unsettled) -> bool:
        """Whether ``event`` is still owed: unsettled, and its partition's assignment is current."""
        run = event.run
        return run.part.live and run.events[event.index] is event

    # -- events ------------------------------------------------------------------------------

    def track(
        self, polled: Polled, now: float, skip: Collection[TopicPartition] = ()
    ) -> list[Unsettled | None]:
        """Record one poll batch; per record its event, or None when its partition is not owned
        (or is in ``skip``: being revoked).

        Offsets must increase per partition across calls (as a consumer hands them out).
        """
        out: list[Unsettled | None] = []
        # keyed by (topic, partition) tuples: hashed in C, no TopicPartition made per record
        batch_runs: dict[tuple[str, int], _Run] = {}
        made: list[_Run] = []  # every run this batch started (a gap starts another)
        parts = self._by_key
        append, tracked = out.append, 0
        run: _Run | None = None
        key: tuple[str, int] | None = None
        sources, stamps = polled.sources, polled.timestamps_ms
        for pos, (topic, partition, offset) in enumerate(
            zip(polled.topics, polled.partitions, polled.offsets, strict=True)
        ):
            if key is None or key[0] != topic or key[1] != partition:
                key = (topic, partition)
                run = batch_runs.get(key)
            if run is None or run.first + len(run.events) != offset:
                part = parts.get(key)
                if part is None or (skip and part.tp in skip):
                    append(None)  # fetched just before a revoke: the new owner reads it again
                    continue
                last = part.runs[-1].end - 1 if part.runs else (part.next_offset or 0) - 1
                if offset <= last or offset < 0:
                    raise OffsetStateError(f"{topic}[{partition}]: offset {offset} after {last}")
                run = batch_runs[key] = _Run(part, polled, offset, now)
                part.runs.append(run)
                made.append(run)
            events = run.events
            event = Unsettled(run, len(events), sources[pos], stamps[pos])
            events.append(event)
            append(event)
            tracked += 1
        for run in made:
            run.part.pending += len(run.events)
            run.part.read_end = run.end
        self._pending += tracked
        return out

    def settle(self, event: Unsettled) -> bool:
        """Settle ``event`` now, whatever destinations it still had (a dead letter; or its last).

        Returns False (and does nothing) when it is not :meth:`current`.
        """
        run = event.run
        part = run.part
        if not part.live or run.events[event.index] is not event:
            return False  # not current
        run.events[event.index] = None
        part.pending -= 1
        self._pending -= 1
        if run is part.runs[0]:
            self._advance(part)
        return True

    def settle_destination(self, event: Unsettled) -> bool:
        """One destination accepted ``event``; True when that settled it (its last destination)."""
        run = event.run
        if not run.part.live or run.events[event.index] is not event:
            return False  # not current
        event.destinations -= 1
        if event.destinations > 0:
            return False
        return self.settle(event)

    def settle_destinations(self, events: Iterable[Unsettled | None]) -> list[Unsettled]:
        """:meth:`settle_destination` for each of ``events`` (None and events not current are
        passed over); the events that settled, in order.

        One request's answer settles up to a thousand events: the watermark of each partition
        they touched advances once, at the end, instead of once per event.
        """
        settled: list[Unsettled] = []
        touched: list[_Partition] = []
        last: _Partition | None = None
        for event in events:
            if event is None:
                continue
            run = event.run
            part, slots, index = run.part, run.events, event.index
            if not part.live or slots[index] is not event:
                continue  # not current
            event.destinations -= 1
            if event.destinations > 0:
                continue
            slots[index] = None
            part.pending -= 1
            settled.append(event)
            if part is not last:  # a batch holds runs of one partition: note where they change
                last = part
                touched.append(part)
        self._pending -= len(settled)
        for part in touched:
            if part.runs:
                self._advance(part)
        return settled

    # -- committing --------------------------------------------------------------------------

    def committable(self) -> dict[TopicPartition, int]:
        """``next_offset`` per partition whose watermark moved since it was last committed."""
        return {
            tp: part.next_offset
            for tp, part in self._parts.items()
            if part.next_offset is not None and part.next_offset != part.committed
        }

    def mark_committed(
        self, offsets: Mapping[TopicPartition, int], *, generation: int | None = None
    ) -> None:
        """Record what Kafka confirmed; partitions revoked since are ignored.

        ``generation`` is :attr:`generation` when ``offsets`` were taken: if partitions were
        assigned or revoked since, one may be back with fresh state behind the snapshot, and
        its old offset is ignored too (otherwise that is a bug, and raises).
        """
        moved = generation is not None and generation != self.generation
        for tp, next_offset in offsets.items():
            part = self._parts.get(tp)
            if part is None:
                continue
            if part.next_offset is None or next_offset > part.next_offset:
                if moved:
                    continue
                raise OffsetStateError(
                    f"{tp.topic}[{tp.partition}]: commit of {next_offset} past the watermark "
                    f"{part.next_offset}"
                )
            if part.committed is None or next_offset > part.committed:
                part.committed = next_offset

    def next_offset(self, tp: TopicPartition) -> int | None:
        """The watermark of ``tp`` (committed or not); None before anything is settled."""
        part = self._parts.get(tp)
        return None if part is None else part.next_offset

    def committed(self, tp: TopicPartition) -> int | None:
        """The ``next_offset`` of ``tp`` Kafka last confirmed here."""
        part = self._parts.get(tp)
        return None if part is None else part.committed

    def read_end(self, tp: TopicPartition) -> int | None:
        """The offset after the last one read from ``tp`` (None: nothing read yet)."""
        part = self._parts.get(tp)
        return None if part is None else part.read_end

    def pending_count(self, tp: TopicPartition | None = None) -> int:
        """Unsettled events: in one partition, or in all of them."""
        if tp is None:
            return self._pending
        part = self._parts.get(tp)
        return 0 if part is None else part.pending

    def unsettled(self) -> Iterator[Unsettled]:
        """Every unsettled event (for reports: O(pending))."""
        for part in self._parts.values():
            for run in part.runs:
                for event in run.events[run.head :]:
                    if event is not None:
                        yield event

    # -- private -----------------------------------------------------------------------------

    def _advance(self, part: _Partition) -> None:
        runs = part.runs
        while runs:
            run = runs[0]
            events, head = run.events, run.head
            while head < len(events) and events[head] is None:
                head += 1
            run.head = head
            if head:
                part.next_offset = run.first + head
            if head < len(events):
                return
            runs.popleft()

    def _drop(self, part: _Partition) -> None:
        part.live = False
        self._pending -= part.pending
