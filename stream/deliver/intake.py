"""From a poll batch to windows: track each record, apply the rules, route it to its lanes.

An enriched record is version 2 of ``capi_event.avsc`` (a version-1 record was upgraded by the
codec): its routing fields are read, and its ``event_json`` goes into requests as is, never
parsed here. A record that fails to decode, or that a rule of :mod:`stream.core.delivery_rules`
refuses, is dead-lettered at once; one the Gateway filter keeps from every destination settles
as skipped.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Any

from stream.core.delivery_rules import DeliveryRules, Failure
from stream.core.envelope import EnrichedCodec
from stream.core.errors import DecodeError
from stream.core.polled import Polled
from stream.core.records import TopicPartition
from stream.core.settlement import Settlement
from stream.core.window import Batch, Batcher
from stream.deliver.destinations import Destinations
from stream.deliver.outcomes import Settler
from stream.deliver.stats import DelivererStats

#: What the poll thread hands over per poll batch: its records as columns, and per record its
#: decoded enriched record (the one ``Any`` of the stage: fastavro's dict) or why it could not
#: be decoded.
Prepared = tuple[Polled, "list[dict[str, Any] | Failure]"]


class Intake:
    """Turns prepared poll batches into pending events in the batcher (on the loop's thread).

    The loop below runs once per event of the stage: it makes one object per event (the
    settlement's, which is also what the windows hold) and nothing per event that passes the
    rules.
    """

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

    def ingest(
        self, prepared: Prepared, now: float, skip: Collection[TopicPartition] = ()
    ) -> list[Batch]:
        """Track and route one poll batch; the batches that became ready (full).

        Records of the partitions in ``skip`` (being revoked) are left out: not tracked.
        """
        polled, decoded_all = prepared
        events = self._settlement.track(polled, now, skip)
        admit, lanes_of, add = self._rules.admit, self._destinations.lanes, self._batcher.add
        dead, settle, stats = self._settler.dead_entry, self._settlement.settle, self._stats
        ready: list[Batch] = []
        consumed = 0
        for entry, decoded, value in zip(events, decoded_all, polled.values, strict=True):
            if entry is None:
                continue  # fetched just before a revoke; the new owner reads it again
            consumed += 1
            if isinstance(decoded, Failure):
                dead(entry, decoded)
                continue
            pixel, event_time = decoded["pixel_id"], decoded["event_time"]
            event_json: bytes = decoded["event_json"]
            entry.pixel_id, entry.event_time = pixel, event_time
            verdict = admit(
                pixel, decoded["event_id"], decoded["event_name"], event_time,
                decoded["action_source"], decoded["test_event_code"], len(event_json), now,
            )  # fmt: skip
            if isinstance(verdict, Failure):
                dead(entry, verdict)
                continue
            lanes = lanes_of(pixel, verdict[0], event_json)
            if not lanes:
                stats.skipped += 1  # the gateway filter kept it from every destination
                settle(entry)
                continue
            entry.destinations = len(lanes)
            entry.lanes = lanes
            # the envelope's last field is the event's JSON, so the record's value ends with it:
            # keep a view of that tail (the value is kept anyway, for a dead letter), not the
            # decoder's copy: a pending event then costs one copy of its JSON, not two
            entry.event_json = (
                memoryview(value)[len(value) - len(event_json) :]
                if value is not None and value.endswith(event_json)
                else event_json
            )
            entry.event_id = decoded["event_id"]
            entry.event_name = decoded["event_name"]
            entry.expires_at = verdict[1]
            for lane in lanes:
                ready += add(entry, now, lane)
        stats.consumed += consumed
        return ready


def preparer(codec: EnrichedCodec) -> Callable[[Polled], Prepared]:
    """What the poll thread does per batch: decode each record (there, off the loop), or say
    why it could not."""
    decode = codec.decode

    def prepare(polled: Polled) -> Prepared:
        decoded: list[dict[str, Any] | Failure] = []
        append = decoded.append
        for value in polled.values:
            try:
                append(decode(value or b""))
            except DecodeError as exc:
                append(Failure(f"decode_{exc.reason}", exc.detail))
        return polled, decoded

    return prepare
