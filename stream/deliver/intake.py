"""From a poll batch to windows: track each record, apply the rules, route it to its lanes.

An enriched record is version 2 of ``capi_event.avsc`` (a version-1 record was upgraded by the
codec): its routing fields are read (:mod:`stream.core.routing`: without decoding the rest), and
its ``event_json`` goes into requests as is, never parsed here. A record that fails to decode,
or that a rule of :mod:`stream.core.delivery_rules` refuses, is dead-lettered at once; one the
Gateway filter keeps from every destination settles as skipped.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from typing import Any

from stream import schemas
from stream.core.delivery_rules import DeliveryRules, Failure
from stream.core.errors import DecodeError
from stream.core.polled import Polled
from stream.core.records import TopicPartition
from stream.core.routing import Decoder, Routing, RoutingReader, read_v2
from stream.core.settlement import Settlement
from stream.core.window import Batch, Batcher
from stream.deliver.destinations import Destinations
from stream.deliver.outcomes import Settler
from stream.deliver.stats import DelivererStats

#: What the poll thread hands over per poll batch: its records as columns, and per record its
#: routing fields (:data:`~stream.core.routing.Routing`) or why it could not be decoded.
Prepared = tuple[Polled, "list[Routing | Failure]"]


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

        Records of the partitions in ``skip`` (being revoked) are left out: not tracked. A
        window this batch opens counts its linger from when the poll began to wait for it
        (:attr:`Polled.waited_s` before ``now``), not from ``now``: the batch's first record
        may have come that long before, and a window's first event is the one that waits
        longest.
        """
        polled, decoded_all = prepared
        opened = now - polled.waited_s
        events = self._settlement.track(polled, now, skip)
        admit, lanes_of, add = self._rules.admit, self._destinations.lanes, self._batcher.add
        dead, settle, stats = self._settler.dead_entry, self._settlement.settle, self._stats
        ready: list[Batch] = []
        consumed = 0
        for entry, decoded in zip(events, decoded_all, strict=True):
            if entry is None:
                continue  # fetched just before a revoke; the new owner reads it again
            consumed += 1
            if isinstance(decoded, Failure):
                dead(entry, decoded)
                continue
            pixel, event_id, event_name, event_time, source, code, event_json = decoded
            entry.pixel_id, entry.event_time = pixel, event_time
            verdict = admit(
                pixel, event_id, event_name, event_time, source, code, len(event_json), now
            )
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
            # a view of the record value's tail (the value is kept anyway, for a dead letter)
            entry.event_json = event_json
            entry.event_id = event_id
            entry.event_name = event_name
            entry.expires_at = verdict[1]
            for lane in lanes:
                ready += add(entry, opened, lane)
        stats.consumed += consumed
        return ready


def preparer(
    codec: Decoder, schema: Mapping[str, Any] | None = None
) -> Callable[[Polled], Prepared]:
    """What the poll thread does per batch: read each record's routing fields (there, off the
    loop), or say why it could not. ``schema`` is the codec's reader schema (by default
    ``capi_event.avsc``, as :func:`stream.kafka.serde.build_codecs` makes it)."""
    reader = RoutingReader(codec, schemas.load("capi_event") if schema is None else schema)
    read = reader.read
    # read_v2 answers for the usual record, and raises for anything else (None included),
    # which read then decodes in full or explains: one call per record, not two
    first = read_v2 if reader.fast else read

    def prepare(polled: Polled) -> Prepared:
        decoded: list[Routing | Failure] = []
        append = decoded.append
        for value in polled.values:
            try:
                append(first(value))  # type: ignore[arg-type]  # None raises: see above
            except (IndexError, ValueError, TypeError, DecodeError):
                append(_routing_or_failure(read, value))
        return polled, decoded

    return prepare


def _routing_or_failure(read: Callable[[bytes], Routing], value: bytes | None) -> Routing | Failure:
    try:
        return read(value or b"")
    except DecodeError as exc:
        return Failure(f"decode_{exc.reason}", exc.detail)
