"""Dead letters: what they keep, and that one never exceeds the broker's limit (issue 10 part 2).

A dead letter over the limit used to fail the produce and stall its partition; now it keeps a
4 KiB prefix of what is big, plus the original value's length and SHA-256.
"""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stream import schemas
from stream.core.codec import AvroCodec
from stream.core.dead_letter import (
    PREFIX_BYTES,
    RECORD_TOO_LARGE,
    SHORT_RECEIPT,
    STAGE_REASONS,
    MetaErrorFields,
    dead_letter,
    encode_within,
    letter_record,
    record_size,
)
from stream.core.errors import EncodeError
from stream.core.records import Record
from stream.core.validate import REASONS

LIMIT = 991_808  # what max_record_bytes answers for the defaults: 1,000,000 - 8 KiB


@pytest.fixture(params=["schemaless", "confluent"])
def codec(request: pytest.FixtureRequest) -> AvroCodec:
    """The dead-letter codec in both wire formats (the Confluent one adds a 5-byte header)."""
    if request.param == "schemaless":
        return AvroCodec(schemas.load("dead_letter"))
    return AvroCodec(schemas.load("dead_letter"), wire_format="confluent", schema_id=3)


def letter_for(
    value: bytes | None, key: bytes | None = b"k-1", headers: tuple[tuple[str, bytes], ...] = ()
) -> dict[str, Any]:
    record = Record("capi.events.raw", 2, 41, key, value, headers, 1_767_225_600_000)
    return dead_letter(
        stage="normalize", reason="decode_corrupt", message="not a ConversionEvent record",
        record=record, now_ms=1_767_225_660_000,
    )  # fmt: skip


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_the_new_reason_codes_are_snake_case_lines_and_not_validation_codes() -> None:
    """record_too_large and short_receipt are listed once, one line each, apart from REASONS."""
    assert set(STAGE_REASONS) == {RECORD_TOO_LARGE, SHORT_RECEIPT}
    assert RECORD_TOO_LARGE == "record_too_large"
    assert SHORT_RECEIPT == "short_receipt"
    assert not set(STAGE_REASONS) & set(REASONS)
    assert all(line and "\n" not in line for line in STAGE_REASONS.values())


def test_a_letter_keeps_the_length_and_sha256_of_the_original_value() -> None:
    """Every letter carries original_length and original_sha256; a tombstone has neither."""
    letter = letter_for(b"\x00\x01bytes")
    assert letter["original_length"] == 7
    assert letter["original_sha256"] == sha(b"\x00\x01bytes")
    assert letter["original_truncated"] is False
    tombstone = letter_for(None)
    assert tombstone["original_length"] is None
    assert tombstone["original_sha256"] is None


def test_a_letter_that_fits_is_encoded_as_is(codec: AvroCodec) -> None:
    """Under the limit, encode_within is encode: every byte of the original stays."""
    letter = letter_for(b"v" * 500_000)
    assert encode_within(letter, codec.encode, LIMIT) == codec.encode(letter)
    assert codec.decode(encode_within(letter, codec.encode, LIMIT))["original_value"] == (
        b"v" * 500_000
    )


def test_an_oversized_value_is_cut_to_a_prefix_with_length_and_hash(codec: AvroCodec) -> None:
    """A 1,040,000-byte value: 4 KiB prefix, length, SHA-256, truncated flag, reason kept."""
    value = bytes(range(256)) * 4062 + b"tail"  # 1,039,876 bytes, not one repeated byte
    data = encode_within(letter_for(value), codec.encode, LIMIT)
    assert len(data) <= LIMIT
    letter = codec.decode(data)
    assert letter["original_value"] == value[:PREFIX_BYTES]
    assert letter["original_length"] == len(value)
    assert letter["original_sha256"] == sha(value)
    assert letter["original_truncated"] is True
    assert letter["reason"] == "decode_corrupt"
    assert letter["original_key"] == b"k-1"  # small parts are kept whole
    assert letter["message"].startswith("not a ConversionEvent record")
    assert f"value {len(value)} -> {PREFIX_BYTES} bytes" in letter["message"]


def test_an_oversized_key_and_headers_are_cut_when_the_value_is_not_enough(
    codec: AvroCodec,
) -> None:
    """Key and header values over 4 KiB are cut to prefixes when cutting the value is not enough."""
    key, header = b"K" * 300_000, b"H" * 300_000
    letter = letter_for(b"v" * 300_000, key=key, headers=(("big", header), ("small", b"s")))
    data = encode_within(letter, codec.encode, 500_000)
    assert len(data) <= 500_000
    out = codec.decode(data)
    assert out["original_key"] == key[:PREFIX_BYTES]
    assert out["headers"] == [
        {"key": "big", "value": header[:PREFIX_BYTES]},
        {"key": "small", "value": b"s"},
    ]
    assert out["original_sha256"] == sha(b"v" * 300_000)
    assert "key 300000 -> 4096 bytes" in out["message"]


