"""Version 2 of the enriched record (the envelope) and reading version 1 beside it (issue 11)."""

from __future__ import annotations

import io
import struct
from typing import Any

import fastavro
import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from stream import schemas
from stream.core.codec import AvroCodec, SchemaNotFoundError
from stream.core.envelope import MARKER, EnrichedCodec, envelope, event_json, is_version_1
from stream.core.errors import DecodeError
from stream.core.normalize import Normalized, normalize_event
from stream.core.wire import to_wire
from tests.factories import full_raw_event, raw_event
from tests.shape import check_event_json

NOW = 1_767_225_600.0 + 60
V1_ID, V2_ID = 7, 8


def normalized(event: dict[str, Any]) -> Normalized:
    result = normalize_event(event, NOW)
    assert isinstance(result, Normalized), result
    return result


def v1_record(result: Normalized, offset: int = 0) -> dict[str, Any]:
    """The previous enriched record, as a normalizer before issue 11 wrote it."""
    return {
        "event": result.event, "event_id": result.event_id, "pixel_id": result.pixel_id,
        "test_event_code": result.test_event_code, "warnings": list(result.warnings),
        "source": {"topic": "raw", "partition": 0, "offset": offset},
        "normalized_at": int(NOW * 1000),
    }  # fmt: skip


def v2_record(result: Normalized, offset: int = 0) -> dict[str, Any]:
    return envelope(
        result.event, pixel_id=result.pixel_id, event_id=result.event_id,
        test_event_code=result.test_event_code, warnings=list(result.warnings),
        source=("raw", 0, offset), normalized_at_ms=int(NOW * 1000),
    )  # fmt: skip


def resolver(schema_id: int) -> dict[str, Any]:
    """A registry holding version 1 under id 7 and version 2 under id 8."""
    if schema_id == V1_ID:
        return schemas.load("capi_event.v1")
    if schema_id == V2_ID:
        return schemas.load("capi_event")
    raise SchemaNotFoundError(schema_id)


def codecs(wire: str) -> tuple[AvroCodec, AvroCodec, EnrichedCodec]:
    """Writers of version 1 and 2 and the reader of both, in one wire format."""
    if wire == "schemaless":
        return (
            AvroCodec(schemas.load("capi_event.v1")),
            AvroCodec(schemas.load("capi_event")),
            EnrichedCodec(schemas.load("capi_event"), schemas.load("capi_event.v1")),
        )
    return (
        AvroCodec(schemas.load("capi_event.v1"), wire_format="confluent", schema_id=V1_ID),
        AvroCodec(schemas.load("capi_event"), wire_format="confluent", schema_id=V2_ID),
        EnrichedCodec(schemas.load("capi_event"), schemas.load("capi_event.v1"),
                      wire_format="confluent", schema_id=V2_ID, resolver=resolver),
    )  # fmt: skip


EVENTS = {
    "minimal": raw_event(),
    "full": full_raw_event(),
    "physical_store": raw_event(action_source="physical_store", event_source_url=None),
    "test_event": raw_event(test_event_code="TEST42"),
}


@pytest.mark.parametrize("wire", ["schemaless", "confluent"])
@pytest.mark.parametrize("name", sorted(EVENTS))
def test_both_versions_read_as_the_same_envelope(wire: str, name: str) -> None:
    """A version-1 and a version-2 record of one event decode to equal version-2 records."""
    write_v1, write_v2, reader = codecs(wire)
    result = normalized(EVENTS[name])
    old = reader.decode(write_v1.encode(v1_record(result)))
    new = reader.decode(write_v2.encode(v2_record(result)))
    assert old == new
    assert new["event_json"] == orjson.dumps(to_wire(result.event))
    event = check_event_json(new["event_json"])
    # the routing fields say what the JSON says
    assert (new["event_id"], new["event_name"], new["event_time"], new.get("action_source")) == (
        event["event_id"],
        event["event_name"],
        event["event_time"],
        event.get("action_source"),
    )
    assert new["test_event_code"] == result.test_event_code


