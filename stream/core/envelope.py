"""The enriched record, version 2: routing fields and the event's request JSON as bytes.

Version 1 (``schemas/capi_event.v1.avsc``) carried the whole event as a ~95-leaf Avro record.
The deliver stage decoded all of it on every event (over half of its CPU), only to prune it with
:func:`stream.core.wire.to_wire` and serialize it again. Version 2 (``schemas/capi_event.avsc``)
keeps as fields only what routing and the delivery rules read (pixel, event id, name, time,
action source, test code) plus provenance, and the event as the exact compact JSON object that
goes into a request's ``data`` array, made once by the normalize stage. The deliver stage splices
those bytes (:mod:`stream.core.payload`) and never parses customer data. Example::

    {"envelope": b"\\x01", "pixel_id": "1234567890", "event_id": "order-100045",
     "event_name": "Purchase", "event_time": 1767225540, "action_source": "website",
     "test_event_code": None, "warnings": [], "source": {"topic": "raw", "partition": 0,
     "offset": 7}, "normalized_at": 1767225600000,
     "event_json": b'{"event_name":"Purchase","event_time":1767225540,...}'}

**Telling the versions apart.** A version-2 Avro body starts with the marker byte ``0x01``; a
version-1 body starts with the length of ``event_name`` as a zigzag varint, whose first byte is
always even (zigzag maps a length n to 2n, and a varint's first byte keeps its low bit). So the
first byte of the body decides, in both wire formats: in the Confluent format it is the byte
after the 5-byte header, and each version's codec then resolves the writer's registry id as
usual (a version-1 writer id is decoded with the version-1 reader). No header is needed, so a
record copied by a tool that drops headers (``dlq republish``, MirrorMaker without them) is
still read right. :class:`EnrichedCodec` reads both and answers version 2's shape.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, Final

import orjson
from fastavro import schemaless_reader

from stream.core.codec import AvroCodec, SchemaResolver, WireFormat, parse
from stream.core.errors import DecodeError
from stream.core.normalize.model import WireEvent
from stream.core.wire import to_wire

#: The first byte of every version-2 body (odd; a version-1 body starts with an even byte).
MARKER = b"\x01"
_CONFLUENT_HEADER = 5


def event_json(event: Mapping[str, Any]) -> bytes:
    """The request JSON of an Avro-shaped event (``capi_event.v1.avsc``'s ``ServerEvent``).

    orjson over-allocates its result (4 KiB for a 1 KiB event); the bytes outlive the call (in
    the record, or a pending event until delivery), so they are copied to an exact-size object.
    """
    return bytes(memoryview(orjson.dumps(to_wire(event))))


def envelope(
    event: Mapping[str, Any],
    *,
    pixel_id: str,
    event_id: str,
    test_event_code: str | None,
    warnings: list[str],
    source: tuple[str, int, int],
    normalized_at_ms: int,
    json: bytes | None = None,
) -> dict[str, Any]:
    """The version-2 record of a normalized (Avro-shaped) ``event``, ready for the codec.

    ``json`` is the event's request JSON when the caller already has it; else it is made here.
    """
    topic, partition, offset = source
    return {
        "envelope": MARKER,
        "pixel_id": pixel_id,
        "event_id": event_id,
        "event_name": event["event_name"],
        "event_time": event["event_time"],
        "action_source": event.get("action_source"),
        "test_event_code": test_event_code,
        "warnings": warnings,
        "source": {"topic": topic, "partition": partition, "offset": offset},
        "normalized_at": normalized_at_ms,
        "event_json": event_json(event) if json is None else json,
    }


def wire_envelope(
    event: WireEvent,
    *,
    source: tuple[str, int, int],
    normalized_at_ms: int,
    json: bytes | None = None,
) -> dict[str, Any]:
    """The version-2 record of an event :func:`~stream.core.normalize.normalize_wire` made.

    Its JSON is serialized here, once, from the wire object: no record-shaped event, no pruning.
    ``json`` is that serialization when the caller already made it.
    """
    topic, partition, offset = source
    return {
        "envelope": MARKER,
        "pixel_id": event.pixel_id,
        "event_id": event.event_id,
        "event_name": event.event_name,
        "event_time": event.event_time,
        "action_source": event.action_source,
        "test_event_code": event.test_event_code,
        "warnings": list(event.warnings),
        "source": {"topic": topic, "partition": partition, "offset": offset},
        "normalized_at": normalized_at_ms,
        "event_json": orjson.dumps(event.wire) if json is None else json,
    }


#: The schema :class:`EnvelopeWriter` writes, field by field in this order: version 2 of
#: ``capi_event.avsc`` in parsing canonical form's terms (docs and defaults left out; a test
#: holds it equal to the schema file). A codec of any other schema keeps fastavro's writer.
WRITTEN_SCHEMA: Final[Mapping[str, Any]] = MappingProxyType(
    {
        "type": "record",
        "name": "io.capistream.enriched.CapiEvent",
        "fields": [
            {"name": "envelope", "type": {"type": "fixed", "name": "EnvelopeMarker", "size": 1}},
            {"name": "pixel_id", "type": "string"},
            {"name": "event_id", "type": "string"},
            {"name": "event_name", "type": "string"},
            {"name": "event_time", "type": "long"},
            {"name": "action_source", "type": ["null", "string"]},
            {"name": "test_event_code", "type": ["null", "string"]},
            {"name": "warnings", "type": {"type": "array", "items": "string"}},
            {
                "name": "source",
                "type": {
                    "type": "record",
                    "name": "Source",
                    "fields": [
                        {"name": "topic", "type": "string"},
                        {"name": "partition", "type": "int"},
                        {"name": "offset", "type": "long"},
                    ],
                },
            },
            {"name": "normalized_at", "type": {"type": "long", "logicalType": "timestamp-millis"}},
            {"name": "event_json", "type": "bytes"},
        ],
    }
)
_LONG_MIN: Final = -(1 << 63)
_LONG_END: Final = 1 << 63
_INT_MIN: Final = -(1 << 31)
_INT_END: Final = 1 << 31
#: Byte forms kept per value (pixel ids, names, topics, warning lists): beyond it, start over.
_MEMO_SIZE: Final = 4096
_ONE_BYTE: Final = tuple(bytes((n,)) for n in range(0x80))
#: Bounds of the varints of two to five bytes (7 bits a byte)
_TWO_BYTES: Final = 1 << 14
_THREE_BYTES: Final = 1 << 21
_FOUR_BYTES: Final = 1 << 28
_FIVE_BYTES: Final = 1 << 35


def _long(value: int) -> bytes:
    """Avro's long: zigzag, then a little-endian base-128 varint (``-1`` → ``01``, ``64`` →
    ``80 01``). The caller keeps ``value`` within 64 bits.

    Lengths, partitions, offsets and Unix seconds take one to five bytes, each written out in
    one ``bytes`` call; longer values (milliseconds) take the loop.
    """
    n = (value << 1) ^ (value >> 63)
    if n < 0x80:  # one varint byte
        return _ONE_BYTE[n]
    if n < _TWO_BYTES:
        return bytes((n & 0x7F | 0x80, n >> 7))
    if n < _THREE_BYTES:
        return bytes((n & 0x7F | 0x80, n >> 7 & 0x7F | 0x80, n >> 14))
    if n < _FOUR_BYTES:
        return bytes((n & 0x7F | 0x80, n >> 7 & 0x7F | 0x80, n >> 14 & 0x7F | 0x80, n >> 21))
    if n < _FIVE_BYTES:
        return bytes(
            (n & 0x7F | 0x80, n >> 7 & 0x7F | 0x80, n >> 14 & 0x7F | 0x80,
             n >> 21 & 0x7F | 0x80, n >> 28)
        )  # fmt: skip
    out = bytearray()
    while n >= 0x80:  # a varint byte with more to come
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _string(value: str) -> bytes:
    """Avro's string: the UTF-8 length as a long, then the bytes (``"ab"`` → ``04 61 62``)."""
    data = value.encode()
    return _long(len(data)) + data


