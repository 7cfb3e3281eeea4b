"""The settler's view for the sender: which events are still owed, and what settles them."""

from __future__ import annotations

import dataclasses
import time

from stream.core.graph_response import Accepted
from stream.core.records import TopicPartition
from stream.core.window import LaneKey, PendingEvent
from stream.deliver.outcomes import ledger_key, offset_ranges, partitions
from tests.unit.deliver.helpers import LANE, TP, parts


def test_live_drops_settled_events_and_dead_letters_expired_ones() -> None:
    """Before each attempt: a settled event is left out, one past its age limit becomes an
    ``expired`` dead letter (and settles), the rest go on in order."""
    now = time.time()
    settlement, settler, produced, items = parts(5, clock=lambda: now)
    stale = [dataclasses.replace(item, expires_at=now - 1) for item in items[1:3]]
    batch = (items[0], *stale, items[3], items[4])
    entry4 = items[4].entry
    assert entry4 is not None
    settlement.settle(entry4)
    assert settler.live(batch) == (items[0], items[3])
    letters = produced.letters()
    assert [letter["reason"] for letter in letters] == ["expired", "expired"]
    assert settlement.pending_count() == 2
    assert settler.live(batch) == (items[0], items[3])  # nothing dead-lettered twice
    assert len(produced.letters()) == 2


def test_accepted_settles_each_event_once_and_counts_it() -> None:
    """A full acceptance settles every event still owed; the totals count each once."""
    settlement, settler, _, items = parts(4)
    settler.accepted(LANE, items[:3], Accepted(3, (), "TRACE", short=False), 1)
    settler.accepted(
        LANE, items[:3], Accepted(3, (), "TRACE", short=False), 1
    )  # a late repeat: nothing
    assert settler.stats.delivered == 3
    assert settlement.committable() == {TP: 3}


def test_offset_ranges_and_partitions_of_a_batch_with_interleaved_partitions() -> None:
    """Runs of two partitions alternating in one batch: each partition's first and last
    offset, and both partitions, whatever the order."""
    tp1 = TopicPartition(TP.topic, 1)
    items = [
        PendingEvent(tp, offset, LANE, b"{}", f"e{offset}", "Purchase", 1e12)
        for tp, offset in [(TP, 5), (TP, 6), (tp1, 40), (TP, 9), (tp1, 38), (tp1, 41), (TP, 4)]
    ]
    assert offset_ranges(tuple(items)) == {f"{TP.topic}[0]": [4, 9], f"{TP.topic}[1]": [38, 41]}
    assert partitions(tuple(items)) == frozenset({TP, tp1})


def test_ledger_keys_differ_by_destination_test_code_and_spans() -> None:
    """The compacted ledger keeps one record per key: Graph's and the Gateway's records of one
    batch, a test lane's and two batches of one lane each have their own; the same batch again
    has the same key."""
    spans = {"enr[0]": [0, 99], "enr[2]": [5, 80]}
    graph = ledger_key(LaneKey("graph", "111"), spans)
    assert graph == b"graph/111/-/enr[0]:0-99,enr[2]:5-80"
    assert ledger_key(LaneKey("graph", "111"), dict(reversed(spans.items()))) == graph
    others = {
        ledger_key(LaneKey("gateway", "111"), spans),
        ledger_key(LaneKey("graph", "111", "TEST1"), spans),
        ledger_key(LaneKey("graph", "111"), {"enr[0]": [0, 99], "enr[2]": [5, 81]}),
        ledger_key(LaneKey("graph", "222"), spans),
    }
    assert len(others) == 4
    assert graph not in others
