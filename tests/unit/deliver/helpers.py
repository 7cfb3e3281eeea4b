"""A deliver stage's parts without a broker: a settlement, a settler that keeps its records, a
scripted Graph endpoint (answers in order, as bytes), and events pending on one lane."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from stream import schemas
from stream.core.codec import AvroCodec
from stream.core.polled import Polled
from stream.core.records import Record, TopicPartition
from stream.core.settlement import Settlement
from stream.core.window import LaneKey, PendingEvent
from stream.deliver.destinations import Request
from stream.deliver.outcomes import Settler
from stream.sinks.http import HttpAnswer

TP = TopicPartition("enriched", 0)
LANE = LaneKey("graph", "111", None)
LETTERS = AvroCodec(schemas.load("dead_letter"))


def ok(received: int) -> HttpAnswer:
    return HttpAnswer(200, orjson.dumps({"events_received": received, "fbtrace_id": "OK1"}))


def error(status: int, code: int, message: str, **extra: object) -> HttpAnswer:
    body = {"error": {"code": code, "message": message, "type": "OAuthException",
                      "fbtrace_id": "TRACE", **extra}}  # fmt: skip
    return HttpAnswer(status, orjson.dumps(body))


@dataclass
class Script:
    """Answers requests in order; the last answer repeats. Keeps each request's event ids."""

    answers: list[HttpAnswer]
    requests: list[list[str]] = field(default_factory=list)

    async def post(self, url: str, body: bytes) -> HttpAnswer:
        assert "access_token" not in url
        self.requests.append([e["event_id"] for e in orjson.loads(body)["data"]])
        answer = self.answers[0]
        if len(self.answers) > 1:
            self.answers.pop(0)
        return answer


def request(lane: LaneKey, items: Sequence[PendingEvent]) -> Request:
    data = b",".join(item.event_json for item in items)
    return Request(f"http://graph.test/v25.0/{lane.pixel_id}/events", b'{"data":[' + data + b"]}")


@dataclass
class Produced:
    records: list[tuple[str, bytes | None, bytes]] = field(default_factory=list)

    def produce(self, topic: str, key: bytes | None, value: bytes, headers: object) -> None:  # noqa: ARG002 - the Produce shape
        self.records.append((topic, key, value))

    def letters(self) -> list[dict[str, Any]]:
        return [LETTERS.decode(value) for topic, _, value in self.records if topic == "dlq"]


def ticking(start: float | None = None) -> Callable[[], float]:
    """A clock one second further at each reading: every event gets its own time."""
    counter = itertools.count()
    base = time.time() if start is None else start
    return lambda: base + next(counter)


def parts(
    n: int, lane: LaneKey = LANE, clock: Callable[[], float] = time.time
) -> tuple[Settlement, Settler, Produced, tuple[PendingEvent, ...]]:
    """A settlement owning TP with ``n`` events tracked, pending on ``lane``."""
    settlement = Settlement()
    settlement.assign([TP])
    produced = Produced()
    settler = Settler(settlement, produced.produce, encode_letter=LETTERS.encode, max_record=None,
                      dlq_topic="dlq", clock=clock)  # fmt: skip
    records = [Record(TP.topic, 0, i, f"k{i}".encode(), b"v") for i in range(n)]
    items = []
    for i, entry in enumerate(settlement.track(Polled.of(records), now=time.time())):
        assert entry is not None
        entry.destinations = 1
        entry.lanes = (lane,)
        entry.pixel_id = lane.pixel_id
        event = orjson.dumps({"event_name": "Purchase", "event_id": f"e{i}"})
        expires_at = time.time() + 10**6
        items.append(PendingEvent(TP, i, lane, event, f"e{i}", "Purchase", expires_at, entry))
    return settlement, settler, produced, tuple(items)
