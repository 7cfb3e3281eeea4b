"""Leading fields of an Avro body read without decoding the rest (stream/core/avro_prefix.py)."""

from __future__ import annotations

import io
from typing import Any

import fastavro
import pytest
from hypothesis import given
from hypothesis import strategies as st

from stream import schemas
from stream.core.avro_prefix import prefix_reader
from tests.factories import full_raw_event, raw_event

RAW = schemas.load("conversion_event")
PARSED = fastavro.parse_schema(RAW)
READER = prefix_reader(RAW, ("event_time", "action_source"))


def _body(event: dict[str, Any], schema: Any = PARSED) -> bytes:
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, schema, event)
    return buf.getvalue()


def test_time_and_source_of_whole_raw_events_are_read() -> None:
    """The minimal and the fullest raw event give their time and source, nothing else."""
    assert READER is not None
    for event in (raw_event(), full_raw_event(), raw_event(action_source=None)):
        expected = {"event_time": event["event_time"], "action_source": event["action_source"]}
        assert READER.read(_body(event)) == expected


@given(
    name=st.text(max_size=200),
    seconds=st.integers(min_value=-(2**63), max_value=2**63 - 1),
    source=st.none() | st.text(max_size=100),
)
def test_the_prefix_equals_fastavros_decode(name: str, seconds: int, source: str | None) -> None:
    """Any name, time and source (long names: several-byte lengths) read as fastavro reads."""
    assert READER is not None
    body = _body(raw_event(event_name=name, event_time=seconds, action_source=source))
    decoded = fastavro.schemaless_reader(io.BytesIO(body), PARSED, None)
    assert isinstance(decoded, dict)
    found = READER.read(body)
    assert found == {"event_time": decoded["event_time"], "action_source": decoded["action_source"]}


def test_an_offset_skips_a_wire_format_header() -> None:
    """The Confluent format's 5-byte header is passed over by the offset."""
    assert READER is not None
    body = b"\x00\x00\x00\x00\x07" + _body(raw_event(event_time=5))
    assert READER.read(body, 5)["event_time"] == 5


def test_a_body_that_ends_early_raises_value_error() -> None:
    """Every cut before the wanted fields end is a ValueError, never a wrong answer."""
    assert READER is not None
    body = _body(raw_event(event_name="Purchase", action_source="website"))
    wanted_end = 1 + len("Purchase") + 5 + 1 + 1 + len("website")
    for cut in range(wanted_end):
        with pytest.raises(ValueError, match=r"ends early|past the end"):
            READER.read(body[:cut])


def test_a_negative_length_or_unknown_branch_raises_value_error() -> None:
    """Lengths below zero and union branches the schema lacks are refused."""
    assert READER is not None
    with pytest.raises(ValueError, match="length"):
        READER.read(b"\x01")  # zig-zag 1 is -1
    with pytest.raises(ValueError, match="branch"):
        READER.read(b"\x00\x02\x04")  # "", 1, branch 2 of ["null", "string"]


def test_nested_leading_records_are_entered() -> None:
    """A wanted field inside a leading record (the enriched layout) is reached."""
    schema = {"type": "record", "name": "Outer", "fields": [
        {"name": "event", "type": {"type": "record", "name": "Inner", "fields": [
            {"name": "event_name", "type": "string"},
            {"name": "event_time", "type": "long"},
            {"name": "flag", "type": ["null", "boolean"]},
            {"name": "price", "type": "double"},
            {"name": "action_source", "type": ["null", "string"]},
        ]}},
        {"name": "tail", "type": {"type": "array", "items": "string"}},
    ]}  # fmt: skip
    reader = prefix_reader(schema, ("event.event_time", "event.action_source"))
    assert reader is not None
    event = {"event_name": "Lead", "event_time": 9, "flag": True, "price": 1.5,
             "action_source": "app"}  # fmt: skip
    body = _body({"event": event, "tail": ["x"]}, fastavro.parse_schema(schema))
    assert reader.read(body) == {"event.event_time": 9, "event.action_source": "app"}


def test_a_field_behind_a_list_cannot_be_reached() -> None:
    """pixel_id follows arrays and records of arrays: no reader, the caller decodes in full."""
    assert prefix_reader(RAW, ("pixel_id",)) is None
    assert prefix_reader(RAW, ("no_such_field",)) is None
