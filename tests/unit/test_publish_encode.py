"""Publisher.encode: encode first, explain only what fails; the same bytes as the codec's."""

from __future__ import annotations

import pytest

from stream import schemas
from stream.config import Settings
from stream.core.codec import AvroCodec
from stream.core.errors import EncodeError
from stream.publish import Publisher, nullable_records

RAW = schemas.load("conversion_event")


def _publisher() -> Publisher:
    # schemaless and no producer until a record is queued: nothing here connects
    return Publisher(Settings(bootstrap_servers="127.0.0.1:9"))


def test_a_record_the_encoder_refuses_is_explained_by_its_fields_only() -> None:
    """The validation pass after a failed encode names the field; no value is quoted."""
    publisher = _publisher()
    event = {"event_name": "Purchase", "event_time": 1_767_225_600, "email": "secret@x.com",
             "contents": [{"id": "sku-secret", "quantity": "two"}]}  # fmt: skip
    with pytest.raises(EncodeError, match=r"Content\.quantity") as caught:
        publisher.publish(event)
    for value in ("two", "sku-secret", "secret@x.com"):
        assert value not in str(caught.value)
    assert publisher.counts.invalid == 1
    assert publisher.counts.published == 0


def test_tagged_unions_encode_to_the_codecs_bytes() -> None:
    """Naming the record branch of nullable sections changes the speed, not the bytes."""
    publisher = _publisher()
    record = publisher.mapper.event({
        "event_name": "Purchase", "event_time": "1767225600", "email": "a@x.com",
        "value": "12.5", "currency": "EUR", "app_data.extinfo": "a|b",
        "attribution_data.ad_id": "7", "original_event_data.event_name": "Lead",
    })  # fmt: skip
    assert publisher.encode(record) == AvroCodec(RAW).encode(record)


def test_every_nullable_section_is_named_with_its_namespace() -> None:
    """The four optional sections map to their records' full names."""
    assert nullable_records(RAW) == {
        "custom_data": "io.capistream.raw.CustomData",
        "app_data": "io.capistream.raw.AppData",
        "original_event_data": "io.capistream.raw.OriginalEventData",
        "attribution_data": "io.capistream.raw.AttributionData",
    }
