"""The Enricher never answers with a record the broker would refuse (issue 10 part 2).

An enriched record over ``max_record_bytes`` becomes a dead letter ``record_too_large``; any dead
letter over it keeps a bounded prefix, the original's length and SHA-256, and its own reason.
"""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

from stream import schemas
from stream.core.codec import AvroCodec
from stream.core.dead_letter import PREFIX_BYTES, RECORD_TOO_LARGE, record_size
from stream.core.enrich import Enricher, Output
from stream.core.envelope import MARKER
from stream.core.normalize import DEFAULT_OPTIONS
from stream.core.records import Record
from tests.factories import custom_data, empty_user_data, full_raw_event, raw_event
from tests.shape import check_event_json

NOW = 1_767_225_600.0 + 60
LIMIT = 991_808  # max_record_bytes for the defaults: 1,000,000 - 8 KiB


class Codecs:
    """Raw, enriched and dead-letter codecs in one wire format."""

    def __init__(self, wire: str) -> None:
        def codec(name: Any, schema_id: int) -> AvroCodec:
            if wire == "schemaless":
                return AvroCodec(schemas.load(name))
            return AvroCodec(schemas.load(name), wire_format="confluent", schema_id=schema_id)

        self.raw = codec("conversion_event", 1)
        self.enriched = codec("capi_event", 2)
        self.dlq = codec("dead_letter", 3)

    def enricher(self, limit: int | None) -> Enricher:
        return Enricher(self.raw, self.enriched, self.dlq, DEFAULT_OPTIONS, max_record_bytes=limit)


@pytest.fixture(params=["schemaless", "confluent"])
def codecs(request: pytest.FixtureRequest) -> Codecs:
    """Both wire formats: the Confluent header counts toward the size too."""
    return Codecs(request.param)


def emails(count: int) -> dict[str, Any]:
    """A raw event with ``count`` distinct e-mails: ~40 bytes raw, ~67 bytes hashed each."""
    user_data = empty_user_data()
    user_data.update(
        em=[f"customer.number.{i:06d}@mail.example.org" for i in range(count)],
        client_user_agent="Mozilla/5.0",
        client_ip_address="203.0.113.7",
    )
    return raw_event(user_data=user_data)


def padded(size: int, codecs: Codecs) -> bytes:
    """A valid raw event of exactly ``size`` bytes (a long custom property)."""
    base = len(codecs.raw.encode(raw_event(custom_data=custom_data(custom_properties={"p": ""}))))
    for pad in range(size - base - 8, size - base + 1):  # the varint length grows with the pad
        value = codecs.raw.encode(
            raw_event(custom_data=custom_data(custom_properties={"p": "x" * pad}))
        )
        if len(value) == size:
            return value
    raise AssertionError(size)


def record(value: bytes | None, key: bytes | None = b"order-1") -> Record:
    return Record("capi.events.raw", 0, 17, key, value, (("trace", b"t-1"),), 1_767_225_600_000)


def size_of(out: Output) -> int:
    return record_size(out.key, out.value, out.headers)


def test_without_a_limit_a_large_output_is_enriched(codecs: Codecs) -> None:
    """No limit: the old behaviour, whatever the size (the stage wires a limit in)."""
    out = codecs.enricher(None).process(record(codecs.raw.encode(emails(2_000))), NOW)
    assert out.destination == "enriched"


def test_an_output_at_the_limit_is_enriched_one_byte_over_is_not(codecs: Codecs) -> None:
    """The limit is inclusive: key + value + headers equal to it is produced as enriched."""
    raw = record(codecs.raw.encode(emails(2_000)))
    size = size_of(codecs.enricher(None).process(raw, NOW))
    assert codecs.enricher(size).process(raw, NOW).destination == "enriched"
    out = codecs.enricher(size - 1).process(raw, NOW)
    assert (out.destination, out.reason) == ("dlq", RECORD_TOO_LARGE)


