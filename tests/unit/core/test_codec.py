"""The Avro codec: schemaless and Confluent wire format, schema resolution, typed errors."""

from __future__ import annotations

import copy
import struct
from typing import Any

import pytest

from stream import schemas
from stream.core.codec import AvroCodec, SchemaNotFoundError
from stream.core.errors import Coordinates, DecodeError, EncodeError
from tests.factories import full_raw_event, raw_event

RAW = schemas.load("conversion_event")


def _older_raw_schema() -> dict[str, Any]:
    """The raw schema as a first release might have had it: without routing or app fields."""
    old = copy.deepcopy(RAW)
    dropped = {"pixel_id", "test_event_code", "app_data", "attribution_data"}
    old["fields"] = [f for f in old["fields"] if f["name"] not in dropped]
    return old


@pytest.mark.parametrize("wire_format", ["schemaless", "confluent"])
def test_full_event_round_trips(wire_format: str) -> None:
    """A raw event with every field populated decodes equal to what was encoded."""
    codec = AvroCodec(RAW, wire_format=wire_format, schema_id=7)  # type: ignore[arg-type]
    event = full_raw_event()
    assert codec.decode(codec.encode(event)) == event


def test_confluent_header_is_magic_byte_and_schema_id() -> None:
    """The Confluent wire format starts with byte 0 and the big-endian schema id."""
    data = AvroCodec(RAW, wire_format="confluent", schema_id=258).encode(raw_event())
    assert data[:5] == b"\x00" + struct.pack(">I", 258)


def test_older_writer_in_confluent_format_is_resolved_to_the_reader() -> None:
    """An event written with an older schema id decodes; the new fields take their defaults."""
    old_schema = _older_raw_schema()
    old_event = {
        k: v
        for k, v in raw_event().items()
        if k not in {"pixel_id", "test_event_code", "app_data", "attribution_data"}
    }
    writer = AvroCodec(old_schema, wire_format="confluent", schema_id=1)
    reader = AvroCodec(
        RAW, wire_format="confluent", schema_id=2, resolver={1: old_schema}.__getitem__
    )
    decoded = reader.decode(writer.encode(old_event))
    assert decoded["pixel_id"] is None
    assert decoded["app_data"] is None
    assert decoded["user_data"] == old_event["user_data"]


def test_older_writer_schemaless_is_resolved_when_named() -> None:
    """Schemaless events of an older producer decode when the writer schema is configured."""
    old_schema = _older_raw_schema()
    old_event = {
        k: v
        for k, v in raw_event().items()
        if k not in {"pixel_id", "test_event_code", "app_data", "attribution_data"}
    }
    data = AvroCodec(old_schema).encode(old_event)
    decoded = AvroCodec(RAW, writer_schema=old_schema).decode(data)
    assert decoded["event_name"] == "Purchase"
    assert decoded["test_event_code"] is None


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "truncated"),
        (b"\x00\x00", "truncated"),
        (b"\x01\x00\x00\x00\x07abc", "bad_magic_byte"),
        (b"\x00\x00\x00\x00\x63abc", "unknown_schema"),
    ],
)
def test_bad_confluent_bytes_raise_decode_error_with_reason(data: bytes, reason: str) -> None:
    """Truncated headers, a wrong magic byte and unknown schema ids each have their reason."""

    def resolver(schema_id: int) -> dict[str, Any]:
        raise SchemaNotFoundError(schema_id)

    codec = AvroCodec(RAW, wire_format="confluent", schema_id=7, resolver=resolver)
    with pytest.raises(DecodeError) as info:
        codec.decode(data)
    assert info.value.reason == reason
    assert info.value.raw == data


def test_truncated_body_keeps_raw_bytes_and_coordinates() -> None:
    """A cut-off record raises DecodeError keeping the bytes and, once placed, the coordinates."""
    codec = AvroCodec(RAW)
    data = codec.encode(raw_event())[:-7]
    with pytest.raises(DecodeError) as info:
        codec.decode(data)
    placed = info.value.at(Coordinates("capi.events.raw", 2, 99))
    assert placed.raw == data
    assert "capi.events.raw[2]@99" in str(placed)
    assert placed.reason in {"truncated", "corrupt"}


def test_garbage_bytes_raise_decode_error() -> None:
    """Random bytes are not silently decoded into a record."""
    codec = AvroCodec(RAW)
    with pytest.raises(DecodeError):
        codec.decode(b"\xff" * 64)


def test_decode_error_text_has_no_record_content() -> None:
    """The error's text names sizes and coordinates, never the bytes' content (it may be PII)."""
    codec = AvroCodec(RAW)
    data = codec.encode(raw_event())[:-3]
    with pytest.raises(DecodeError) as info:
        codec.decode(data)
    assert "John_Smith" not in str(info.value)


def test_encode_error_names_no_value() -> None:
    """A record that does not fit raises EncodeError without echoing the bad value."""
    event = raw_event(event_time="secret@example.com")
    with pytest.raises(EncodeError) as info:
        AvroCodec(RAW).encode(event)
    assert "secret@example.com" not in str(info.value)


@pytest.mark.parametrize("event_time", [float("inf"), 2**70])
def test_a_number_too_large_for_a_long_is_an_encode_error(event_time: object) -> None:
    """An infinite float or an int past 64 bits in a long field is EncodeError, not the
    OverflowError fastavro raises, so callers that catch EncodeError refuse the one record."""
    with pytest.raises(EncodeError, match="does not fit"):
        AvroCodec(RAW).encode(raw_event(event_time=event_time))


def test_confluent_encode_needs_schema_id() -> None:
    """Writing the Confluent format without a registered id is refused."""
    with pytest.raises(EncodeError):
        AvroCodec(RAW, wire_format="confluent").encode(raw_event())