class EnvelopeWriter:
    """Version 2's Avro body made straight from a :class:`WireEvent`, byte for byte what fastavro
    writes for :func:`wire_envelope`'s record (a property test holds the two together).

    fastavro walks its parsed schema for every record, choosing each union's branch and
    formatting every value (~7 µs for these eleven fields, as much as the event's JSON costs).
    Here the field order is fixed in code, and what repeats from event to event is formatted
    once and reused: the header, marker and pixel; the event name; the action source, test
    code, warnings and topic together (nearly always ``website``, none, none and the raw
    topic); ``normalized_at`` within a poll batch. Anything unusual (a value of another type,
    an integer past its field's range, text that is not UTF-8 encodable) answers None, and the
    caller takes fastavro's path, which writes it or names why it cannot.
    """

    __slots__ = ("_at", "_header", "_names", "_pixels", "_routes")

    def __init__(self, header: bytes) -> None:
        #: the Confluent wire format's 5 bytes, or nothing for the schemaless format
        self._header = header + MARKER
        # byte forms of the repeated values, one memo per field group (a pixel id and an event
        # name may be the same text, and their bytes differ)
        self._pixels: dict[object, bytes] = {}
        self._names: dict[object, bytes] = {}
        self._routes: dict[object, bytes] = {}
        #: the last normalized_at and its bytes: one ``now`` per poll batch
        self._at: tuple[int, bytes] = (0, _long(0))

    @staticmethod
    def _remember(memo: dict[object, bytes], key: object, found: bytes | None) -> bytes | None:
        # a memo miss: keep the bytes of a value not seen lately (None: not one to write)
        if found is not None:
            if len(memo) >= _MEMO_SIZE:
                memo.clear()
            memo[key] = found
        return found

    def _pixel(self, pixel_id: object) -> bytes | None:
        if type(pixel_id) is not str:
            return None
        return self._header + _string(pixel_id)

    @staticmethod
    def _routing(key: tuple[object, object, object, object]) -> bytes | None:
        # action_source, test_event_code, warnings and topic, as their four fields' bytes
        action_source, test_code, warnings, topic = key
        if not (
            type(action_source) is str
            and (test_code is None or type(test_code) is str)
            and type(warnings) is tuple
            and all(type(code) is str for code in warnings)
            and type(topic) is str
        ):
            return None
        return b"".join(
            (
                b"\x02" + _string(action_source),  # the union's branch 1: string
                b"\x00" if test_code is None else b"\x02" + _string(test_code),
                # an array: one block of n items and the end, or the end alone
                _long(len(warnings)) + b"".join(map(_string, warnings)) + b"\x00"
                if warnings
                else b"\x00",
                _string(topic),
            )
        )

    def body(
        self, event: WireEvent, source: tuple[str, int, int], normalized_at_ms: int, json: bytes
    ) -> bytes | None:
        """The enriched value of ``event`` (header included), or None for fastavro's path."""
        topic, partition, offset = source
        event_id, event_name, event_time = event.event_id, event.event_name, event.event_time
        if not (
            type(event_id) is str
            and type(event_time) is int
            and type(partition) is int
            and type(offset) is int
            and type(normalized_at_ms) is int
            and type(json) is bytes
            and _LONG_MIN <= event_time < _LONG_END
            and _INT_MIN <= partition < _INT_END
            and _LONG_MIN <= offset < _LONG_END
            and _LONG_MIN <= normalized_at_ms < _LONG_END
        ):
            return None
        pixel_id, routing_key = event.pixel_id, (
            event.action_source, event.test_event_code, event.warnings, topic,
        )  # fmt: skip
        try:
            pixel = self._pixels.get(pixel_id)
            if pixel is None:
                pixel = self._remember(self._pixels, pixel_id, self._pixel(pixel_id))
            name = self._names.get(event_name)
            if name is None:
                made = _string(event_name) if type(event_name) is str else None
                name = self._remember(self._names, event_name, made)
            routing = self._routes.get(routing_key)
            if routing is None:
                routing = self._remember(self._routes, routing_key, self._routing(routing_key))
            if pixel is None or name is None or routing is None:
                return None
            at, stamp = self._at
            if at != normalized_at_ms:
                stamp = _long(normalized_at_ms)
                self._at = (normalized_at_ms, stamp)
            return b"".join(
                (
                    pixel,
                    _string(event_id),
                    name,
                    _long(event_time),
                    routing,
                    _long(partition),
                    _long(offset),
                    stamp,
                    _long(len(json)),
                    json,
                )
            )
        except (UnicodeEncodeError, TypeError):
            # a lone surrogate (not UTF-8), or a value that cannot be a key: fastavro's path
            # says what it does with them
            return None


