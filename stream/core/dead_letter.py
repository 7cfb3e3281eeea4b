"""Dead-letter records: the reason, Meta's error if any, and the original bytes, as data.

A dead letter must let an operator understand and replay the record without the stage's logs:
it keeps the original key, value and headers byte for byte, the source coordinates, and a stable
reason code. Its ``message`` names fields and sizes, never customer data or tokens.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from stream.core.records import Record

Stage = Literal["normalize", "deliver"]


@dataclass(frozen=True, slots=True)
class MetaErrorFields:
    """Meta's error for a rejected event, as the dead letter keeps it."""

    code: int | None = None
    error_subcode: int | None = None
    type: str | None = None
    message: str | None = None
    error_user_title: str | None = None
    error_user_msg: str | None = None
    fbtrace_id: str | None = None

    def as_record(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "error_subcode": self.error_subcode,
            "type": self.type,
            "message": self.message,
            "error_user_title": self.error_user_title,
            "error_user_msg": self.error_user_msg,
            "fbtrace_id": self.fbtrace_id,
        }


def dead_letter(
    *,
    stage: Stage,
    reason: str,
    message: str,
    record: Record,
    now_ms: int,
    first_failure_ms: int | None = None,
    attempts: int = 1,
    pixel_id: str | None = None,
    event_id: str | None = None,
    event_name: str | None = None,
    meta_error: MetaErrorFields | None = None,
) -> dict[str, Any]:
    """A record of ``dead_letter.avsc`` for ``record``, which failed for ``reason``."""
    return {
        "stage": stage,
        "reason": reason,
        "message": message,
        "pixel_id": pixel_id,
        "event_id": event_id,
        "event_name": event_name,
        "meta_error": meta_error.as_record() if meta_error is not None else None,
        "original_key": record.key,
        "original_value": record.value,
        "source": {
            "topic": record.topic,
            "partition": record.partition,
            "offset": record.offset,
            "timestamp": record.timestamp_ms,
        },
        "headers": [{"key": k, "value": v} for k, v in record.headers],
        "first_failure_at": first_failure_ms if first_failure_ms is not None else now_ms,
        "last_failure_at": now_ms,
        "attempts": attempts,
    }


def dead_letter_headers(letter: Mapping[str, Any]) -> list[tuple[str, bytes]]:
    """Headers on the dead-letter record so tools can filter without decoding it."""
    headers = [
        ("capi.stage", str(letter["stage"]).encode()),
        ("capi.reason", str(letter["reason"]).encode()),
    ]
    if letter.get("pixel_id"):
        headers.append(("capi.pixel_id", str(letter["pixel_id"]).encode()))
    return headers
