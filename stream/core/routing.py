"""What the deliver stage reads of an enriched record: its routing fields and where its JSON is.

The deliver stage needs six fields of a version-2 enriched record (pixel, event id, name,
time, action source, test code) and the event's JSON, which it splices into requests as is.
fastavro decodes all eleven fields into a dict, and copies the JSON (about 1 KiB) out of the
record's value. The JSON is the record's last field, so the value *ends* with it: reading the
fields before it is a handful of varints and short strings, and the JSON can stay where it is,
as a view of the value's tail (which the stage keeps anyway, for a dead letter).

    >>> reader = RoutingReader(codec, schema)         # schema: capi_event.avsc, version 2
    >>> reader.read(value)
    ('1234567890', 'order-100045', 'Purchase', 1767225540, 'website', None, <memory at 0x...>)

Only a schemaless version-2 body written with exactly this layout takes that path; anything
else (the Confluent wire format, a version-1 record, a body this reader finds odd in any way:
a union branch it does not know, a length past the end, bytes after the JSON, text that is not
UTF-8) is decoded by the codec, which answers the same fields or raises the
:class:`~stream.core.errors.DecodeError` that explains it. So the fast path never decides
whether a record is valid: it only answers for records it reads completely.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final, Protocol

from stream.core.envelope import MARKER

#: One event's routing fields: pixel_id, event_id, event_name, event_time, action_source,
#: test_event_code, and its request JSON (a view of the value's tail, or bytes).
Routing = tuple[str, str, str, int, "str | None", "str | None", "bytes | memoryview"]

#: The version-2 layout the fast path reads, field by field (name, Avro type as written).
LAYOUT: Final = (
    ("envelope", "fixed:1"), ("pixel_id", "string"), ("event_id", "string"),
    ("event_name", "string"), ("event_time", "long"), ("action_source", "null|string"),
    ("test_event_code", "null|string"), ("warnings", "array:string"),
    ("source", "record:topic=string,partition=int,offset=long"), ("normalized_at", "long"),
    ("event_json", "bytes"),
)  # fmt: skip

_MARKER_BYTE: Final = MARKER[0]


class NotRead(ValueError):
    """The fast path does not read this body; the codec does."""


class Decoder(Protocol):
    """The enriched codec's side the reader uses."""

    @property
    def wire_format(self) -> str: ...

    def decode(self, data: bytes) -> dict[str, Any]: ...


class RoutingReader:
    """Reads :data:`Routing` from enriched values; raises the codec's DecodeError when bad."""

    __slots__ = ("_decode", "fast")

    def __init__(self, codec: Decoder, schema: Mapping[str, Any]) -> None:
        self._decode = codec.decode
        #: whether :func:`read_v2` may read this codec's values (a caller that reads many may
        #: call it first, and :meth:`read` when it raises)
        self.fast = codec.wire_format == "schemaless" and layout(schema) == LAYOUT

    def read(self, data: bytes) -> Routing:
        """The routing fields of one enriched value (version 2 or 1, any wire format)."""
        if self.fast and data[:1] == MARKER:
            try:
                return read_v2(data)
            except (IndexError, ValueError):  # NotRead is one
                pass  # the codec reads it, or says why it cannot
        record = self._decode(data)
        event_json: bytes = record["event_json"]
        return (
            record["pixel_id"], record["event_id"], record["event_name"], record["event_time"],
            record["action_source"], record["test_event_code"],
            # a version-2 value ends with the JSON: a view of it there, not the decoder's copy
            # (a pending event then holds one copy of its JSON, not two)
            memoryview(data)[len(data) - len(event_json) :]
            if data.endswith(event_json) else event_json,
        )  # fmt: skip


