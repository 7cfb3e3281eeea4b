"""One raw record in, one enriched or dead-letter record out: the normalize stage's pure step.

The stage loop only moves bytes between Kafka and this function, so every decision about a record
(decode, validate, normalize, hash, encode, or dead-letter with a reason) is testable without a
broker. It never raises on data: whatever the bytes, the answer is an :class:`Output`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from stream.core.codec import AvroCodec
from stream.core.dead_letter import dead_letter, dead_letter_headers
from stream.core.errors import DecodeError, EncodeError
from stream.core.normalize import Normalized, NormalizeOptions, normalize_event
from stream.core.records import Record

Destination = Literal["enriched", "dlq"]


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


class Enricher:
    """Turns raw records into enriched or dead-letter records (pure, reusable, thread-confined)."""

    def __init__(
        self,
        raw: AvroCodec,
        enriched: AvroCodec,
        dlq: AvroCodec,
        options: NormalizeOptions,
    ) -> None:
        self._raw = raw
        self._enriched = enriched
        self._dlq = dlq
        self._options = options

    def process(self, record: Record, now: float) -> Output:
        """The output for ``record`` at time ``now`` (Unix seconds)."""
        if record.value is None:
            return self._dead(record, now, "empty_value", "the record has no value (tombstone)")
        try:
            raw = self._raw.decode(record.value)
        except DecodeError as exc:
            return self._dead(record, now, f"decode_{exc.reason}", exc.detail)
        result = normalize_event(raw, now, self._options)
        if not isinstance(result, Normalized):
            return self._dead(
                record, now, result.reason, result.detail,
                pixel_id=result.pixel_id, event_id=result.event_id, event_name=result.event_name,
            )  # fmt: skip
        enriched = {
            "event": result.event,
            "event_id": result.event_id,
            "pixel_id": result.pixel_id,
            "test_event_code": result.test_event_code,
            "warnings": list(result.warnings),
            "source": {
                "topic": record.topic,
                "partition": record.partition,
                "offset": record.offset,
            },
            "normalized_at": int(now * 1000),
        }
        try:
            value = self._enriched.encode(enriched)
        except EncodeError as exc:
            return self._dead(record, now, "encode_failed", str(exc), pixel_id=result.pixel_id)
        # keyed like the raw record so per-key order survives; else by event id for even spread
        key = record.key if record.key is not None else result.event_id.encode()
        headers = (("capi.pixel_id", str(result.pixel_id).encode()),)
        return Output(
            "enriched", key, value, headers, warnings=result.warnings, pixel_id=result.pixel_id
        )

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
        return Output(
            "dlq",
            record.key,
            self._dlq.encode(letter),
            tuple(dead_letter_headers(letter)),
            reason=reason,
            pixel_id=pixel_id,
        )
