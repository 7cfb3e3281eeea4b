"""What settles an event: Meta's acceptance (and its ledger record) or a dead letter.

The sender decides; :class:`Settler` records the decision in the settlement, produces the dead
letters (with the event's real attempt count and first failure time) and the optional
delivery ledger, and keeps the totals. Every method first asks the settlement whether the
event is still owed by this assignment: a completion that comes back after a revoke settles
nothing (the new owner sends its own copy).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import orjson

from stream.core.dead_letter import dead_letter, letter_record
from stream.core.delivery_rules import Failure
from stream.core.graph_response import Accepted
from stream.core.records import TopicPartition
from stream.core.sensors import NullSensor, Sensor
from stream.core.settlement import Settlement, Unsettled
from stream.core.window import LaneKey, Pending
from stream.deliver.stats import DelivererStats
from stream.logs import get_logger

log = get_logger("capi_stream.deliverer")

Items = tuple[Pending, ...]
#: Queue one record: topic, key, value, headers (the producer's delivery is checked at commit).
Produce = Callable[[str, bytes | None, bytes, Sequence[tuple[str, bytes]]], None]


class Settler:
    """Settles events for the sender and the intake, on the loop's thread."""

    def __init__(
        self,
        settlement: Settlement,
        produce: Produce,
        *,
        encode_letter: Callable[[Mapping[str, Any]], bytes],  # the letter: an Avro record
        max_record: int | None,
        dlq_topic: str,
        ledger_topic: str | None = None,
        on_settled: Callable[[], None] = lambda: None,
        clock: Callable[[], float] = time.time,
        sensor: Sensor | None = None,
        stats: DelivererStats | None = None,
    ) -> None:
        self._settlement = settlement
        self._produce = produce
        self._encode_letter = encode_letter
        self._max_record = max_record
        self._dlq_topic = dlq_topic
        self._ledger_topic = ledger_topic
        self._on_settled = on_settled
        self._clock = clock
        self._sensor: Sensor = sensor or NullSensor()
        self.stats = stats or DelivererStats()

    # -- the sender's Outcomes ---------------------------------------------------------------

    def live(self, items: Items) -> Items:
        """Drop settled and revoked events; dead-letter those that reached their age limit."""
        current, now = self._settlement.current, self._clock()
        live = [item for item in items if (entry := item.entry) is not None and current(entry)]
        if min((item.expires_at for item in live), default=now + 1) > now:
            return tuple(live)  # the common case: nothing expired
        why = "event reached Meta's age limit while retrying"
        for item in live:
            if item.expires_at <= now and (entry := item.entry) is not None:
                self.dead(item, Failure("expired", why, None, entry.pixel_id, item.event_id,
                                        item.event_name))  # fmt: skip
        return tuple(item for item in live if item.expires_at > now)

    def failed(self, items: Items) -> None:
        """One more failed attempt on each event, and the time of its first."""
        now_ms = int(self._clock() * 1000)
        for item in items:
            if item.entry is not None:
                item.entry.failed(now_ms)

    def accepted(self, lane: LaneKey, items: Items, answer: Accepted, attempts: int) -> None:
        """Meta took ``items`` in full: settle this destination of each; the ledger record."""
        now = self._clock()
        stats = self.stats
        settled = self._settlement.settle_destinations([item.entry for item in items])
        # from the enriched record's produce time to Meta's answer
        stats.latencies_s.extend(now - e.timestamp_ms / 1000 for e in settled if e.timestamp_ms)
        stats.delivered += len(settled)
        self._on_settled()
        self._sensor.count("events_posted", len(items), pixel=lane.pixel_id)
        self._sensor.count("events_received", answer.events_received or 0, pixel=lane.pixel_id)
        offsets = offset_ranges(items)
        delivery: dict[str, object] = {
            "pixel_id": lane.pixel_id, "destination": lane.destination,
            "test_event_code": lane.test_event_code, "events_sent": len(items),
            "events_received": answer.events_received, "fbtrace_id": answer.fbtrace_id,
            "offsets": offsets, "attempts": attempts, "delivered_at": now,
        }  # fmt: skip
        log.info("batch delivered", **delivery)
        if self._ledger_topic is not None:
            self._produce(self._ledger_topic, ledger_key(lane, offsets), orjson.dumps(delivery), ())

    def dead(self, item: Pending, failure: Failure) -> None:
        """Dead-letter one event the sender gave up on (all its destinations settle)."""
        if item.entry is not None:
            self.dead_entry(item.entry, failure)

    # -- the intake's ------------------------------------------------------------------------

    def dead_entry(self, entry: Unsettled, failure: Failure) -> None:
        """Produce the dead letter of ``entry`` and settle it; nothing when it is not owed.

        The offset is settled now, but committed only after step 1 of the commit protocol
        confirms the letter reached Kafka.
        """
        if not self._settlement.current(entry):
            return
        now_ms = int(self._clock() * 1000)
        letter = dead_letter(
            stage="deliver", reason=failure.reason, message=failure.message, record=entry.record,
            now_ms=now_ms, first_failure_ms=entry.first_failure_ms,
            meta_error=failure.meta_error, pixel_id=failure.pixel_id, event_id=failure.event_id,
            event_name=failure.event_name, attempts=entry.attempts,
        )  # fmt: skip
        out = letter_record(letter, self._encode_letter, self._max_record)
        self._produce(self._dlq_topic, out.key, out.value, out.headers)
        self.stats.dead_lettered += 1
        self._sensor.count("dead_lettered", stage="deliver", reason=failure.reason)
        self._settlement.settle(entry)
        self._on_settled()


def ledger_key(lane: LaneKey, offsets: dict[str, list[int]]) -> bytes:
    """The delivery record's key: its lane and every span of offsets it carried.

    The ledger topic is compacted, which keeps one record per key: the key names the
    destination and the test code besides the pixel (Graph's and the Gateway's records of one
    batch are two records), and every partition's first and last offset (two batches of one
    lane never share it; the same batch delivered again after a restart replaces its record).
    ``graph/111/-/capi.events.enriched[0]:0-99,capi.events.enriched[2]:5-80``.
    """
    spans = ",".join(f"{where}:{first}-{last}" for where, (first, last) in sorted(offsets.items()))
    return f"{lane.destination}/{lane.pixel_id}/{lane.test_event_code or '-'}/{spans}".encode()


def offset_ranges(items: Items) -> dict[str, list[int]]:
    """First and last offset per partition of a batch, for the delivery record."""
    spans: dict[TopicPartition, list[int]] = {}
    last: TopicPartition | None = None
    span: list[int] | None = None
    for item in items:
        offset, tp = item.offset, item.tp
        if tp is not last:  # a batch holds runs of one partition: hash only where they change
            last, span = tp, spans.get(tp)
        if span is None:
            span = spans[tp] = [offset, offset]
        elif offset < span[0]:
            span[0] = offset
        elif offset > span[1]:
            span[1] = offset
    return {f"{tp.topic}[{tp.partition}]": span for tp, span in spans.items()}


def partitions(items: Items) -> frozenset[TopicPartition]:
    """The partitions of a batch's events (hashed only where a run of one partition ends)."""
    found: set[TopicPartition] = set()
    last: TopicPartition | None = None
    for item in items:
        tp = item.tp
        if tp is not last:
            found.add(tp)
            last = tp
    return frozenset(found)
