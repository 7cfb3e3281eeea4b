"""The lane batcher: when windows are cut, and that no limit is ever exceeded."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stream.core.errors import ConfigError
from stream.core.offsets import TopicPartition
from stream.core.payload import data_array
from stream.core.window import Batch, Batcher, LaneKey, PendingEvent

TP = TopicPartition("capi.events.enriched", 0)
TP1 = TopicPartition("capi.events.enriched", 1)
LANE = LaneKey("graph", "123456789")
TEST_LANE = LaneKey("graph", "123456789", "TEST123")
FAR = 1e12  # an expiry that never matters


def event(
    offset: int,
    *,
    lane: LaneKey = LANE,
    tp: TopicPartition = TP,
    size: int = 10,
    expires_at: float = FAR,
) -> PendingEvent:
    """An event whose JSON is exactly ``size`` bytes."""
    body = b'{"i":' + str(offset).encode() + b"}"
    body = body[:-1] + b" " * max(0, size - len(body)) + b"}"
    return PendingEvent(tp, offset, lane, body, f"id-{offset}", "Purchase", expires_at)


def offsets(batches: list[Batch]) -> list[list[int]]:
    return [[item.offset for item in batch.items] for batch in batches]


def test_a_window_is_cut_when_it_reaches_max_events() -> None:
    """The add that fills the window returns it as a batch."""
    batcher = Batcher(max_events=3, linger_s=60)
    assert batcher.add(event(0), 0.0) == []
    assert batcher.add(event(1), 0.1) == []
    assert offsets(batcher.add(event(2), 0.2)) == [[0, 1, 2]]
    assert len(batcher) == 0


def test_a_window_is_cut_before_an_event_would_break_the_byte_limit() -> None:
    """The byte limit is never exceeded: the full window is cut and the event opens the next."""
    # two 10-byte events: 2 + 10 + 1 + 10 = 23 bytes; a third would make 34
    batcher = Batcher(max_bytes=30, linger_s=60)
    batcher.add(event(0), 0.0)
    batcher.add(event(1), 0.0)
    ready = batcher.add(event(2), 0.5)
    assert offsets(ready) == [[0, 1]]
    assert ready[0].size_bytes == 23
    assert len(batcher) == 1


def test_an_event_that_exactly_fills_the_byte_limit_stays() -> None:
    """A window may reach max_bytes exactly."""
    batcher = Batcher(max_bytes=23, linger_s=60)
    batcher.add(event(0), 0.0)
    assert batcher.add(event(1), 0.0) == []
    assert batcher.flush()[0].size_bytes == 23


def test_size_bytes_is_the_length_of_the_spliced_data_array() -> None:
    """What the batcher counts is what the payload builder writes."""
    batcher = Batcher(linger_s=60)
    for i, size in enumerate((7, 30, 12)):
        batcher.add(event(i, size=size), 0.0)
    (batch,) = batcher.flush()
    assert batch.size_bytes == len(data_array(batch.lane, batch.items))


def test_an_event_too_big_for_any_batch_is_refused() -> None:
    """An event that cannot fit even alone raises; fits() lets the caller dead-letter it first."""
    batcher = Batcher(max_bytes=20)
    big = event(0, size=19)
    assert not batcher.fits(big)
    assert batcher.fits(event(1, size=18))
    with pytest.raises(ValueError, match="fits no batch"):
        batcher.add(big, 0.0)


def test_nothing_is_due_before_the_linger_passes() -> None:
    """A window younger than linger_s stays open."""
    batcher = Batcher(linger_s=1.0)
    batcher.add(event(0), 10.0)
    batcher.add(event(1), 10.8)
    assert batcher.due(10.99) == []


def test_a_window_is_due_when_its_first_event_has_lingered() -> None:
    """Linger counts from the window's first event, and created_at records that moment."""
    batcher = Batcher(linger_s=1.0)
    batcher.add(event(0), 10.0)
    batcher.add(event(1), 10.8)
    (batch,) = batcher.due(11.0)
    assert [i.offset for i in batch.items] == [0, 1]
    assert batch.created_at == 10.0
    assert batcher.due(20.0) == []


