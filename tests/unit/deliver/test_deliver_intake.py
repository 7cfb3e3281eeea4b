"""The intake: a poll batch of enriched records becomes pending events in their lanes' windows,
or dead letters, with one object per event."""

from __future__ import annotations

import dataclasses
import time

import orjson

from stream import schemas
from stream.core.delivery_rules import DeliveryRules
from stream.core.envelope import EnrichedCodec
from stream.core.polled import Polled
from stream.core.records import Record
from stream.core.window import Batcher, LaneKey
from stream.credentials import Credentials
from stream.deliver.destinations import Destinations
from stream.deliver.intake import Intake, preparer
from stream.deliver.stats import DelivererStats
from tests.unit.deliver.helpers import TP, parts

CODEC = EnrichedCodec(schemas.load("capi_event"), schemas.load("capi_event.v1"))


def value(event_id: str, event_time: float) -> bytes:
    """A version-2 enriched record of one Purchase for pixel 111."""
    json = orjson.dumps({"event_name": "Purchase", "event_id": event_id, "event_time": 1})
    return CODEC.encode({
        "envelope": b"\x01", "pixel_id": "111", "event_id": event_id, "event_name": "Purchase",
        "event_time": int(event_time), "action_source": "website", "test_event_code": None,
        "warnings": [], "source": {"topic": "raw", "partition": 0, "offset": 0},
        "normalized_at": 0, "event_json": json,
    })  # fmt: skip


def test_a_poll_batch_becomes_windows_and_dead_letters() -> None:
    """Admitted events wait in their lane's window holding exactly the record's event JSON
    (a view of the value's tail, not a copy); an undecodable and an expired record become
    dead letters at once; the window's request splices the JSON as is."""
    now = time.time()
    settlement, settler, produced, _ = parts(0)
    batcher = Batcher(linger_s=60)
    stats = DelivererStats()
    intake = Intake(
        settlement, rules=DeliveryRules(), destinations=Destinations(
            names=("graph",), credentials=Credentials()), batcher=batcher, settler=settler,
        stats=stats,
    )  # fmt: skip
    values = [value("e0", now), b"\x01\xff\xff", value("e2", now - 30 * 86_400), value("e3", now)]
    records = [Record(TP.topic, TP.partition, o, None, v) for o, v in enumerate(values)]
    polled = Polled.of(records)
    assert intake.ingest(preparer(CODEC)(polled), now) == []
    assert stats.consumed == 4
    assert [letter["reason"] for letter in produced.letters()] == ["decode_corrupt", "expired"]
    (batch,) = batcher.flush()
    assert batch.lane == LaneKey("graph", "111")
    assert [item.offset for item in batch.items] == [0, 3]
    for item, raw in zip(batch.items, (values[0], values[3]), strict=True):
        decoded = CODEC.decode(raw)["event_json"]
        assert isinstance(item.event_json, memoryview)
        assert item.event_json == decoded
        assert item.event_json.obj is raw  # the record's own value: no second copy
    body = (
        Destinations(names=("graph",), credentials=Credentials())
        .request(batch.lane, batch.items)
        .body
    )
    assert [e["event_id"] for e in orjson.loads(body)["data"]] == ["e0", "e3"]
    assert settlement.pending_count() == 2


def test_a_window_counts_its_linger_from_when_the_poll_began_to_wait() -> None:
    """A poll that waited 40 ms for its records hands over a first event that may have come
    40 ms ago: the window it opens is due 40 ms sooner than linger after the hand-over."""
    now = time.time()
    settlement, settler, _, _ = parts(0)
    batcher = Batcher(linger_s=1.0)  # no head start: the deadline is exactly linger's
    intake = Intake(
        settlement, rules=DeliveryRules(), destinations=Destinations(
            names=("graph",), credentials=Credentials()), batcher=batcher, settler=settler,
        stats=DelivererStats(),
    )  # fmt: skip
    records = [Record(TP.topic, TP.partition, 0, None, value("e0", now))]
    polled = dataclasses.replace(Polled.of(records), waited_s=0.04)
    intake.ingest(preparer(CODEC)(polled), now)
    assert batcher.next_deadline() == now - 0.04 + 1.0
    assert batcher.due(now + 0.95) == []
    assert len(batcher.due(now + 0.96)) == 1
