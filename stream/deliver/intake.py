"""From a poll batch to windows: track each record, apply the rules, route it to its lanes.

An enriched record is version 2 of ``capi_event.avsc`` (a version-1 record was upgraded by the
codec): its routing fields are read, and its ``event_json`` goes into requests as is, never
parsed here. A record that fails to decode, or that a rule of :mod:`stream.core.delivery_rules`
refuses, is dead-lettered at once; one the Gateway filter keeps from every destination settles
as skipped.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from stream.core.delivery_rules import DeliveryRules, Failure
from stream.core.envelope import EnrichedCodec
from stream.core.errors import DecodeError
from stream.core.records import Record
from stream.core.settlement import Settlement
from stream.core.window import Batch, Batcher, PendingEvent
from stream.deliver.destinations import Destinations
from stream.deliver.outcomes import Settler
from stream.deliver.stats import DelivererStats

#: What the poll thread hands over per record: the record, and its decoded enriched record
#: (the one ``Any`` of the stage: fastavro's dict) or why it could not be decoded.
Prepared = tuple[Record, "dict[str, Any] | Failure"]


class Intake:
    """Turns prepared records into pending events in the batcher (on the loop's thread)."""

    def __init__(
        self,
        settlement: Settlement,
        *,
        rules: DeliveryRules,
        destinations: Destinations,
        batcher: Batcher,
        settler: Settler,
        stats: DelivererStats,
    ) -> None:
        self._settlement = settlement
        self._rules = rules
        self._destinations = destinations
        self._batcher = batcher
        self._settler = settler
        self._stats = stats

    def ingest(self, items: Sequence[Prepared], now: float) -> list[Batch]:
        """Track and route ``items``; the batches that became ready (full)."""
        events = self._settlement.track([record for record, _ in items], now)
        check, lanes_of, add = self._rules.check, self._destinations.lanes, self._batcher.add
        dead, settle, stats = self._settler.dead_entry, self._settlement.settle, self._stats
        ready: list[Batch] = []
        for (record, decoded), entry in zip(items, events, strict=True):
            if entry is None:
                continue  # fetched just before a revoke; the new owner reads it again
            stats.consumed += 1
            if isinstance(decoded, Failure):
                dead(entry, decoded)
                continue
            pixel, event_id, event_name = (
                decoded["pixel_id"], decoded["event_id"], decoded["event_name"]
            )  # fmt: skip
            event_json: bytes = decoded["event_json"]
            entry.pixel_id, entry.event_time = pixel, decoded["event_time"]
            verdict = check(
                pixel_id=pixel, event_id=event_id, event_name=event_name,
                event_time=decoded["event_time"], action_source=decoded["action_source"],
                test_event_code=decoded["test_event_code"], event_bytes=len(event_json), now=now,
            )  # fmt: skip
            if isinstance(verdict, Failure):
                dead(entry, verdict)
                continue
            lanes = lanes_of(pixel, verdict.test_event_code, event_json)
            if not lanes:
                stats.skipped += 1  # the gateway filter kept it from every destination
                settle(entry)
                continue
            entry.destinations = len(lanes)
            entry.lanes = lanes
            tp, offset, expires_at = entry.tp, record.offset, verdict.expires_at
            for lane in lanes:
                item = PendingEvent(
                    tp, offset, lane, event_json, event_id, event_name, expires_at, entry
                )
                ready += add(item, now)
        return ready


def preparer(codec: EnrichedCodec) -> Callable[[Record], Prepared]:
    """What the poll thread does per record: decode it (there, off the loop), or say why not."""

    def prepare(record: Record) -> Prepared:
        try:
            return record, codec.decode(record.value or b"")
        except DecodeError as exc:
            return record, Failure(f"decode_{exc.reason}", exc.detail)

    return prepare
