"""FactsReader: an event's age facts from the record's prefix, as event_facts gives them."""

from __future__ import annotations

from typing import Any

import pytest

from stream import schemas
from stream.core.codec import AvroCodec, WireFormat
from stream.kafka.facts import event_facts
from stream.kafka.prefix_facts import FactsReader
from tests.factories import raw_event

RAW = schemas.load("conversion_event")


def _events() -> list[dict[str, Any]]:
    return [
        raw_event(),
        raw_event(event_time=1_767_225_600_123),  # milliseconds
        raw_event(action_source=" Physical_Store "),
        raw_event(action_source=None, pixel_id=None),
    ]


@pytest.mark.parametrize("wire_format", ["schemaless", "confluent"])
def test_prefix_facts_equal_the_full_decode(wire_format: WireFormat) -> None:
    """Time and source read from the prefix equal event_facts'; the pixel comes with need_pixel."""
    codec = AvroCodec(RAW, wire_format=wire_format, schema_id=7)
    reader = FactsReader(codec, RAW, enriched=False, default_pixel="P0")
    for event in _events():
        value = codec.encode(event)
        full = event_facts(value, codec, default_pixel="P0")
        quick = reader.facts(value)
        assert full is not None
        assert quick is not None
        assert (quick.event_time, quick.action_source) == (full.event_time, full.action_source)
        assert quick.pixel_id == "P0"  # the prefix does not reach the pixel
        assert reader.facts(value, need_pixel=True) == full


def test_another_writer_schema_is_decoded_in_full() -> None:
    """A record written under another registry id than ours goes the full way (its layout)."""
    writer = AvroCodec(RAW, wire_format="confluent", schema_id=8)
    codec = AvroCodec(RAW, wire_format="confluent", schema_id=7, resolver={8: RAW}.__getitem__)
    reader = FactsReader(codec, RAW, enriched=False)
    facts = reader.facts(writer.encode(raw_event(pixel_id="P9")))
    assert facts is not None
    assert facts.pixel_id == "P9"  # only a full decode knows it


def test_unreadable_values_have_no_facts() -> None:
    """A missing or cut value gives None, as event_facts does."""
    codec = AvroCodec(RAW)
    reader = FactsReader(codec, RAW, enriched=False)
    assert reader.facts(None) is None
    assert reader.facts(codec.encode(raw_event())[:3]) is None
    assert reader.facts(b"\x01") is None


def test_without_a_schema_every_record_is_decoded() -> None:
    """No schema (the enriched topic): the facts are event_facts', pixel included."""
    codec = AvroCodec(RAW)
    reader = FactsReader(codec, None, enriched=False)
    value = codec.encode(raw_event(pixel_id="P3"))
    assert reader.facts(value) == event_facts(value, codec)


@pytest.mark.parametrize("version", [1, 2])
def test_enriched_records_of_both_versions_give_their_routing_facts(version: int) -> None:
    """An enriched record, version 1 or 2, gives its pixel, time (seconds) and source."""
    from stream.config import Settings
    from stream.kafka.serde import build_codecs
    from tests.integration.helpers import enriched_value

    codecs = build_codecs(Settings(bootstrap_servers="127.0.0.1:9"))
    reader = FactsReader(codecs.enriched, None, enriched=True)
    facts = reader.facts(enriched_value("e-1", "P7", 1_767_225_600, version=version))
    assert facts is not None
    assert (facts.pixel_id, facts.event_time, facts.action_source) == (
        "P7",
        1_767_225_540,
        "website",
    )
    assert reader.facts(b"\x01\x02") is None  # a cut version-2 body
