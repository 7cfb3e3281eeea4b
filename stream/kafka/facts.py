"""What a record of the raw or enriched topic says about its event: pixel, time and source.

``replay`` and ``dlq`` decide with these whether an event can still be sent (Meta's age limits,
docs/capi.md §2.1) and whether it belongs to a pixel, without caring which topic it came from.
"""

from __future__ import annotations

from dataclasses import dataclass

from stream.core.capi import max_age_s
from stream.core.codec import AvroCodec
from stream.core.errors import DecodeError
from stream.core.validate import event_time_seconds


@dataclass(frozen=True, slots=True)
class EventFacts:
    """What replay and dlq need to know of one record: its pixel and its age."""

    pixel_id: str | None
    event_time: int | None
    action_source: str | None

    def expired(self, now: float, margin_s: float) -> bool:
        """Past Meta's age limit less ``margin_s``: the stage would dead-letter, not send it."""
        if self.event_time is None:
            return False
        return now - self.event_time > max_age_s(self.action_source) - margin_s


def event_facts(
    value: bytes | None,
    codec: AvroCodec,
    *,
    default_pixel: str | None = None,
) -> EventFacts | None:
    """The facts of a raw record value; None if unreadable. Enriched records are read by
    :class:`~stream.kafka.prefix_facts.FactsReader` from the envelope's routing fields."""
    if value is None:
        return None
    try:
        record = codec.decode(value)
    except DecodeError:
        return None
    seconds = event_time_seconds(record.get("event_time"))  # raw times may be milliseconds
    source = record.get("action_source")
    return EventFacts(
        record.get("pixel_id") or default_pixel,
        seconds[0] if isinstance(seconds, tuple) else None,
        source.strip().lower() if isinstance(source, str) else None,
    )