@pytest.mark.parametrize("wire", ["schemaless", "confluent"])
def test_a_mixed_run_of_records_decodes_in_order(wire: str) -> None:
    """Old and new records interleaved (a backlog meeting a new normalizer) all decode."""
    write_v1, write_v2, reader = codecs(wire)
    values = [
        (write_v1 if i % 3 else write_v2).encode(
            (v1_record if i % 3 else v2_record)(normalized(raw_event(event_id=f"e-{i}")), i)
        )
        for i in range(12)
    ]
    decoded = [reader.decode(v) for v in values]
    assert [d["event_id"] for d in decoded] == [f"e-{i}" for i in range(12)]
    assert [d["source"]["offset"] for d in decoded] == list(range(12))
    assert all(d["envelope"] == MARKER for d in decoded)


def test_the_new_record_starts_with_the_marker() -> None:
    """Version 2 of a full event is the marker, ten routing fields and one bytes value."""
    _, write_v2, _ = codecs("schemaless")
    value = write_v2.encode(v2_record(normalized(full_raw_event())))
    assert value[:1] == MARKER
    assert len(fastavro.parse_schema(schemas.load("capi_event"))["fields"]) == 11


@given(st.text(max_size=300))
def test_a_version_1_body_never_starts_with_an_odd_byte(name: str) -> None:
    """The first byte of a version-1 body (event_name's zigzag length) is even: never 0x01."""
    write_v1, _, _ = codecs("schemaless")
    result = normalized(raw_event())
    record = v1_record(result)
    record["event"] = {**result.event, "event_name": name}
    value = write_v1.encode(record)
    assert is_version_1(value, "schemaless")
    assert is_version_1(struct.pack(">bI", 0, V1_ID) + value, "confluent")


def test_version_2_is_a_backward_compatible_successor_of_version_1() -> None:
    """A registry in BACKWARD mode accepts version 2: its reader resolves version-1 data."""
    write_v1, _, _ = codecs("schemaless")
    value = write_v1.encode(v1_record(normalized(raw_event())))
    old = fastavro.parse_schema(schemas.load("capi_event.v1"))
    new = fastavro.parse_schema(schemas.load("capi_event"))
    record = fastavro.schemaless_reader(io.BytesIO(value), old, new)
    assert record["event_id"] == "order-100045"  # never read so by us: the first byte decides


@pytest.mark.parametrize("wire", ["schemaless", "confluent"])
@pytest.mark.parametrize("first", [b"\x02", b"\x01"])
def test_corrupt_values_of_either_version_raise_decode_error(wire: str, first: bytes) -> None:
    """Garbage after either first byte is a DecodeError (a dead letter), never another error."""
    *_, reader = codecs(wire)
    schema_id = V2_ID if first == MARKER else V1_ID
    header = b"" if wire == "schemaless" else struct.pack(">bI", 0, schema_id)
    with pytest.raises(DecodeError):
        reader.decode(header + first + b"\xff" * 40)


def test_event_json_is_exact_size_compact_json() -> None:
    """The stored bytes are orjson's compact text, in an exact-size object."""
    data = event_json(normalized(full_raw_event()).event)
    assert type(data) is bytes
    assert data == orjson.dumps(orjson.loads(data))


@pytest.mark.parametrize("cut", ["truncated", "trailing"])
def test_a_damaged_version_2_body_reads_as_the_general_decoder_says(cut: str) -> None:
    """The direct read of schemaless version-2 bodies changes no verdict: a body cut short or
    followed by extra bytes raises the same DecodeError (reason and message) as the general
    path, and a whole body decodes to the same record."""
    _, writer, reader = codecs("schemaless")
    whole = writer.encode(v2_record(normalized(EVENTS["full"])))
    damaged = whole[:-3] if cut == "truncated" else whole + b"\x00\x00"
    with pytest.raises(DecodeError) as direct:
        reader.decode(damaged)
    with pytest.raises(DecodeError) as slow:
        reader._current.decode(damaged)
    assert (direct.value.reason, str(direct.value)) == (slow.value.reason, str(slow.value))
    assert reader.decode(whole) == reader._current.decode(whole)
