"""An event's age facts from the first bytes of its raw record, for tools that copy many records.

``replay`` and ``dlq republish`` decide per record whether Meta would still take the event; that
needs its time and source, which lead the raw record (:mod:`stream.core.avro_prefix`). Reading
them costs a few varints where a full decode costs most of a copy's time. Whatever the prefix
cannot answer goes the full way (:func:`~stream.kafka.facts.event_facts`): the pixel (it comes
last) and a record of another writer schema than ours (by its registry id). Enriched records
are decoded: the enriched codec answers version 2's shape (the envelope, whose routing fields
are the facts) for both versions, so no layout is assumed here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from stream.core.avro_prefix import prefix_reader
from stream.core.codec import MAGIC_BYTE, AvroCodec
from stream.core.errors import DecodeError
from stream.core.validate import event_time_seconds
from stream.kafka.facts import EventFacts, event_facts

_HEADER_SIZE = 5  # the Confluent wire format's magic byte and 4-byte schema id
_MAGIC = bytes((MAGIC_BYTE,))
_PATHS = ("event_time", "action_source")


class FactsReader:
    """:func:`event_facts` of one topic's records, from their prefix when that suffices.

    ``schema`` is the raw schema our producers write the topic with (None: always decode in
    full); with ``enriched`` it is not used.
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
        self._reader = None if schema is None else prefix_reader(schema, _PATHS)
        # the id our own writer schema has in the registry: a record with another needs decoding
        self._id = None if codec.schema_id is None else codec.schema_id.to_bytes(4, "big")

    def facts(self, value: bytes | None, *, need_pixel: bool = False) -> EventFacts | None:
        """The record's facts, None if unreadable; ``pixel_id`` is only read with ``need_pixel``
        (without it, it is the default pixel: the prefix does not reach it)."""
        if value is None:
            return None
        if self._enriched:
            return self._enriched_facts(value)
        offset = 0
        if self._codec.wire_format == "confluent":
            ours = value[:1] == _MAGIC and value[1:_HEADER_SIZE] == self._id
            if not ours:
                need_pixel = True  # another writer's layout: only a full decode knows it
            offset = _HEADER_SIZE
        if need_pixel or self._reader is None:
            return event_facts(value, self._codec, enriched=False,
                               default_pixel=self._default_pixel)  # fmt: skip
        try:
            found = self._reader.read(value, offset)
        except ValueError:  # also a string that is not UTF-8
            return None
        return _facts(self._default_pixel, found["event_time"], found["action_source"])

    def _enriched_facts(self, value: bytes) -> EventFacts | None:
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