def test_an_event_near_its_age_limit_makes_its_window_due_early() -> None:
    """A window is due at its earliest expiry minus the guard, even inside the linger."""
    batcher = Batcher(linger_s=60.0, age_guard_s=100.0)
    batcher.add(event(0), 0.0)
    batcher.add(event(1, expires_at=130.0), 1.0)
    assert batcher.due(29.9) == []
    assert offsets(batcher.due(30.0)) == [[0, 1]]


def test_adding_an_event_already_inside_its_guard_returns_the_window_at_once() -> None:
    """The add itself reports a window that is already due."""
    batcher = Batcher(linger_s=60.0, age_guard_s=100.0)
    batcher.add(event(0), 0.0)
    assert offsets(batcher.add(event(1, expires_at=50.0), 0.0)) == [[0, 1]]


def test_zero_linger_sends_every_event_on_its_own() -> None:
    """linger_s=0 disables batching by time: each add returns its window."""
    batcher = Batcher(linger_s=0.0)
    assert offsets(batcher.add(event(0), 5.0)) == [[0]]


def test_batch_expires_at_is_its_earliest_event_expiry() -> None:
    """The loop uses it to stop retrying a batch Meta would reject anyway."""
    batcher = Batcher(linger_s=60, age_guard_s=0)
    batcher.add(event(0, expires_at=500.0), 0.0)
    batcher.add(event(1, expires_at=300.0), 0.0)
    assert batcher.flush()[0].expires_at == 300.0


def test_next_deadline_is_none_when_nothing_waits() -> None:
    """An empty batcher lets the loop block on Kafka alone."""
    assert Batcher().next_deadline() is None


def test_next_deadline_is_the_earliest_of_linger_and_guard_over_lanes() -> None:
    """The loop may sleep until next_deadline and miss nothing."""
    batcher = Batcher(linger_s=5.0, age_guard_s=10.0)
    batcher.add(event(0), 100.0)
    assert batcher.next_deadline() == 105.0
    batcher.add(event(1, lane=TEST_LANE, expires_at=112.0), 101.0)
    assert batcher.next_deadline() == 102.0


def test_lanes_never_share_a_batch() -> None:
    """Events with another test_event_code or pixel go to another batch."""
    batcher = Batcher(linger_s=60)
    batcher.add(event(0), 0.0)
    batcher.add(event(1, lane=TEST_LANE), 0.0)
    batcher.add(event(2, lane=LaneKey("graph", "999")), 0.0)
    batcher.add(event(3), 0.0)
    batches = batcher.flush()
    assert {b.lane: [i.offset for i in b.items] for b in batches} == {
        LANE: [0, 3],
        TEST_LANE: [1],
        LaneKey("graph", "999"): [2],
    }


def test_flush_empties_the_batcher() -> None:
    """After flush nothing is pending and nothing is due."""
    batcher = Batcher(linger_s=60)
    batcher.add(event(0), 0.0)
    assert len(batcher.flush()) == 1
    assert batcher.flush() == []
    assert len(batcher) == 0


def test_drop_partitions_returns_the_revoked_events_and_keeps_the_rest() -> None:
    """Revoked events leave their windows; the others stay, with sizes recounted."""
    batcher = Batcher(linger_s=60)
    batcher.add(event(0, tp=TP), 0.0)
    batcher.add(event(1, tp=TP1, size=40), 0.0)
    batcher.add(event(2, tp=TP), 0.0)
    batcher.add(event(3, tp=TP1, lane=TEST_LANE), 0.0)
    dropped = batcher.drop_partitions([TP1])
    assert [e.offset for e in dropped] == [1, 3]
    (batch,) = batcher.flush()
    assert [i.offset for i in batch.items] == [0, 2]
    assert batch.size_bytes == len(data_array(batch.lane, batch.items))


def test_drop_partitions_recomputes_the_earliest_expiry() -> None:
    """A dropped near-expiry event no longer makes its former window due early."""
    batcher = Batcher(linger_s=60.0, age_guard_s=10.0)
    batcher.add(event(0, tp=TP), 0.0)
    batcher.add(event(1, tp=TP1, expires_at=30.0), 0.0)
    batcher.drop_partitions([TP1])
    assert batcher.next_deadline() == 60.0


