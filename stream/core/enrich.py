"""One raw record in, one enriched or dead-letter record out: the normalize stage's pure step.

The stage loop only moves bytes between Kafka and this function, so every decision about a record
(decode, validate, normalize, hash, encode, or dead-letter with a reason) is testable without a
broker. It never raises on data: whatever the bytes, the answer is an :class:`Output`. The
enriched record is version 2 of ``capi_event.avsc`` (:mod:`stream.core.envelope`): the event's
request JSON is made here, once.

Nor does it answer with an output the broker would refuse: with ``max_record_bytes`` set (the
enriched topic's, from :func:`stream.kafka.limits.record_limits`), an enriched record whose key
+ value + headers exceed it becomes a dead letter ``record_too_large``, and a dead letter over
``max_letter_bytes`` (the dead-letter topic's) keeps only bounded prefixes
(:func:`stream.core.dead_letter.encode_within`). One oversized record used to fail the produce,
crash the stage and stall its partition at every restart. The two limits are apart so that the
letter of a record too large for the enriched topic keeps the whole original when the
dead-letter topic takes it: republished once the limit is raised, not read again from the raw
topic.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

import orjson

from stream.core.codec import AvroCodec
from stream.core.dead_letter import RECORD_TOO_LARGE, dead_letter, letter_record
from stream.core.envelope import WRITTEN_SCHEMA, EnvelopeWriter, wire_envelope
from stream.core.errors import DecodeError, EncodeError
from stream.core.frozen import slot_init
from stream.core.normalize import NormalizeOptions, WireEvent, normalize_wire
from stream.core.records import Record

Destination = Literal["enriched", "dlq"]
#: The header every enriched record carries: the pixel it goes to (the deliver stage's lanes)
PIXEL_HEADER: Final = "capi.pixel_id"
_PIXEL_HEADER_BYTES: Final = len(PIXEL_HEADER.encode())
#: Pixels whose header bytes an Enricher keeps (a stage serves a handful)
_PIXEL_MEMO: Final = 1024


@slot_init  # made once per record: half the cost of the frozen dataclass's own __init__
@dataclass(frozen=True, slots=True)
class Output:
    """What to produce for one raw record, and what to count."""

    destination: Destination
    key: bytes | None
    value: bytes
    headers: tuple[tuple[str, bytes], ...]
    reason: str | None = None
    warnings: tuple[str, ...] = ()
    pixel_id: str | None = None
    #: the normalized event behind an enriched output (its name, keys and id, for the counts)
    event: WireEvent | None = None


class Enricher:
    """Turns raw records into enriched or dead-letter records (pure, reusable, thread-confined)."""

    def __init__(
        self,
        raw: AvroCodec,
        enriched: AvroCodec,
        dlq: AvroCodec,
        options: NormalizeOptions,
        *,
        max_record_bytes: int | None = None,
        max_letter_bytes: int | None = None,
    ) -> None:
        self._raw = raw
        self._enriched = enriched
        self._dlq = dlq
        self._options = options
        self._limit = max_record_bytes
        self._letter_limit = max_record_bytes if max_letter_bytes is None else max_letter_bytes
        self._headers: dict[str, tuple[tuple[str, bytes], ...]] = {}
        # the enriched body written straight from the event when the codec writes the schema
        # the writer knows (it always does in the stage); else fastavro's path alone
        header = enriched.header()
        self._writer = (
            EnvelopeWriter(header)
            if header is not None and enriched.writes(WRITTEN_SCHEMA)
            else None
        )

    def process(self, record: Record, now: float) -> Output:
        """The output for ``record`` at time ``now`` (Unix seconds)."""
        if record.value is None:
            return self._dead(record, now, "empty_value", "the record has no value (tombstone)")
        try:
            raw = self._raw.decode(record.value)
        except DecodeError as exc:
            return self._dead(record, now, f"decode_{exc.reason}", exc.detail)
        result = normalize_wire(raw, now, self._options)
        if not isinstance(result, WireEvent):
            return self._dead(
                record, now, result.reason, result.detail,
                pixel_id=result.pixel_id, event_id=result.event_id, event_name=result.event_name,
            )  # fmt: skip
        # version 2 of the enriched record: routing fields and the event's request JSON, made
        # once here from the wire object so the deliver stage only splices it
        # (stream.core.envelope)
        source = (record.topic, record.partition, record.offset)
        normalized_at_ms = int(now * 1000)
        try:
            json = orjson.dumps(result.wire)
            value = (
                None if self._writer is None
                else self._writer.body(result, source, normalized_at_ms, json)
            )  # fmt: skip
            if value is None:
                enriched = wire_envelope(
                    result, source=source, normalized_at_ms=normalized_at_ms, json=json
                )
                value = self._enriched.encode(enriched)
        except orjson.JSONEncodeError as exc:
            # a value JSON cannot hold (an integer past 64 bits): named by type, never quoted
            why = f"the event is not JSON-serializable: {type(exc).__name__}"
            return self._dead(record, now, "encode_failed", why, pixel_id=result.pixel_id)
        except EncodeError as exc:
            return self._dead(record, now, "encode_failed", str(exc), pixel_id=result.pixel_id)
        # keyed like the raw record so per-key order survives; else by event id for even spread
        key = record.key if record.key is not None else result.event_id.encode()
        headers = self._headers.get(result.pixel_id)
        if headers is None:
            headers = self._pixel_headers(result.pixel_id)
        # record_size(key, value, headers), with the header's name counted once at import
        size = len(key) + len(value) + _PIXEL_HEADER_BYTES + len(headers[0][1])
        if self._limit is not None and size > self._limit:
            why = (
                f"the enriched record is {size} bytes (key, value and headers), over the "
                f"{self._limit} bytes the broker accepts; the raw value is "
                f"{len(record.value)} bytes"
            )
            return self._dead(
                record, now, RECORD_TOO_LARGE, why, pixel_id=result.pixel_id,
                event_id=result.event_id, event_name=result.event_name,
            )  # fmt: skip
        # positional: made once per record, and keywords cost a third more
        return Output(
            "enriched", key, value, headers, None, result.warnings, result.pixel_id, result,
        )  # fmt: skip

    def _pixel_headers(self, pixel_id: str) -> tuple[tuple[str, bytes], ...]:
        # the same few pixels on every record: their header made once (bounded, in case not)
        if len(self._headers) >= _PIXEL_MEMO:
            self._headers.clear()
        headers = ((PIXEL_HEADER, str(pixel_id).encode()),)
        self._headers[pixel_id] = headers
        return headers

    def _dead(
        self,
        record: Record,
        now: float,
        reason: str,
        message: str,
        *,
        pixel_id: str | None = None,
        event_id: str | None = None,
        event_name: str | None = None,
    ) -> Output:
        letter = dead_letter(
            stage="normalize", reason=reason, message=message, record=record,
            now_ms=int(now * 1000), pixel_id=pixel_id, event_id=event_id, event_name=event_name,
        )  # fmt: skip
        out = letter_record(letter, self._dlq.encode, self._letter_limit)
        return Output("dlq", out.key, out.value, out.headers, reason=reason, pixel_id=pixel_id)
