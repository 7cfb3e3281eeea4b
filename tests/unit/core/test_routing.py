"""The deliver stage's reading of an enriched record's routing fields: the same answer as the
codec's full decode for every body, valid or not, and a view of the value's tail as the JSON."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stream import schemas
from stream.core.codec import AvroCodec
from stream.core.envelope import EnrichedCodec
from stream.core.errors import DecodeError
from stream.core.normalize import Normalized, normalize_event
from stream.core.routing import LAYOUT, NotRead, Routing, RoutingReader, layout, read_v2
from tests.factories import raw_event

SCHEMA = schemas.load("capi_event")
CODEC = EnrichedCodec(SCHEMA, schemas.load("capi_event.v1"))
READER = RoutingReader(CODEC, SCHEMA)
NOW = 1_767_225_600.0 + 60

text = st.text(max_size=300)
envelopes = st.fixed_dictionaries({
    "envelope": st.just(b"\x01"), "pixel_id": text, "event_id": text, "event_name": text,
    "event_time": st.integers(-(2**63), 2**63 - 1),
    "action_source": st.none() | text, "test_event_code": st.none() | text,
    "warnings": st.lists(text, max_size=4),
    "source": st.fixed_dictionaries({
        "topic": text, "partition": st.integers(-(2**31), 2**31 - 1),
        "offset": st.integers(-(2**63), 2**63 - 1),
    }),
    "normalized_at": st.integers(-(2**62), 2**62),
    "event_json": st.binary(max_size=2000),
})  # fmt: skip


def routing_of(record: dict[str, Any]) -> tuple[Any, ...]:
    """What the codec's full decode says of the routing fields."""
    return (
        record["pixel_id"], record["event_id"], record["event_name"], record["event_time"],
        record["action_source"], record["test_event_code"], record["event_json"],
    )  # fmt: skip


def plain(routing: Routing) -> tuple[Any, ...]:
    return (*routing[:6], bytes(routing[6]))


def answers(value: bytes) -> tuple[tuple[Any, ...] | str, tuple[Any, ...] | str]:
    """The reader's answer and the codec's for ``value``: its routing fields, or the reason of
    the DecodeError."""
    try:
        expected: tuple[Any, ...] | str = routing_of(CODEC.decode(value))
    except DecodeError as exc:
        expected = exc.reason
    try:
        got: tuple[Any, ...] | str = plain(READER.read(value))
    except DecodeError as exc:
        got = exc.reason
    return got, expected


def test_the_layout_is_the_schemas() -> None:
    """The fast path is on for the schema as shipped (a changed schema turns it off, not wrong)."""
    assert layout(SCHEMA) == LAYOUT
    changed = {**SCHEMA, "fields": [*SCHEMA["fields"][:-1], {"name": "x", "type": "long"}]}
    assert layout(changed) != LAYOUT
    assert RoutingReader(CODEC, changed).fast is False


@given(envelopes)
@settings(max_examples=300, deadline=None)
def test_valid_bodies_read_as_the_codec_decodes_them(record: dict[str, Any]) -> None:
    """Any version-2 record: the fast path answers exactly the codec's fields, and the JSON is
    a view of the value's own tail (no copy)."""
    value = CODEC.encode(record)
    routing = read_v2(value)
    assert plain(routing) == routing_of(CODEC.decode(value))
    assert isinstance(routing[6], memoryview)
    assert routing[6].obj is value


@given(envelopes, st.data())
@settings(max_examples=300, deadline=None)
def test_damaged_bodies_answer_what_the_codec_answers(record: dict[str, Any], data: Any) -> None:
    """A body cut short, with bytes after it, or with a byte changed: the reader answers the
    codec's fields, or raises the codec's DecodeError, never something the codec would not."""
    value = CODEC.encode(record)
    kind = data.draw(st.sampled_from(["cut", "extra", "flip"]))
    if kind == "cut":
        damaged = value[: data.draw(st.integers(1, len(value) - 1))]
    elif kind == "extra":
        damaged = value + data.draw(st.binary(min_size=1, max_size=4))
    else:
        at = data.draw(st.integers(1, len(value) - 1))
        damaged = value[:at] + bytes([data.draw(st.integers(0, 255))]) + value[at + 1 :]
    got, expected = answers(damaged)
    assert got == expected


def test_other_bodies_take_the_codec() -> None:
    """A version-1 record is upgraded by the codec (its JSON made there: the codec's bytes) and
    garbage raises the codec's DecodeError."""
    result = normalize_event(raw_event(), NOW)
    assert isinstance(result, Normalized), result
    v1_value = AvroCodec(schemas.load("capi_event.v1")).encode({
        "event": result.event, "event_id": result.event_id, "pixel_id": result.pixel_id,
        "test_event_code": None, "warnings": [], "source": {"topic": "raw", "partition": 0,
        "offset": 0}, "normalized_at": int(NOW * 1000),
    })  # fmt: skip
    routing = READER.read(v1_value)
    assert routing == routing_of(CODEC.decode(v1_value))
    assert isinstance(routing[6], bytes)
    for garbage in (b"\x01\xff\xff", b"", b"\x01"):
        with pytest.raises(DecodeError):
            READER.read(garbage)


def test_the_confluent_format_takes_the_codec() -> None:
    """The Confluent wire format (a registry id before the body) is never read by the fast
    path: the codec resolves the writer's schema."""
    confluent = EnrichedCodec(
        SCHEMA, schemas.load("capi_event.v1"), wire_format="confluent", schema_id=8,
        resolver=lambda _: SCHEMA,
    )  # fmt: skip
    reader = RoutingReader(confluent, SCHEMA)
    assert reader.fast is False
    record = {
        "envelope": b"\x01", "pixel_id": "111", "event_id": "e1", "event_name": "Lead",
        "event_time": 5, "action_source": None, "test_event_code": "T1", "warnings": ["w"],
        "source": {"topic": "raw", "partition": 0, "offset": 0}, "normalized_at": 0,
        "event_json": b'{"event_name":"Lead"}',
    }  # fmt: skip
    value = confluent.encode(record)
    routing = reader.read(value)
    assert plain(routing) == routing_of(record)
    assert isinstance(routing[6], memoryview)  # the tail of the value, not a copy


def test_a_varint_wider_than_a_long_takes_the_codec() -> None:
    """An event_time written with more than 64 bits (ten bytes, the last one large) is not read
    by the fast path: the answer is the codec's, whatever it makes of it."""
    record = {
        "envelope": b"\x01", "pixel_id": "1", "event_id": "e", "event_name": "Lead",
        "event_time": 0, "action_source": None, "test_event_code": None, "warnings": [],
        "source": {"topic": "raw", "partition": 0, "offset": 0}, "normalized_at": 0,
        "event_json": b"{}",
    }  # fmt: skip
    value = CODEC.encode(record)
    at = value.index(b"Lead") + 4  # event_time's one byte (zero)
    wide = value[:at] + b"\xff" * 9 + b"\x7f" + value[at + 1 :]
    with pytest.raises(NotRead):
        read_v2(wide)
    got, expected = answers(wide)
    assert got == expected
