"""The settlement record: runs per poll batch, the watermark, the current-assignment check."""

from __future__ import annotations

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from stream.core.errors import OffsetStateError
from stream.core.offsets import OffsetTracker
from stream.core.polled import Polled
from stream.core.records import Record, TopicPartition
from stream.core.settlement import Settlement, Unsettled

TP = TopicPartition("capi.events.enriched", 0)
TP1 = TopicPartition("capi.events.enriched", 1)


def rec(offset: int, tp: TopicPartition = TP) -> Record:
    return Record(tp.topic, tp.partition, offset, None, b"v")


def tracked(*batches: list[int]) -> tuple[Settlement, dict[int, Unsettled]]:
    s = Settlement()
    s.assign([TP])
    events: dict[int, Unsettled] = {}
    for batch in batches:
        for event in s.track(Polled.of([rec(o) for o in batch]), now=0.0):
            assert event is not None
            events[event.record.offset] = event
    return s, events


def test_the_worked_example() -> None:
    """The module docstring's example: a gap does not block, out-of-order settles wait."""
    s, e = tracked([5, 6, 7], [9, 10])
    s.settle(e[6])
    assert s.committable() == {}
    s.settle(e[5])
    assert s.committable() == {TP: 7}
    s.settle(e[7])
    s.settle(e[9])
    assert s.committable() == {TP: 10}
    s.settle(e[10])
    assert s.committable() == {TP: 11}
    assert s.pending_count() == 0


def test_a_request_answer_settles_only_the_last_destination() -> None:
    """settle_destinations counts each event's destinations down and answers those it settled;
    the watermark moves past all of them at once."""
    s, e = tracked([0, 1, 2])
    e[1].destinations = 2
    e[0].destinations = e[2].destinations = 1
    assert s.settle_destinations([e[0], e[1], e[2]]) == [e[0], e[2]]
    assert s.next_offset(TP) == 1
    assert s.settle_destinations([e[1], e[0]]) == [e[1]]  # e0 settled already: passed over
    assert s.next_offset(TP) == 3
    assert s.pending_count() == 0


def test_an_event_with_two_destinations_settles_on_the_second() -> None:
    """settle_destination counts down; only the last destination settles the offset."""
    s, e = tracked([0])
    e[0].destinations = 2
    assert not s.settle_destination(e[0])
    assert s.committable() == {}
    assert s.settle_destination(e[0])
    assert s.committable() == {TP: 1}


def test_a_late_completion_after_a_revoke_is_ignored() -> None:
    """An event read before a revoke is not current after it, even once the partition is back."""
    s, e = tracked([0, 1])
    next_offsets, abandoned = s.revoke([TP])
    assert (next_offsets, abandoned) == ({}, 2)
    s.assign([TP])
    assert not s.current(e[0])
    assert not s.settle(e[0])
    (again,) = s.track(Polled.of([rec(0)]), now=1.0)
    assert again is not None
    assert s.current(again)
    assert s.pending_count() == 1


def test_revoke_returns_the_uncommitted_watermark() -> None:
    """What was settled but not committed is handed back to commit on revoke."""
    s, e = tracked([0, 1, 2])
    s.settle(e[0])
    s.mark_committed({TP: 1})
    s.settle(e[1])
    assert s.revoke([TP]) == ({TP: 2}, 1)


def test_records_of_partitions_not_owned_are_not_tracked() -> None:
    """A record fetched just before its partition was revoked gets no event."""
    s, _ = tracked()
    assert s.track(Polled.of([rec(0, TP1)]), now=0.0) == [None]
    assert s.pending_count() == 0


def test_impossible_states_raise() -> None:
    """Offsets going backwards, and a commit past the watermark, are bugs."""
    s, e = tracked([3, 4])
    with pytest.raises(OffsetStateError):
        s.track(Polled.of([rec(4)]), now=0.0)
    with pytest.raises(OffsetStateError):
        s.mark_committed({TP: 1})
    s.settle(e[3])
    assert not s.settle(e[3])  # settled already: not current, nothing happens


def test_a_commit_confirmed_after_a_revoke_and_reassign_is_ignored() -> None:
    """A commit taken before the partition was revoked and assigned again comes back past the
    fresh state's watermark: it belongs to the old assignment and changes nothing (without the
    generation it was taken at, the same call is a bug and raises)."""
    s, e = tracked([0, 1])
    s.settle(e[0])
    s.settle(e[1])
    generation = s.generation
    offsets = s.committable()
    assert offsets == {TP: 2}
    s.revoke([TP])
    s.assign([TP])
    (fresh,) = s.track(Polled.of([rec(2)]), now=1.0)
    assert fresh is not None
    s.mark_committed(offsets, generation=generation)
    assert s.committed(TP) is None
    assert s.committable() == {}
    with pytest.raises(OffsetStateError):
        s.mark_committed(offsets)