def test_a_window_keeps_its_opening_time_when_its_first_event_is_dropped() -> None:
    """Linger is never extended by a revoke."""
    batcher = Batcher(linger_s=5.0)
    batcher.add(event(0, tp=TP1), 0.0)
    batcher.add(event(1, tp=TP), 3.0)
    batcher.drop_partitions([TP1])
    assert batcher.next_deadline() == 5.0


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_events": 0},
        {"max_events": 1001},
        {"max_bytes": 3},
        {"linger_s": -1.0},
        {"age_guard_s": -1.0},
    ],
)
def test_impossible_limits_are_refused(kwargs: dict[str, float]) -> None:
    """A batcher that could break Meta's 1,000-event limit or hold nothing is a config error."""
    with pytest.raises(ConfigError):
        Batcher(**kwargs)  # type: ignore[arg-type]


@settings(max_examples=150, deadline=None)
@given(
    max_events=st.integers(1, 6),
    max_bytes=st.integers(40, 120),
    ops=st.lists(
        st.tuples(
            st.sampled_from([LANE, TEST_LANE]),
            st.integers(2, 38),
            st.floats(0.0, 2.0),
            st.booleans(),
        ),
        max_size=60,
    ),
)
def test_every_event_leaves_in_exactly_one_batch_within_the_limits(
    max_events: int, max_bytes: int, ops: list[tuple[LaneKey, int, float, bool]]
) -> None:
    """Whatever the interleaving of add and due, each event comes out once, in order per lane,
    and no batch mixes lanes or breaks a limit."""
    batcher = Batcher(max_events=max_events, max_bytes=max_bytes, linger_s=1.0, age_guard_s=5.0)
    now = 0.0
    batches: list[Batch] = []
    for offset, (lane, size, step, call_due) in enumerate(ops):
        now += step
        batches += batcher.add(event(offset, lane=lane, size=size, expires_at=now + 30), now)
        if call_due:
            batches += batcher.due(now)
    batches += batcher.flush()
    for batch in batches:
        assert 1 <= len(batch) <= max_events
        assert batch.size_bytes <= max_bytes
        assert batch.size_bytes == len(data_array(batch.lane, batch.items))
        assert all(item.lanes == (batch.lane,) for item in batch.items)
    for lane in (LANE, TEST_LANE):
        sent = [i.offset for b in batches if b.lane == lane for i in b.items]
        assert sent == [o for o, op in enumerate(ops) if op[0] == lane]


def test_a_head_start_spreads_lanes_opened_on_one_tick() -> None:
    """Two lanes whose first events arrive together get their own deadlines, each within
    linger of the first event; created_at stays the moment the window opened."""
    starts = iter([0.0, 0.08])
    batcher = Batcher(linger_s=1.0, head_start=lambda: next(starts))
    other = LaneKey("graph", "987654321")
    batcher.add(event(0), 10.0)
    batcher.add(event(1, lane=other), 10.0)
    assert batcher.next_deadline() == pytest.approx(10.92)
    (early,) = batcher.due(10.92)
    assert early.lane == other
    assert early.created_at == 10.0
    assert batcher.due(10.99) == []
    (late,) = batcher.due(11.0)
    assert late.lane == LANE


def test_a_head_start_never_makes_a_window_due_before_it_opens() -> None:
    """A head start longer than linger closes the window at once, never in the past."""
    batcher = Batcher(linger_s=0.05, head_start=lambda: 1.0)
    (batch,) = batcher.add(event(0), 10.0)
    assert batch.created_at == 10.0


def test_one_event_goes_into_the_window_of_each_lane_it_is_added_to() -> None:
    """The stage adds its one object per event to each of its lanes' windows; without a lane,
    an event of several lanes is refused (which window it belongs to is the caller's say)."""
    graph, gateway = LaneKey("graph", "1"), LaneKey("gateway", "1")
    both = PendingEvent(TP, 0, graph, b'{"i":0}', "id-0", "Purchase", FAR)
    batcher = Batcher(max_events=1, linger_s=60)
    (first,) = batcher.add(both, 0.0, graph)
    (second,) = batcher.add(both, 0.0, gateway)
    assert (first.lane, second.lane) == (graph, gateway)
    assert first.items[0] is second.items[0] is both

    class TwoLanes:
        tp, offset, event_json, event_id, event_name, expires_at, entry = (
            TP, 1, b"{}", "id-1", "Purchase", FAR, None
        )  # fmt: skip
        lanes = (graph, gateway)

    with pytest.raises(ValueError, match="unpack"):
        batcher.add(TwoLanes(), 0.0)
