"""Dead-letter records: the reason, Meta's error if any, and the original bytes, as data.

A dead letter must let an operator understand and replay the record without the stage's logs:
it keeps the original key, value and headers byte for byte, the source coordinates, and a stable
reason code. Its ``message`` names fields and sizes, never customer data or tokens.

A dead letter must also be producible: one that would exceed the largest record the broker takes
(:func:`stream.kafka.limits.max_record_bytes`) would stall its partition for good, the stage
failing on it at every restart. :func:`encode_within` therefore keeps a bounded prefix of what is
big instead of all of it, plus the original value's length and SHA-256, which still find the
producer's record::

    1,040,000-byte value  ->  original_value = its first 4,096 bytes, original_length = 1040000,
                              original_sha256 = "9f86d0...", original_truncated = true
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

from stream.core.errors import EncodeError
from stream.core.records import Record

Stage = Literal["normalize", "deliver"]

#: An output (enriched record or dead letter) over the broker's limit; see :func:`encode_within`.
RECORD_TOO_LARGE: Final = "record_too_large"
#: Meta confirmed fewer events than were sent, through every re-send (deliver stage).
SHORT_RECEIPT: Final = "short_receipt"
#: Reason codes the stages use besides :data:`stream.core.validate.REASONS`, one line each.
STAGE_REASONS: Final[Mapping[str, str]] = {
    RECORD_TOO_LARGE: (
        "the output would exceed the largest record the broker accepts; the dead letter keeps "
        "the original's length, SHA-256 and first 4 KiB"
    ),
    SHORT_RECEIPT: (
        "Meta confirmed fewer events than were sent, through every re-send; the dead letter "
        "keeps Meta's fbtrace_id"
    ),
}
#: How much of a value, key or header value a shrunk dead letter keeps.
PREFIX_BYTES: Final = 4096
#: How much of the message a shrunk dead letter keeps when even the prefixes do not fit.
_MESSAGE_CHARS: Final = 1024


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
        "original_length": len(record.value) if record.value is not None else None,
        "original_sha256": _sha256(record.value),
        "original_truncated": False,
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


@dataclass(frozen=True, slots=True)
class LetterRecord:
    """The Kafka record that carries a dead letter: key, encoded value and headers."""

    key: bytes | None
    value: bytes
    headers: tuple[tuple[str, bytes], ...]


def letter_record(
    letter: Mapping[str, Any],
    encode: Callable[[Mapping[str, Any]], bytes],
    limit: int | None,
) -> LetterRecord:
    """The record for ``letter``, whose key + value + headers fit ``limit`` bytes (None: no limit).

    The record is keyed by the original key, like the original (cut to :data:`PREFIX_BYTES`
    when it is longer, so an oversized key cannot make its own dead letter oversized).
    """
    key = letter.get("original_key")
    if limit is not None and key is not None and len(key) > PREFIX_BYTES:
        key = bytes(key[:PREFIX_BYTES])
    headers = tuple(dead_letter_headers(letter))
    if limit is None:
        return LetterRecord(key, encode(letter), headers)
    room = limit - record_size(key, b"", headers)
    return LetterRecord(key, encode_within(letter, encode, room), headers)


def encode_within(
    letter: Mapping[str, Any],
    encode: Callable[[Mapping[str, Any]], bytes],
    limit: int,
) -> bytes:
    """``encode(letter)`` if it is at most ``limit`` bytes, else a shrunk letter that is.

    Shrinking goes step by step, each only when the one before was not enough:

    1. ``original_value`` becomes its first :data:`PREFIX_BYTES` bytes;
    2. ``original_key`` and each original header value likewise;
    3. the original headers are dropped and ``message`` is cut to 1,024 characters.

    A shrunk letter has ``original_truncated`` true and its ``message`` says what was cut, from
    how many bytes; ``original_length`` and ``original_sha256`` describe the whole value. The
    reason is kept. Raises :class:`EncodeError` if not even step 3 fits (a limit far below what
    :func:`stream.kafka.limits.max_record_bytes` allows).
    """
    data = encode(letter)
    if len(data) <= limit:
        return data
    cuts: list[str] = []
    shrunk = dict(letter)
    value = letter.get("original_value")
    shrunk["original_length"] = len(value) if value is not None else None
    shrunk["original_sha256"] = _sha256(value)
    shrunk["original_truncated"] = True
    if value is not None and len(value) > PREFIX_BYTES:
        shrunk["original_value"] = bytes(value[:PREFIX_BYTES])
        cuts.append(f"value {len(value)} -> {PREFIX_BYTES} bytes")
    for step in (_cut_key_and_headers, _drop_headers):
        data = encode(_noted(shrunk, cuts, limit))
        if len(data) <= limit:
            return data
        step(shrunk, cuts)
    data = encode(_noted(shrunk, cuts, limit))
    if len(data) <= limit:
        return data
    raise EncodeError(f"a dead letter cut to prefixes is {len(data)} bytes, over {limit}")


def record_size(
    key: bytes | None, value: bytes | None, headers: Iterable[tuple[str, bytes | None]]
) -> int:
    """Bytes of a record's key, value, header names and header values (the framing not counted).

    This is what the broker's limits are compared with, less the framing that
    :data:`stream.kafka.limits.SAFETY_MARGIN` covers.
    """
    size = (len(key) if key is not None else 0) + (len(value) if value is not None else 0)
    for name, header_value in headers:
        size += len(name.encode()) + (len(header_value) if header_value is not None else 0)
    return size


def _cut_key_and_headers(shrunk: dict[str, Any], cuts: list[str]) -> None:
    key = shrunk.get("original_key")
    if key is not None and len(key) > PREFIX_BYTES:
        shrunk["original_key"] = bytes(key[:PREFIX_BYTES])
        cuts.append(f"key {len(key)} -> {PREFIX_BYTES} bytes")
    headers = []
    cut = 0
    for header in shrunk.get("headers") or []:
        value = header["value"]
        if value is not None and len(value) > PREFIX_BYTES:
            value = bytes(value[:PREFIX_BYTES])
            cut += 1
        headers.append({"key": header["key"], "value": value})
    shrunk["headers"] = headers
    if cut:
        cuts.append(f"{cut} header values -> {PREFIX_BYTES} bytes each")


def _drop_headers(shrunk: dict[str, Any], cuts: list[str]) -> None:
    headers = shrunk.get("headers") or []
    if headers:
        cuts.append(f"{len(headers)} headers dropped")
    shrunk["headers"] = []
    shrunk["message"] = str(shrunk["message"])[:_MESSAGE_CHARS]


def _noted(shrunk: Mapping[str, Any], cuts: list[str], limit: int) -> dict[str, Any]:
    # the message says what was cut and why, in sizes only (the letter's contract: never data)
    what = ", ".join(cuts) if cuts else "nothing large enough to cut"
    note = f" [dead letter cut to fit {limit} bytes: {what}]"
    return {**shrunk, "message": f"{shrunk['message']}{note}"}


def _sha256(data: bytes | None) -> str | None:
    return hashlib.sha256(data).hexdigest() if data is not None else None
