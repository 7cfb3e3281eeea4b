"""An event's age facts from the first bytes of its record, for tools that copy many records.

``replay`` and ``dlq republish`` decide per record whether Meta would still take the event; that
needs its time and source, which lead the raw record and follow the marker and the ids in
version 2 of the enriched record (:mod:`stream.core.avro_prefix`). Reading them costs a few
varints where a full decode costs most of a copy's time. Whatever the prefix cannot answer goes
the full way (:func:`~stream.kafka.facts.event_facts`, or the enriched codec): the pixel of a raw
record (it comes last), a record of another writer schema than ours (by its registry id), and an
enriched record of version 1 (its body does not start with version 2's marker byte).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from stream.core.avro_prefix import PrefixReader, prefix_reader
from stream.core.capi import MAX_AGE_PHYSICAL_STORE_SECONDS, MAX_AGE_SECONDS
from stream.core.codec import MAGIC_BYTE, AvroCodec
from stream.core.envelope import MARKER
from stream.core.errors import DecodeError
from stream.core.validate import MILLISECONDS_ABOVE, event_time_seconds
from stream.kafka.facts import EventFacts, event_facts

_HEADER_SIZE = 5  # the Confluent wire format's magic byte and 4-byte schema id
_MAGIC = bytes((MAGIC_BYTE,))
_RAW_PATHS = ("event_time", "action_source")
_ENRICHED_PATHS = ("envelope", "pixel_id", "event_time", "action_source")


class FactsReader:
    """:func:`event_facts` of one topic's records, from their prefix when that suffices.

    ``schema`` is the schema our producers write the topic with (the raw one, or version 2 of
    the enriched one with ``enriched``); None: always decode in full.
    """

    def __init__(
        self,
        codec: AvroCodec,
        schema: Mapping[str, Any] | None,
        *,
        enriched: bool,
        default_pixel: str | None = None,
    ) -> None:
        self._codec = codec
        self._enriched = enriched
        self._default_pixel = default_pixel
        self._reader: PrefixReader | None = None
        self._time: PrefixReader | None = None
        if schema is not None:
            self._reader = prefix_reader(schema, _ENRICHED_PATHS if enriched else _RAW_PATHS)
            # the time alone decides most records (see expired): one field fewer to read
            self._time = self._reader if enriched else prefix_reader(schema, ("event_time",))
        # the id our own writer schema has in the registry: a record with another needs decoding
        self._id = None if codec.schema_id is None else codec.schema_id.to_bytes(4, "big")
        self._confluent = codec.wire_format == "confluent"

    def facts(self, value: bytes | None, *, need_pixel: bool = False) -> EventFacts | None:
        """The record's facts, None if unreadable; for a raw record ``pixel_id`` is only read
        with ``need_pixel`` (without it, it is the default pixel: the prefix does not reach it)."""
        if value is None:
            return None
        offset = self._offset(value)
        if offset is None or self._reader is None or (need_pixel and not self._enriched):
            return self._decoded(value)
        if self._enriched and value[offset : offset + 1] != MARKER:
            return self._decoded(value)  # version 1: its own layout
        try:
            found = self._reader.values(value, offset)
        except ValueError:  # also a string that is not UTF-8
            return None
        if self._enriched:
            _, pixel, event_time, source = found
            return _facts(pixel or self._default_pixel, event_time, source)
        return _facts(self._default_pixel, found[0], found[1])

    def expired(self, value: bytes | None, now: float, margin_s: float) -> bool | None:
        """``facts(value).expired(now, margin_s)``, None if unreadable (see :meth:`expiry`)."""
        return self.expiry(now, margin_s)(value)

    def expiry(self, now: float, margin_s: float) -> Callable[[bytes | None], bool | None]:
        """:meth:`expired` at ``now`` as one function, for a loop over many records.

        Mostly the time alone decides: younger than 7 days (less the margin) is never expired,
        older than 62 always; only in between does the source decide.
        """
        fresh_s, stale_s = MAX_AGE_SECONDS - margin_s, MAX_AGE_PHYSICAL_STORE_SECONDS - margin_s
        # the reader's own loop: IndexError (the body ends early) is caught below
        time_of = self._time.read_values if self._time is not None else None
        enriched, confluent = self._enriched, self._confluent

        def slow(value: bytes) -> bool | None:
            facts = self.facts(value)
            return None if facts is None else facts.expired(now, margin_s)

        def expired(value: bytes | None) -> bool | None:
            if value is None:
                return None
            if time_of is None or confluent:
                offset = self._offset(value)
                if offset is None or time_of is None:
                    return slow(value)
            else:
                offset = 0
            if enriched and value[offset : offset + 1] != MARKER:
                return slow(value)  # version 1: its own layout
            try:
                found = time_of(value, offset)
            except (ValueError, IndexError):
                return None
            seconds = found[-2] if enriched else found[0]
            if seconds > MILLISECONDS_ABOVE:  # raw times may be milliseconds
                seconds //= 1000
            age = now - seconds
            if age <= fresh_s:
                return False
            if age > stale_s:
                return True
            return slow(value)

        return expired

    def _offset(self, value: bytes) -> int | None:
        """Where the Avro body starts, None when the record is not of our writer schema."""
        if not self._confluent:
            return 0
        if value[:1] == _MAGIC and value[1:_HEADER_SIZE] == self._id:
            return _HEADER_SIZE
        return None  # another writer's layout: only a full decode knows it

    def _decoded(self, value: bytes) -> EventFacts | None:
        if not self._enriched:
            return event_facts(value, self._codec, default_pixel=self._default_pixel)
        try:
            record = self._codec.decode(value)
        except DecodeError:
            return None
        # the enriched codec answers version 2's shape for both versions: routing fields on top
        pixel = record.get("pixel_id") or self._default_pixel
        return _facts(pixel, record.get("event_time"), record.get("action_source"))


def _facts(pixel_id: str | None, event_time: object, source: object) -> EventFacts:
    seconds = event_time_seconds(event_time)  # raw times may be milliseconds
    return EventFacts(
        pixel_id,
        seconds[0] if isinstance(seconds, tuple) else None,
        source.strip().lower() if isinstance(source, str) else None,
    )