def test_many_headers_are_dropped_as_a_last_resort(codec: AvroCodec) -> None:
    """When even 4 KiB prefixes do not fit, the headers go and the message says how many."""
    headers = tuple((f"h{i}", b"x" * 4000) for i in range(40))  # 160 KB of headers
    data = encode_within(letter_for(b"v", headers=headers), codec.encode, 100_000)
    assert len(data) <= 100_000
    out = codec.decode(data)
    assert out["headers"] == []
    assert "40 headers dropped" in out["message"]


def test_a_limit_below_any_letter_is_an_encode_error(codec: AvroCodec) -> None:
    """A limit no letter can meet is refused loudly, not answered with an oversized letter."""
    with pytest.raises(EncodeError):
        encode_within(letter_for(b"v" * 10_000), codec.encode, 100)


def test_letter_record_fits_the_limit_with_its_key_and_headers(codec: AvroCodec) -> None:
    """The whole Kafka record (key, value, headers) fits; an oversized key is cut for the record."""
    letter = letter_for(b"v" * 1_040_000, key=b"K" * 20_000)
    out = letter_record(letter, codec.encode, LIMIT)
    assert record_size(out.key, out.value, out.headers) <= LIMIT
    assert out.key == b"K" * PREFIX_BYTES
    assert dict(out.headers)["capi.reason"] == b"decode_corrupt"


def test_letter_record_without_a_limit_keeps_everything(codec: AvroCodec) -> None:
    """No limit (a stage wired without one): the letter is encoded whole, as before."""
    letter = letter_for(b"v" * 1_040_000, key=b"K" * 20_000)
    out = letter_record(letter, codec.encode, None)
    assert out.key == b"K" * 20_000
    assert codec.decode(out.value)["original_value"] == b"v" * 1_040_000


def test_a_deliver_stage_letter_keeps_meta_error_when_shrunk(codec: AvroCodec) -> None:
    """A deliver-stage letter over the limit keeps Meta's error and the ids, the reason too."""
    # an enriched record just under the limit: its letter adds the fields and goes over
    record = Record("capi.events.enriched", 0, 9, b"k", b"e" * (LIMIT - 100))
    letter = dead_letter(
        stage="deliver", reason=SHORT_RECEIPT, message="2 of 3 events confirmed", record=record,
        now_ms=1, pixel_id="123", event_id="ev-1", event_name="Purchase",
        meta_error=MetaErrorFields(fbtrace_id="AbC123"),
    )  # fmt: skip
    out = codec.decode(letter_record(letter, codec.encode, LIMIT).value)
    assert out["reason"] == SHORT_RECEIPT
    assert out["meta_error"]["fbtrace_id"] == "AbC123"
    assert (out["pixel_id"], out["event_id"], out["event_name"]) == ("123", "ev-1", "Purchase")
    assert out["original_truncated"] is True
    assert out["original_length"] == LIMIT - 100


def test_record_size_counts_key_value_and_headers() -> None:
    """Key + value + header names and values; None counts as nothing."""
    assert record_size(b"ab", b"cde", [("hh", b"1234"), ("x", None)]) == 2 + 3 + 2 + 4 + 1
    assert record_size(None, None, []) == 0


@pytest.mark.parametrize("wire", ["schemaless", "confluent"])
def test_letters_written_before_the_new_fields_still_decode(wire: str) -> None:
    """Backward compatible: an old letter reads with the defaults (null, null, false)."""
    new = schemas.load("dead_letter")
    added = {"original_length", "original_sha256", "original_truncated"}
    old = {**new, "fields": [f for f in new["fields"] if f["name"] not in added]}
    letter = {k: v for k, v in letter_for(b"old").items() if k not in added}
    if wire == "schemaless":
        data = AvroCodec(old).encode(letter)
        reader = AvroCodec(new, writer_schema=old)
    else:
        data = AvroCodec(old, wire_format="confluent", schema_id=1).encode(letter)
        reader = AvroCodec(new, wire_format="confluent", schema_id=2, resolver=lambda _: old)
    out = reader.decode(data)
    assert out["original_value"] == b"old"
    assert (out["original_length"], out["original_sha256"], out["original_truncated"]) == (
        None,
        None,
        False,
    )


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    value=st.integers(0, 400_000),
    key=st.integers(0, 40_000),
    header_count=st.integers(0, 30),
    header_size=st.integers(0, 9_000),
    limit=st.integers(65_536, 300_000),
)
def test_any_letter_record_fits_any_allowed_limit(
    value: int, key: int, header_count: int, header_size: int, limit: int
) -> None:
    """For any sizes and any limit max_record_bytes allows, the record fits and the hash holds."""
    codec = AvroCodec(schemas.load("dead_letter"))
    original = b"v" * value
    headers = tuple((f"h{i}", b"x" * header_size) for i in range(header_count))
    out = letter_record(letter_for(original, key=b"K" * key, headers=headers), codec.encode, limit)
    assert record_size(out.key, out.value, out.headers) <= limit
    letter = codec.decode(out.value)
    assert letter["original_sha256"] == sha(original)
    assert letter["original_length"] == value
    kept = letter["original_value"]
    assert kept == original if not letter["original_truncated"] else original.startswith(kept)
