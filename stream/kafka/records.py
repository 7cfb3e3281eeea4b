"""Convert at the edge: ``confluent_kafka.Message`` becomes :class:`stream.core.records.Record`."""

from __future__ import annotations

from confluent_kafka import TIMESTAMP_NOT_AVAILABLE, Message

from stream.core.polled import Polled
from stream.core.records import Headers, Record


def _header_bytes(value: str | bytes | None) -> bytes | None:
    return value.encode() if isinstance(value, str) else value


def to_record(msg: Message) -> Record:
    """Our frozen record for a consumed message (which must not carry an error)."""
    ts_type, ts = msg.timestamp()
    raw_headers = msg.headers() or []
    # consumed messages carry a list of pairs; the dict form exists only for producing
    pairs = raw_headers.items() if isinstance(raw_headers, dict) else raw_headers
    headers: Headers = tuple((k, _header_bytes(v)) for k, v in pairs)
    return Record(
        topic=msg.topic() or "",
        partition=msg.partition() or 0,
        offset=msg.offset() or 0,
        key=msg.key(),
        value=msg.value(),
        headers=headers,
        timestamp_ms=None if ts_type == TIMESTAMP_NOT_AVAILABLE else ts,
    )


def to_polled(messages: list[Message], waited_s: float = 0.0) -> Polled:
    """The columns of consumed messages (none carrying an error), one comprehension per field.

    The full :class:`Record` of a message is made only when asked for (a dead letter); each
    pending event keeps its own message for that until it settles.
    """
    stamps = [msg.timestamp() for msg in messages]
    return Polled(
        topics=[msg.topic() or "" for msg in messages],
        partitions=[msg.partition() or 0 for msg in messages],
        offsets=[msg.offset() or 0 for msg in messages],
        values=[msg.value() for msg in messages],
        timestamps_ms=[None if kind == TIMESTAMP_NOT_AVAILABLE else ts for kind, ts in stamps],
        sources=messages,
        record_of=_record_of,
        waited_s=waited_s,
    )


def _record_of(source: object) -> Record:
    if not isinstance(source, Message):
        raise TypeError(f"not a consumed message: {type(source).__name__}")
    return to_record(source)