def test_an_oversized_enriched_output_is_dead_lettered_with_the_sizes(codecs: Codecs) -> None:
    """Hashing 2,000 e-mails makes 140 KB of 80 KB: over a 100 KB limit it is record_too_large.

    The letter keeps the whole raw value (it fits), its length and SHA-256, the event's ids, and
    a message with sizes, never an e-mail or a hash.
    """
    value = codecs.raw.encode(emails(2_000))
    out = codecs.enricher(100_000).process(record(value), NOW)
    assert (out.destination, out.reason, out.pixel_id) == ("dlq", RECORD_TOO_LARGE, "1234567890")
    assert size_of(out) <= 100_000
    letter = codecs.dlq.decode(out.value)
    assert letter["reason"] == RECORD_TOO_LARGE
    assert letter["stage"] == "normalize"
    assert (letter["event_id"], letter["event_name"]) == ("order-100045", "Purchase")
    assert letter["original_value"] == value
    assert letter["original_length"] == len(value)
    assert letter["original_sha256"] == hashlib.sha256(value).hexdigest()
    assert letter["original_truncated"] is False
    assert letter["headers"] == [{"key": "trace", "value": b"t-1"}]
    assert "over the 100000 bytes the broker accepts" in letter["message"]
    assert f"the raw value is {len(value)} bytes" in letter["message"]
    assert "@" not in letter["message"]
    assert "customer" not in letter["message"]
    assert dict(out.headers)["capi.reason"] == RECORD_TOO_LARGE.encode()


def test_each_topic_has_its_own_limit(codecs: Codecs) -> None:
    """The enriched topic takes 100 KB, the dead-letter topic the default: a 140 KB output is
    record_too_large, and its letter keeps the 80 KB original whole (over the enriched limit,
    under its own), so it can be republished once the enriched topic takes it."""
    value = codecs.raw.encode(emails(2_000))
    enricher = Enricher(
        codecs.raw, codecs.enriched, codecs.dlq, DEFAULT_OPTIONS,
        max_record_bytes=len(value), max_letter_bytes=LIMIT,
    )  # fmt: skip
    out = enricher.process(record(value), NOW)
    assert (out.destination, out.reason) == ("dlq", RECORD_TOO_LARGE)
    assert size_of(out) > len(value)  # a letter over the enriched topic's limit
    letter = codecs.dlq.decode(out.value)
    assert (letter["original_value"], letter["original_truncated"]) == (value, False)
    assert f"over the {len(value)} bytes the broker accepts" in letter["message"]
    small = Enricher(
        codecs.raw, codecs.enriched, codecs.dlq, DEFAULT_OPTIONS,
        max_record_bytes=LIMIT, max_letter_bytes=70_000,
    )  # fmt: skip
    cut = small.process(record(padded(90_000, codecs), key=None), NOW)
    assert cut.destination == "enriched"  # the letter's limit does not bound enriched records


def test_a_1_040_000_byte_raw_value_becomes_a_bounded_record_too_large(codecs: Codecs) -> None:
    """The issue's first trigger: a valid 1,040,000-byte event. Its output and its whole value
    are both over the limit: the letter is record_too_large with a 4 KiB prefix, length, hash."""
    value = padded(1_040_000, codecs)
    out = codecs.enricher(LIMIT).process(record(value), NOW)
    assert (out.destination, out.reason) == ("dlq", RECORD_TOO_LARGE)
    assert size_of(out) <= LIMIT
    letter = codecs.dlq.decode(out.value)
    assert letter["original_value"] == value[:PREFIX_BYTES]
    assert letter["original_length"] == 1_040_000
    assert letter["original_sha256"] == hashlib.sha256(value).hexdigest()
    assert letter["original_truncated"] is True
    assert "value 1040000 -> 4096 bytes" in letter["message"]