class SettlementMachine(RuleBasedStateMachine):
    """Random batches, gaps, settles, commits and revokes against the per-offset tracker."""

    def __init__(self) -> None:
        super().__init__()
        self.s = Settlement()
        self.model = OffsetTracker()
        self.next: dict[TopicPartition, int] = {TP: 0, TP1: 0}
        self.owed: list[Unsettled] = []
        self.stale: list[Unsettled] = []
        self.s.assign([TP, TP1])

    @rule(sizes=st.lists(st.tuples(st.sampled_from([TP, TP1]), st.integers(1, 3)), max_size=6))
    def poll_batch(self, sizes: list[tuple[TopicPartition, int]]) -> None:
        records = []
        for tp, gap in sizes:
            self.next[tp] += gap  # gap 1: consecutive, more: a marker or compaction in between
            records.append(rec(self.next[tp] - 1, tp))
        for event in self.s.track(Polled.of(records), now=0.0):
            assert event is not None
            self.model.track(event.record.tp, event.record.offset)
            self.owed.append(event)

    @precondition(lambda self: self.owed)
    @rule(pick=st.integers(0, 10**6))
    def settle(self, pick: int) -> None:
        event = self.owed.pop(pick % len(self.owed))
        assert self.s.settle(event)
        self.model.ack(event.record.tp, event.record.offset)

    @precondition(lambda self: self.owed)
    @rule(picks=st.lists(st.integers(0, 10**6), min_size=1, max_size=8), stale=st.booleans())
    def settle_a_request(self, picks: list[int], stale: bool) -> None:
        """One answer settles several events at once; stale ones (revoked since) and gaps in
        the request (None) are passed over."""
        chosen = [self.owed.pop(pick % len(self.owed)) for pick in picks if self.owed]
        request: list[Unsettled | None] = [*chosen, None]
        if stale and self.stale:
            request.insert(len(request) // 2, self.stale[0])
        assert self.s.settle_destinations(request) == chosen
        for event in chosen:
            self.model.ack(event.record.tp, event.record.offset)

    @rule()
    def commit(self) -> None:
        offsets = self.s.committable()
        assert offsets == self.model.committable()
        self.s.mark_committed(offsets)
        self.model.mark_committed(offsets)

    @rule(tp=st.sampled_from([TP, TP1]))
    def revoke_and_reassign(self, tp: TopicPartition) -> None:
        expected = {t: o for t, o in self.model.committable().items() if t == tp}
        abandoned = self.model.forget([tp])
        assert self.s.revoke([tp]) == (expected, abandoned)
        self.s.assign([tp])
        self.stale += [e for e in self.owed if e.record.tp == tp]
        self.owed = [e for e in self.owed if e.record.tp != tp]
        # the new owner reads from somewhere after the old watermark: keep offsets increasing

    @invariant()
    def same_watermark_as_the_per_offset_tracker(self) -> None:
        assert self.s.committable() == self.model.committable()
        for tp in (TP, TP1):
            if self.model.tracking(tp):
                assert self.s.next_offset(tp) == self.model.next_offset(tp)

    @invariant()
    def same_pending_count(self) -> None:
        assert self.s.pending_count() == self.model.pending_count() == len(self.owed)

    @invariant()
    def stale_events_are_never_current(self) -> None:
        assert not any(self.s.current(e) for e in self.stale)


SettlementMachine.TestCase.settings = settings(
    max_examples=150, stateful_step_count=40, deadline=None
)
TestSettlementMachine = SettlementMachine.TestCase


def test_a_tracked_event_is_its_own_pending_event() -> None:
    """The stage's windows hold the settlement's events: each knows its partition, offset and
    entry, shares its arrival time with its poll batch, and makes its record only on demand."""
    s = Settlement()
    s.assign([TP, TP1])
    records = [
        Record(TP.topic, 0, 7, b"k7", b"v7", (("h", b"1"),), 1_000),
        Record(TP1.topic, 1, 3, None, b"v3", (), None),
        Record(TP.topic, 0, 8, b"k8", b"v8", (), 2_000),
    ]
    e7, e3, e8 = s.track(Polled.of(records), now=42.0)
    assert e7 is not None
    assert e3 is not None
    assert e8 is not None
    assert (e7.tp, e7.offset, e7.timestamp_ms) == (TP, 7, 1_000)
    assert (e3.tp, e3.offset, e3.timestamp_ms) == (TP1, 3, None)
    assert e8.offset == 8
    assert e8.entry is e8
    assert e7.arrived_at == e3.arrived_at == 42.0
    assert e7.record == records[0]
    assert e3.record == records[1]
    assert s.pending_count(TP) == 2
    assert s.pending_count(TP1) == 1
    assert s.read_end(TP) == 9
    assert s.read_end(TP1) == 4


def test_records_of_skipped_partitions_are_not_tracked() -> None:
    """A partition being revoked is left out of a poll batch; the others are tracked."""
    s = Settlement()
    s.assign([TP, TP1])
    events = s.track(Polled.of([rec(0, TP), rec(0, TP1), rec(1, TP)]), now=0.0, skip={TP1})
    assert [e is not None for e in events] == [True, False, True]
    assert s.pending_count() == 2
    assert s.read_end(TP1) is None


def test_a_gap_inside_one_poll_batch_starts_a_run_that_still_counts() -> None:
    """Offsets 0, 1, 5 of one partition in one batch: two runs, three pending, and the
    watermark passes the gap once both runs are settled."""
    s, e = tracked([0, 1, 5])
    assert s.pending_count() == 3
    s.settle(e[5])
    s.settle(e[0])
    assert s.committable() == {TP: 1}
    s.settle(e[1])
    assert s.committable() == {TP: 6}
    assert s.pending_count() == 0
