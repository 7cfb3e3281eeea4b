"""FactsReader.expiry: the age verdict replay and dlq republish take per record, from the
event's time alone where that decides, equal to the full decode's everywhere."""

from __future__ import annotations

import time

import pytest

from stream import schemas
from stream.core.codec import AvroCodec, WireFormat
from stream.kafka.facts import event_facts
from stream.kafka.prefix_facts import FactsReader
from tests.factories import raw_event

RAW = schemas.load("conversion_event")
NOW = time.time()
DAY = 86_400
MARGIN = 60.0
#: (age in seconds, action_source, time in milliseconds): each band of the rule.
CASES = [
    (3_600, "website", False),  # fresh
    (3_600, "website", True),  # fresh, milliseconds
    (8 * DAY, "website", False),  # past 7 days
    (8 * DAY, "physical_store", False),  # within 62 days: the source decides
    (8 * DAY, " Physical_Store ", True),  # the same, written loosely, in milliseconds
    (7 * DAY - 30, "website", False),  # within the margin of the limit
    (63 * DAY, "physical_store", False),  # past 62 days
    (8 * DAY, None, False),  # no source: the 7-day limit
]


@pytest.mark.parametrize("wire_format", ["schemaless", "confluent"])
@pytest.mark.parametrize(("age", "source", "millis"), CASES)
def test_raw_verdicts_equal_the_full_decode(
    wire_format: WireFormat, age: int, source: str | None, millis: bool
) -> None:
    """Every band of Meta's age rule gives the verdict the full decode gives."""
    codec = AvroCodec(RAW, wire_format=wire_format, schema_id=7)
    seconds = int(NOW - age)
    value = codec.encode(raw_event(event_time=seconds * 1000 if millis else seconds,
                                   action_source=source))  # fmt: skip
    full = event_facts(value, codec)
    assert full is not None
    expected = full.expired(NOW, MARGIN)
    reader = FactsReader(codec, RAW, enriched=False)
    assert reader.expiry(NOW, MARGIN)(value) is expected
    assert reader.expired(value, NOW, MARGIN) is expected


def test_unreadable_values_have_no_verdict() -> None:
    """A missing, cut or foreign value answers None, as the full decode does."""
    codec = AvroCodec(RAW)
    expired = FactsReader(codec, RAW, enriched=False).expiry(NOW, MARGIN)
    assert expired(None) is None
    assert expired(codec.encode(raw_event())[:3]) is None
    assert expired(b"\x01") is None


def test_another_writer_schema_is_decoded_in_full() -> None:
    """A record of another registry id is read in its own layout, not by our prefix."""
    writer = AvroCodec(RAW, wire_format="confluent", schema_id=8)
    codec = AvroCodec(RAW, wire_format="confluent", schema_id=7, resolver={8: RAW}.__getitem__)
    expired = FactsReader(codec, RAW, enriched=False).expiry(NOW, MARGIN)
    assert expired(writer.encode(raw_event(event_time=int(NOW - 8 * DAY)))) is True
    assert expired(writer.encode(raw_event(event_time=int(NOW)))) is False


@pytest.mark.parametrize("version", [1, 2])
def test_enriched_records_of_both_versions(version: int) -> None:
    """Version 2 is read from its prefix, version 1 decoded: the same verdicts."""
    from stream.config import Settings
    from stream.kafka.serde import build_codecs
    from tests.integration.helpers import enriched_value

    codecs = build_codecs(Settings(bootstrap_servers="127.0.0.1:9"))
    reader = FactsReader(codecs.enriched, schemas.load("capi_event"), enriched=True)
    expired = reader.expiry(NOW, MARGIN)
    fresh = enriched_value("e-1", "P1", NOW, version=version)
    facts = reader.facts(fresh)
    assert facts is not None
    assert (facts.pixel_id, facts.action_source) == ("P1", "website")
    assert expired(fresh) is False
    assert expired(enriched_value("e-2", "P1", NOW - 8 * DAY, version=version)) is True
    assert expired(b"\x01\x02") is None