def test_a_large_invalid_event_keeps_its_own_reason(codecs: Codecs) -> None:
    """The third trigger: a dead letter too large. A 995,000-byte event with a blank event name
    stays missing_event_name; only its letter is shrunk."""
    event = raw_event(event_name=" ", custom_data=custom_data(custom_properties={"p": ""}))
    event["custom_data"]["custom_properties"]["p"] = "x" * (995_000 - len(codecs.raw.encode(event)))
    value = codecs.raw.encode(event)
    assert 994_990 < len(value) <= 995_010
    out = codecs.enricher(LIMIT).process(record(value), NOW)
    assert (out.destination, out.reason) == ("dlq", "missing_event_name")
    assert size_of(out) <= LIMIT
    letter = codecs.dlq.decode(out.value)
    assert letter["reason"] == "missing_event_name"
    assert letter["original_truncated"] is True
    assert letter["original_length"] == len(value)


def test_large_corrupt_bytes_keep_their_decode_reason(codecs: Codecs) -> None:
    """Undecodable bytes over the limit: decode_* reason, letter cut to fit."""
    value = b"\xff" * 1_040_000
    out = codecs.enricher(LIMIT).process(record(value), NOW)
    assert out.destination == "dlq"
    assert out.reason is not None
    assert out.reason.startswith("decode_")
    assert size_of(out) <= LIMIT
    assert codecs.dlq.decode(out.value)["original_sha256"] == hashlib.sha256(value).hexdigest()


def test_a_huge_key_does_not_make_its_dead_letter_oversized(codecs: Codecs) -> None:
    """An oversized key is cut to 4 KiB for the dead-letter record (and in the letter)."""
    key = b"k" * 1_000_000
    out = codecs.enricher(LIMIT).process(record(codecs.raw.encode(raw_event()), key=key), NOW)
    assert (out.destination, out.reason) == ("dlq", RECORD_TOO_LARGE)
    assert out.key == key[:PREFIX_BYTES]
    assert size_of(out) <= LIMIT
    assert codecs.dlq.decode(out.value)["original_key"] == key[:PREFIX_BYTES]


def test_small_records_are_unchanged_by_the_limit(codecs: Codecs) -> None:
    """A normal event gives the same output with and without a limit."""
    raw = record(codecs.raw.encode(raw_event()))
    with_limit = codecs.enricher(LIMIT).process(raw, NOW)
    without = codecs.enricher(None).process(raw, NOW)
    assert with_limit.destination == "enriched"
    assert (with_limit.key, with_limit.headers) == (without.key, without.headers)
    decode = codecs.enriched.decode
    strip = {"normalized_at"}
    assert {k: v for k, v in decode(with_limit.value).items() if k not in strip} == {
        k: v for k, v in decode(without.value).items() if k not in strip
    }


@pytest.mark.parametrize(
    "event",
    [
        raw_event(),
        full_raw_event(),
        raw_event(action_source="physical_store", event_source_url=None),
        raw_event(custom_data=custom_data(custom_properties={"tier": "gold", "n": 3})),
        raw_event(
            user_data=empty_user_data()
            | {"fbp": "fb.1.1596403881668.1116446470", "client_user_agent": "Mozilla/5.0"}
        ),
    ],
    ids=["minimal", "full", "physical_store", "custom_properties", "cookie_only"],
)
def test_every_enriched_record_is_version_2_with_documented_json(
    codecs: Codecs, event: dict[str, Any]
) -> None:
    """The Enricher writes the envelope; its event_json fits capi_event.v1.avsc's ServerEvent
    (tests/shape.py) and its routing fields agree with the JSON."""
    out = codecs.enricher(LIMIT).process(record(codecs.raw.encode(event)), NOW)
    assert out.destination == "enriched", out.reason
    body = out.value[5:] if codecs.enriched.wire_format == "confluent" else out.value
    assert body[:1] == MARKER
    enriched = codecs.enriched.decode(out.value)
    wire = check_event_json(enriched["event_json"])
    assert (enriched["event_id"], enriched["event_name"], enriched["event_time"]) == (
        wire["event_id"],
        wire["event_name"],
        wire["event_time"],
    )
    assert enriched["action_source"] == wire.get("action_source")
    assert enriched["source"] == {"topic": "capi.events.raw", "partition": 0, "offset": 17}