def upgrade(v1: Mapping[str, Any]) -> dict[str, Any]:
    """A decoded version-1 record in version 2's shape (its event turned into request JSON)."""
    event = v1["event"]
    return {
        "envelope": MARKER,
        "pixel_id": v1["pixel_id"],
        "event_id": v1["event_id"],
        "event_name": event["event_name"],
        "event_time": event["event_time"],
        "action_source": event.get("action_source"),
        "test_event_code": v1.get("test_event_code"),
        "warnings": v1.get("warnings") or [],
        "source": v1["source"],
        "normalized_at": v1["normalized_at"],
        "event_json": event_json(event),
    }


def is_version_1(data: bytes, wire_format: WireFormat) -> bool:
    """Whether ``data`` is a version-1 enriched value (see the module docstring)."""
    at = _CONFLUENT_HEADER if wire_format == "confluent" else 0
    return len(data) > at and not data[at] & 1


class EnrichedCodec(AvroCodec):
    """Writes version 2; reads version 2 and version 1, both answered in version 2's shape.

    >>> codec = EnrichedCodec(load("capi_event"), load("capi_event.v1"))
    >>> codec.decode(v1_value)["event_json"]     # made from the v1 event, as the v2 writer would
    b'{"event_name":"Purchase",...}'
    """

    def __init__(
        self,
        schema: Mapping[str, Any],
        previous: Mapping[str, Any],
        *,
        wire_format: WireFormat = "schemaless",
        schema_id: int | None = None,
        resolver: SchemaResolver | None = None,
    ) -> None:
        super().__init__(schema, wire_format=wire_format, schema_id=schema_id, resolver=resolver)
        # Decoding reads normalized_at as plain milliseconds: turning it into a datetime was a
        # third of a version-2 decode. The binary form is the same long, and the parsing
        # canonical form ignores logical types, so the registered id still means "same as
        # the reader" (no resolution).
        self._current = AvroCodec(
            _plain_times(schema), wire_format=wire_format, schema_id=schema_id, resolver=resolver
        )
        # decode only: resolves version-1 writer ids through the same registry
        self.previous = AvroCodec(
            _plain_times(previous), wire_format=wire_format, resolver=resolver
        )
        # the deliver stage decodes every record: a schemaless version-2 body (the common case)
        # is read straight, and anything unusual takes the general path, which explains it
        self._direct = parse(_plain_times(schema)) if wire_format == "schemaless" else None

    def decode(self, data: bytes) -> dict[str, Any]:
        """Decode a version-2 or version-1 value into version 2's shape (or raise DecodeError).

        ``normalized_at`` comes back as Unix milliseconds (an int), not a datetime.
        """
        if self._direct is not None and data[:1] == MARKER:
            stream = io.BytesIO(data)
            try:
                record = schemaless_reader(stream, self._direct, None)
            except Exception:  # noqa: BLE001 - the general path below raises the DecodeError
                record = None
            if stream.tell() == len(data) and isinstance(record, dict):
                return record
        if is_version_1(data, self.wire_format):
            record = self.previous.decode(data)
            try:
                return upgrade(record)
            except (KeyError, TypeError, orjson.JSONEncodeError) as exc:
                raise DecodeError("corrupt", "not an enriched record", bytes(data)) from exc
        return self._current.decode(data)


def _plain_times(schema: Mapping[str, Any]) -> dict[str, Any]:
    """``schema`` with its top-level ``normalized_at`` a plain long (no timestamp-millis)."""
    fields = [
        {**field, "type": "long"} if field["name"] == "normalized_at" else field
        for field in schema["fields"]
    ]
    return {**schema, "fields": fields}
