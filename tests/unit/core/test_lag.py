"""Consumer lag from positions (past transaction markers) and commit lag from read ends."""

from __future__ import annotations

from stream.core.lag import commit_lag, consumer_lag
from stream.core.records import TopicPartition

P0 = TopicPartition("enriched", 0)
P1 = TopicPartition("enriched", 1)


def test_a_position_at_the_end_after_a_marker_is_no_lag() -> None:
    """Records 0-10, markers at 5 and 11, end 12: the consumer's position is 12, not 11."""
    assert consumer_lag({P0: 12}, {P0: 12}) == {P0: 0}


def test_lag_is_what_is_left_to_read_per_partition() -> None:
    """End minus position, per partition."""
    assert consumer_lag({P0: 12, P1: 40}, {P0: 7, P1: 40}) == {P0: 5, P1: 0}


def test_a_stale_end_behind_the_position_counts_zero_not_negative() -> None:
    """An end offset from an older fetch than the position never makes the lag negative."""
    assert consumer_lag({P0: 10}, {P0: 14}) == {P0: 0}


def test_partitions_without_a_position_or_an_end_are_left_out() -> None:
    """Nothing fetched yet (no position) or no end known: no guess, no entry."""
    assert consumer_lag({P0: 12, P1: 5}, {P1: -1001}) == {}
    assert consumer_lag({P0: -1}, {P0: 3}) == {}


def test_commit_lag_counts_read_records_past_the_committed_offset() -> None:
    """Read up to 50, committed 45: 5; a partition never committed counts 0."""
    assert commit_lag({P0: 50, P1: 9}, {P0: 45}) == 5
    assert commit_lag({P0: 50}, {P0: 50}) == 0