def read_v2(data: bytes) -> Routing:  # noqa: PLR0915 - written out: the hot path
    """The routing fields of a schemaless version-2 body of :data:`LAYOUT`.

    Raises :class:`IndexError` (ends early) or :class:`ValueError` (not UTF-8, or anything
    else it does not read completely); :class:`RoutingReader` then asks the codec.
    Written out field by field (no call for a one-byte length or a varint): this runs once per
    event of the stage.
    """
    if data[0] != _MARKER_BYTE:
        raise NotRead
    # A string is a zigzag length and UTF-8. The lengths here are one byte (below 64) almost
    # always: read inline; anything else through _string. A length past the end is caught by
    # the next read (an IndexError), as every field here has one after it.
    byte = data[1]
    if byte < 0x80 and not byte & 1:
        pos = 2 + (byte >> 1)
        pixel_id = data[2:pos].decode()
    else:
        pos, pixel_id = _string(data, 1)
    byte = data[pos]
    if byte < 0x80 and not byte & 1:
        end = pos + 1 + (byte >> 1)
        event_id = data[pos + 1 : end].decode()
        pos = end
    else:
        pos, event_id = _string(data, pos)
    byte = data[pos]
    if byte < 0x80 and not byte & 1:
        end = pos + 1 + (byte >> 1)
        event_name = data[pos + 1 : end].decode()
        pos = end
    else:
        pos, event_name = _string(data, pos)
    byte = data[pos]  # event_time: a zigzag varint (five bytes for today's times)
    value, shift = byte & 0x7F, 7
    while byte >= 0x80:
        pos += 1
        byte = data[pos]
        value |= (byte & 0x7F) << shift
        shift += 7
    if value >> 64:
        raise NotRead  # wider than a long: the codec says what it makes of it
    event_time, pos = (value >> 1) ^ -(value & 1), pos + 1
    branch = data[pos]  # action_source: ["null", "string"], branch 1 is zigzag 2
    if branch == 0:
        action_source, pos = None, pos + 1
    elif branch == 2:
        byte = data[pos + 1]
        if byte < 0x80 and not byte & 1:
            end = pos + 2 + (byte >> 1)
            action_source = data[pos + 2 : end].decode()
            pos = end
        else:
            pos, action_source = _string(data, pos + 1)
    else:
        raise NotRead
    branch = data[pos]  # test_event_code: the same union (null, mostly)
    if branch == 0:
        test_event_code, pos = None, pos + 1
    elif branch == 2:
        pos, test_event_code = _string(data, pos + 1)
    else:
        raise NotRead
    if data[pos] == 0:  # warnings: an empty array (the usual case) is one zero byte
        pos += 1
    else:
        pos = _skip_strings(data, pos)
    byte = data[pos]  # source.topic: decoded only to refuse what is not UTF-8
    if byte < 0x80 and not byte & 1:
        end = pos + 1 + (byte >> 1)
        data[pos + 1 : end].decode()
        pos = end
    else:
        pos, _ = _string(data, pos)
    for _ in range(3):  # source.partition, source.offset, normalized_at: passed over
        while data[pos] >= 0x80:
            pos += 1
        pos += 1
    byte = data[pos]  # event_json's length (two bytes for a usual event)
    size, shift = byte & 0x7F, 7
    while byte >= 0x80:
        pos += 1
        byte = data[pos]
        size |= (byte & 0x7F) << shift
        shift += 7
    pos += 1
    # the last field, so the value's tail: a length past the end, or bytes after it (or an odd,
    # negative, one), and the codec decides
    if size & 1 or pos + (size >> 1) != len(data):
        raise NotRead
    return (
        pixel_id, event_id, event_name, event_time, action_source, test_event_code,
        memoryview(data)[pos:],
    )  # fmt: skip


def _skip_strings(data: bytes, pos: int) -> int:
    """The position after an array of strings (its blocks) starting at ``pos``; each string
    must be UTF-8, as the codec would have it."""
    while True:
        count, pos = _long(data, pos)
        if count == 0:
            return pos
        if count < 0:  # a block with its size in bytes (rare): the codec reads it
            raise NotRead
        for _ in range(count):
            pos, _ = _string(data, pos)  # decoded only to refuse what is not UTF-8


def _string(data: bytes, pos: int) -> tuple[int, str]:
    byte = data[pos]
    if byte < 0x80:
        size, pos = (byte >> 1) ^ -(byte & 1), pos + 1
    else:
        size, pos = _long(data, pos)
    end = pos + size
    if size < 0 or end > len(data):
        raise NotRead
    return end, data[pos:end].decode()


def _long(data: bytes, pos: int) -> tuple[int, int]:
    """The zig-zag varint at ``pos`` and the position after it (IndexError past the end)."""
    byte = data[pos]
    if byte < 0x80:
        return (byte >> 1) ^ -(byte & 1), pos + 1
    result, shift = byte & 0x7F, 7
    while True:
        pos += 1
        byte = data[pos]
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return (result >> 1) ^ -(result & 1), pos + 1
        shift += 7
        if shift > 63:
            raise NotRead


def layout(schema: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    """A record schema's fields as :data:`LAYOUT` writes them (to compare with it)."""
    return tuple((str(field["name"]), _kind(field["type"])) for field in schema["fields"])


def _kind(avro: Any) -> str:
    if isinstance(avro, str):
        return avro
    if isinstance(avro, list):
        return "|".join(_kind(branch) for branch in avro)
    if isinstance(avro, Mapping):
        kind = str(avro.get("type"))
        if kind == "fixed":
            return f"fixed:{avro.get('size')}"
        if kind == "array":
            return f"array:{_kind(avro.get('items'))}"
        if kind == "record":
            fields = ",".join(f"{f['name']}={_kind(f['type'])}" for f in avro.get("fields", []))
            return f"record:{fields}"
        return kind  # a logical type reads as its base type (timestamp-millis: a long)
    return repr(avro)
