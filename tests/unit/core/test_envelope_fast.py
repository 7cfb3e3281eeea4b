"""The enriched record's direct writer answers fastavro's bytes, or steps aside for fastavro."""

from __future__ import annotations

import struct
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stream import schemas
from stream.core.codec import AvroCodec
from stream.core.enrich import Enricher
from stream.core.envelope import WRITTEN_SCHEMA, EnrichedCodec, EnvelopeWriter, wire_envelope
from stream.core.normalize import DEFAULT_OPTIONS, WireEvent
from stream.core.records import Record
from tests.factories import custom_data, full_raw_event, raw_event

NOW = 1_767_225_600.0 + 60

text = st.one_of(
    st.sampled_from(["", "Purchase", "website", "1000000000000001", "capi.events.raw"]),
    st.text(max_size=80),
    st.text(min_size=60, max_size=200),  # lengths past one varint byte
)
longs = st.one_of(
    st.integers(-(2**63), 2**63 - 1),
    st.sampled_from([0, -1, 63, 64, -64, -65, 1_767_225_600, 1_767_225_600_000, 2**63 - 1]),
)
ints = st.integers(-(2**31), 2**31 - 1)
warnings = st.lists(st.sampled_from(["event_time_clamped", "ph_invalid_dropped", "é"]), max_size=3)


def wire_event(**fields: Any) -> WireEvent:
    base: dict[str, Any] = {
        "wire": {},
        "event_id": "order-1",
        "event_id_derived": False,
        "pixel_id": "1000000000000001",
        "event_name": "Purchase",
        "event_time": 1_767_225_600,
        "action_source": "website",
        "test_event_code": None,
        "warnings": (),
    }
    return WireEvent(**{**base, **fields})


def codec(wire: str) -> AvroCodec:
    if wire == "schemaless":
        return AvroCodec(schemas.load("capi_event"))
    return AvroCodec(schemas.load("capi_event"), wire_format="confluent", schema_id=8)


CODECS = {wire: codec(wire) for wire in ("schemaless", "confluent")}


@settings(max_examples=400, deadline=None)
@given(
    wire=st.sampled_from(sorted(CODECS)),
    pixel_id=text,
    event_id=text,
    event_name=text,
    event_time=longs,
    action_source=text,
    test_event_code=st.one_of(st.none(), text),
    codes=warnings,
    topic=text,
    partition=ints,
    offset=longs,
    normalized_at=longs,
    json=st.binary(max_size=300),
)
def test_the_direct_writer_writes_fastavros_bytes(  # noqa: PLR0917 - one per field
    wire: str,
    pixel_id: str,
    event_id: str,
    event_name: str,
    event_time: int,
    action_source: str,
    test_event_code: str | None,
    codes: list[str],
    topic: str,
    partition: int,
    offset: int,
    normalized_at: int,
    json: bytes,
) -> None:
    """For any field values (lengths past one varint byte, negative and 64-bit extremes,
    non-ASCII text), the direct body is byte for byte fastavro's encoding of the record."""
    event = wire_event(
        event_id=event_id, pixel_id=pixel_id, event_name=event_name, event_time=event_time,
        action_source=action_source, test_event_code=test_event_code, warnings=tuple(codes),
    )  # fmt: skip
    avro = CODECS[wire]
    header = avro.header()
    assert header is not None
    writer = EnvelopeWriter(header)
    source = (topic, partition, offset)
    expected = avro.encode(
        wire_envelope(event, source=source, normalized_at_ms=normalized_at, json=json)
    )
    assert writer.body(event, source, normalized_at, json) == expected
    # and again, now from what the writer remembered of the first event
    assert writer.body(event, source, normalized_at, json) == expected


@pytest.mark.parametrize(
    ("change", "source"),
    [
        ({"event_time": 2**63}, ("t", 0, 0)),  # past a long: fastavro says why
        ({"pixel_id": "\ud800"}, ("t", 0, 0)),  # a lone surrogate is not UTF-8
        ({"warnings": ("ok", 3)}, ("t", 0, 0)),  # a warning that is not text
        ({}, ("t", 2**31, 0)),  # a partition past an Avro int
        ({}, ("t", 0, -(2**63) - 1)),  # an offset past a long
        ({"test_event_code": 5}, ("t", 0, 0)),
    ],
)
def test_anything_unusual_is_left_to_fastavro(change: dict[str, Any], source: Any) -> None:
    """A value the direct writer was not made for answers None: the caller's fastavro path
    then writes it or raises the EncodeError it always raised."""
    writer = EnvelopeWriter(b"")
    assert writer.body(wire_event(**change), source, 0, b"{}") is None


