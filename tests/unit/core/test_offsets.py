"""The offset watermark: what may be committed, and the states that must raise."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    initialize,
    invariant,
    precondition,
    rule,
)

from stream.core.errors import OffsetStateError
from stream.core.offsets import OffsetTracker, TopicPartition

TP = TopicPartition("capi.events.enriched", 0)
TP1 = TopicPartition("capi.events.enriched", 1)


def tracked(*offsets: int, tp: TopicPartition = TP) -> OffsetTracker:
    tracker = OffsetTracker()
    for offset in offsets:
        tracker.track(tp, offset)
    return tracker


def test_nothing_is_committable_before_any_ack() -> None:
    """Tracked but unacked offsets give no committable partition."""
    assert tracked(0, 1, 2).committable() == {}


def test_in_order_acks_commit_the_offset_after_the_last() -> None:
    """Acking 0, 1, 2 in order makes next_offset 3 (Kafka's "next to read")."""
    tracker = tracked(0, 1, 2)
    for offset in (0, 1, 2):
        tracker.ack(TP, offset)
    assert tracker.committable() == {TP: 3}


def test_an_unacked_offset_holds_the_watermark() -> None:
    """Acks above an unacked offset do not move the watermark past it."""
    tracker = tracked(0, 1, 2, 3)
    tracker.ack(TP, 0)
    tracker.ack(TP, 2)
    tracker.ack(TP, 3)
    assert tracker.committable() == {TP: 1}
    tracker.ack(TP, 1)
    assert tracker.committable() == {TP: 4}


def test_the_worked_example_with_gaps() -> None:
    """Offsets never tracked (transaction markers, compaction) do not block the watermark."""
    tracker = tracked(5, 6, 9, 10)
    tracker.ack(TP, 6)
    assert tracker.committable() == {}
    tracker.ack(TP, 5)
    assert tracker.committable() == {TP: 7}
    tracker.ack(TP, 10)
    assert tracker.committable() == {TP: 7}
    tracker.ack(TP, 9)
    assert tracker.committable() == {TP: 11}


def test_the_first_tracked_offset_may_be_anywhere() -> None:
    """A partition starting at 1,000 (the last commit) commits from there on."""
    tracker = tracked(1000)
    tracker.ack(TP, 1000)
    assert tracker.committable() == {TP: 1001}


def test_partitions_are_independent() -> None:
    """An unacked offset in one partition does not hold another partition back."""
    tracker = tracked(0, 1)
    tracker.track(TP1, 0)
    tracker.ack(TP1, 0)
    assert tracker.committable() == {TP1: 1}


def test_ack_of_an_untracked_offset_raises() -> None:
    """Acking an offset that was never tracked is an impossible state."""
    tracker = tracked(0, 2)
    with pytest.raises(OffsetStateError, match="not pending"):
        tracker.ack(TP, 1)


def test_ack_on_an_untracked_partition_raises() -> None:
    """Acking in a partition with no state raises and names it as such."""
    with pytest.raises(OffsetStateError, match="untracked partition"):
        OffsetTracker().ack(TP, 0)


def test_a_second_ack_of_the_same_offset_raises() -> None:
    """Acking twice means an event was settled twice: raise, whether or not it was passed."""
    tracker = tracked(0, 1)
    tracker.ack(TP, 1)
    with pytest.raises(OffsetStateError):
        tracker.ack(TP, 1)
    tracker.ack(TP, 0)
    with pytest.raises(OffsetStateError):
        tracker.ack(TP, 0)


@pytest.mark.parametrize("offset", [3, 2, 0])
def test_tracking_at_or_below_the_last_tracked_offset_raises(offset: int) -> None:
    """Offsets are tracked in strictly increasing order per partition."""
    tracker = tracked(2, 3)
    with pytest.raises(OffsetStateError, match="tracked after 3"):
        tracker.track(TP, offset)


def test_tracking_below_an_already_committed_offset_raises() -> None:
    """Order is kept even after the watermark consumed the offsets."""
    tracker = tracked(4)
    tracker.ack(TP, 4)
    with pytest.raises(OffsetStateError):
        tracker.track(TP, 4)


def test_a_negative_offset_raises() -> None:
    """Kafka offsets are never negative; a negative one is a sentinel that leaked."""
    with pytest.raises(OffsetStateError, match="negative"):
        OffsetTracker().track(TP, -1001)


def test_committed_partitions_leave_committable_until_they_move() -> None:
    """After mark_committed a partition reappears only when its watermark advances."""
    tracker = tracked(0, 1)
    tracker.ack(TP, 0)
    tracker.mark_committed(tracker.committable())
    assert tracker.committable() == {}
    tracker.ack(TP, 1)
    assert tracker.committable() == {TP: 2}


def test_a_commit_older_than_the_watermark_keeps_the_partition_committable() -> None:
    """When acks land between computing and confirming a commit, the rest stays committable."""
    tracker = tracked(0, 1)
    tracker.ack(TP, 0)
    snapshot = tracker.committable()
    tracker.ack(TP, 1)
    tracker.mark_committed(snapshot)
    assert tracker.committable() == {TP: 2}


def test_marking_a_commit_past_the_watermark_raises() -> None:
    """Kafka can only have confirmed what the tracker offered."""
    tracker = tracked(0, 1)
    tracker.ack(TP, 0)
    with pytest.raises(OffsetStateError, match="past the watermark"):
        tracker.mark_committed({TP: 2})


def test_marking_a_commit_before_any_ack_raises() -> None:
    """No watermark yet means nothing could have been committed."""
    with pytest.raises(OffsetStateError, match="past the watermark"):
        tracked(0).mark_committed({TP: 0})


def test_marking_a_commit_below_the_previous_one_raises() -> None:
    """Commits never move backwards."""
    tracker = tracked(0, 1)
    tracker.ack(TP, 0)
    tracker.ack(TP, 1)
    tracker.mark_committed({TP: 2})
    with pytest.raises(OffsetStateError, match="below the previous"):
        tracker.mark_committed({TP: 1})


def test_marking_a_commit_of_an_untracked_partition_raises() -> None:
    """A commit for a partition we hold no state for is a bookkeeping bug."""
    with pytest.raises(OffsetStateError, match="untracked"):
        OffsetTracker().mark_committed({TP: 1})


def test_forget_drops_a_partition_and_counts_what_was_abandoned() -> None:
    """Revoking returns the number of owed offsets and removes them from pending_count."""
    tracker = tracked(0, 1, 2)
    tracker.track(TP1, 7)
    tracker.ack(TP, 0)
    assert tracker.forget([TP]) == 2
    assert tracker.pending_count() == 1
    assert not tracker.tracking(TP)
    assert tracker.committable() == {}


def test_ack_after_forget_raises() -> None:
    """A late ack for a revoked partition must be dropped by the caller, not applied."""
    tracker = tracked(0)
    tracker.forget([TP])
    with pytest.raises(OffsetStateError):
        tracker.ack(TP, 0)


def test_a_reassigned_partition_starts_afresh() -> None:
    """After forget, tracking may restart at the last commit, below what was tracked."""
    tracker = tracked(10, 11)
    tracker.ack(TP, 10)
    tracker.forget([TP])
    tracker.track(TP, 11)
    tracker.ack(TP, 11)
    assert tracker.committable() == {TP: 12}


def test_forget_of_an_unknown_partition_is_harmless() -> None:
    """A partition assigned and revoked without a record has nothing to forget."""
    assert OffsetTracker().forget([TP]) == 0


def test_pending_count_counts_tracked_unacked_offsets() -> None:
    """pending_count is owed offsets overall or per partition, whatever the watermark says."""
    tracker = tracked(0, 1, 2)
    tracker.track(TP1, 5)
    tracker.ack(TP, 2)
    assert tracker.pending_count() == 3
    assert tracker.pending_count(TP) == 2
    assert tracker.pending_count(TP1) == 1
    assert tracker.pending_count(TopicPartition("other", 0)) == 0


def test_next_offset_reports_the_watermark_committed_or_not() -> None:
    """next_offset is None before any run of acks and the watermark after."""
    tracker = tracked(3, 4)
    assert tracker.next_offset(TP) is None
    tracker.ack(TP, 3)
    tracker.mark_committed({TP: 4})
    assert tracker.next_offset(TP) == 4
    assert tracker.next_offset(TP1) is None


def test_reverse_order_acks_of_many_offsets_settle_in_one_sweep() -> None:
    """100,000 offsets acked newest first commit everything once the oldest is acked."""
    n = 100_000
    tracker = tracked(*range(n))
    for offset in range(n - 1, 0, -1):
        tracker.ack(TP, offset)
    assert tracker.committable() == {}
    tracker.ack(TP, 0)
    assert tracker.committable() == {TP: n}
    assert tracker.pending_count() == 0


@settings(max_examples=200, deadline=None)
@given(
    gaps=st.lists(st.integers(min_value=1, max_value=4), min_size=1, max_size=60),
    data=st.data(),
)
def test_any_interleaving_never_commits_past_an_unacked_offset(
    gaps: list[int], data: st.DataObject
) -> None:
    """Random interleavings of track and ack never commit past an unacked offset, and once
    everything is acked the commit covers the last tracked offset."""
    offsets = [sum(gaps[: i + 1]) for i in range(len(gaps))]
    tracker = OffsetTracker()
    to_track = list(offsets)
    unacked: list[int] = []
    while to_track or unacked:
        track_next = bool(to_track) and (not unacked or data.draw(st.booleans()))
        if track_next:
            offset = to_track.pop(0)
            tracker.track(TP, offset)
            unacked.append(offset)
        else:
            offset = unacked.pop(data.draw(st.integers(0, len(unacked) - 1)))
            tracker.ack(TP, offset)
        committed = tracker.committable().get(TP)
        if committed is not None and unacked:
            assert committed <= min(unacked)
        if data.draw(st.booleans()) and committed is not None:
            tracker.mark_committed({TP: committed})
    assert tracker.next_offset(TP) == offsets[-1] + 1
    assert tracker.pending_count() == 0


class WatermarkMachine(RuleBasedStateMachine):
    """Two partitions, tracked with gaps, acked in any order, committed at random moments."""

    owed = Bundle("owed")

    def __init__(self) -> None:
        super().__init__()
        self.tracker = OffsetTracker()
        self.tracked: dict[TopicPartition, list[int]] = {TP: [], TP1: []}
        self.acked: set[tuple[TopicPartition, int]] = set()
        self.committed: dict[TopicPartition, int] = {}

    @initialize()
    def start(self) -> None:
        """Nothing is tracked at first."""

    @rule(target=owed, tp=st.sampled_from([TP, TP1]), gap=st.integers(1, 3))
    def track(self, tp: TopicPartition, gap: int) -> tuple[TopicPartition, int]:
        offsets = self.tracked[tp]
        offset = (offsets[-1] if offsets else 0) + gap
        self.tracker.track(tp, offset)
        offsets.append(offset)
        return tp, offset

    @rule(owed=consumes(owed))
    def ack(self, owed: tuple[TopicPartition, int]) -> None:
        self.tracker.ack(*owed)
        self.acked.add(owed)

    @precondition(lambda self: bool(self.tracker.committable()))
    @rule()
    def commit(self) -> None:
        offsets = self.tracker.committable()
        self.tracker.mark_committed(offsets)
        self.committed.update(offsets)

    def expected(self, tp: TopicPartition) -> int | None:
        """The model: one past the longest run of acked tracked offsets from the start."""
        result = None
        for offset in self.tracked[tp]:
            if (tp, offset) not in self.acked:
                break
            result = offset + 1
        return result

    @invariant()
    def watermark_matches_the_model(self) -> None:
        for tp in (TP, TP1):
            assert self.tracker.next_offset(tp) == self.expected(tp)

    @invariant()
    def never_past_an_unacked_offset(self) -> None:
        for tp, next_offset in {**self.committed, **self.tracker.committable()}.items():
            unacked = [o for o in self.tracked[tp] if (tp, o) not in self.acked]
            assert not unacked or next_offset <= min(unacked)

    @invariant()
    def pending_count_matches(self) -> None:
        total = sum(len(offsets) for offsets in self.tracked.values())
        assert self.tracker.pending_count() == total - len(self.acked)

    def teardown(self) -> None:
        """Acking everything left makes every partition committable up to its last offset."""
        for tp, offsets in self.tracked.items():
            for offset in offsets:
                if (tp, offset) not in self.acked:
                    self.tracker.ack(tp, offset)
        expected = {tp: o[-1] + 1 for tp, o in self.tracked.items() if o}
        expected = {tp: n for tp, n in expected.items() if self.committed.get(tp) != n}
        assert self.tracker.committable() == expected


WatermarkMachine.TestCase.settings = settings(
    max_examples=100, stateful_step_count=40, deadline=None
)
TestWatermarkMachine = WatermarkMachine.TestCase
TestWatermarkMachine.__doc__ = "Random track/ack/commit sequences keep the watermark exact."