def test_the_written_schema_is_the_enriched_schema() -> None:
    """The schema the writer spells out field by field is version 2 of capi_event.avsc (same
    parsing canonical form); version 1 is not, so its codec never gets the direct writer."""
    assert AvroCodec(schemas.load("capi_event")).writes(WRITTEN_SCHEMA)
    assert not AvroCodec(schemas.load("capi_event.v1")).writes(WRITTEN_SCHEMA)


def test_the_header_is_what_encode_writes_first() -> None:
    """The Confluent header is the magic byte and the schema id; schemaless has none; a
    Confluent codec without an id has no header (it cannot write at all)."""
    assert CODECS["schemaless"].header() == b""
    assert CODECS["confluent"].header() == struct.pack(">bI", 0, 8)
    assert AvroCodec(schemas.load("capi_event"), wire_format="confluent").header() is None


def test_the_memo_of_repeated_values_starts_over_when_full() -> None:
    """Pixel ids or names that never repeat cannot grow the writer without bound, and what it
    writes after starting over is still fastavro's bytes."""
    avro = CODECS["schemaless"]
    writer = EnvelopeWriter(b"")
    for n in range(5000):
        event = wire_event(pixel_id=f"p{n}", event_name=f"e{n}")
        body = writer.body(event, ("t", 0, n), n, b"{}")
        if n % 997 == 0:
            record = wire_envelope(event, source=("t", 0, n), normalized_at_ms=n, json=b"{}")
            assert body == avro.encode(record)
    assert max(map(len, (writer._pixels, writer._names, writer._routes))) <= 4096


def test_one_text_as_pixel_and_as_event_name_is_written_right_both_ways() -> None:
    """The writer remembers pixels, names and routing fields apart: a text seen first as a
    pixel id and then as an event name (and the other way round) is written each time as its
    field wants, header and marker only before the pixel."""
    avro = CODECS["confluent"]
    header = avro.header()
    assert header is not None
    writer = EnvelopeWriter(header)
    for pixel_id, event_name in [("Lead", "Purchase"), ("Purchase", "Lead"), ("Lead", "Lead")]:
        event = wire_event(pixel_id=pixel_id, event_name=event_name, action_source=pixel_id)
        record = wire_envelope(event, source=(event_name, 1, 2), normalized_at_ms=3, json=b"{}")
        assert writer.body(event, (event_name, 1, 2), 3, b"{}") == avro.encode(record)


@pytest.mark.parametrize("wire", ["schemaless", "confluent"])
def test_the_enricher_writes_what_fastavros_path_writes(wire: str) -> None:
    """The stage's Enricher (with the codec the stage builds, EnrichedCodec) answers the same
    records whether it writes the body directly or through fastavro: value, key, headers,
    warnings, for events with warnings, a test code, other sources and a derived id."""
    confluent = wire == "confluent"
    raw = AvroCodec(
        schemas.load("conversion_event"), wire_format=wire, schema_id=1 if confluent else None
    )
    enriched = EnrichedCodec(
        schemas.load("capi_event"), schemas.load("capi_event.v1"), wire_format=wire,
        schema_id=2 if confluent else None,
    )  # fmt: skip
    dlq = AvroCodec(
        schemas.load("dead_letter"), wire_format=wire, schema_id=3 if confluent else None
    )
    direct = Enricher(raw, enriched, dlq, DEFAULT_OPTIONS)
    general = Enricher(raw, enriched, dlq, DEFAULT_OPTIONS)
    general._writer = None
    assert direct._writer is not None
    events = [
        raw_event(),
        full_raw_event(),
        raw_event(event_id=None),
        raw_event(test_event_code="TEST42", event_time=int(NOW * 1000)),
        raw_event(action_source="physical_store", event_source_url=None),
        raw_event(event_name="Lead", custom_data=custom_data(currency="zz", value=float("nan"))),
    ]
    for offset, event in enumerate(events):
        record = Record("capi.events.raw", 3, offset, None, raw.encode(event))
        got, expected = direct.process(record, NOW), general.process(record, NOW)
        assert got.destination == "enriched", got.reason
        assert (got.key, got.value, got.headers, got.warnings) == (
            expected.key, expected.value, expected.headers, expected.warnings,
        )  # fmt: skip
    assert any(direct.process(Record("t", 0, 0, None, raw.encode(e)), NOW).warnings for e in events)
