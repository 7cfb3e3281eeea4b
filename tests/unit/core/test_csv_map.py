"""Offline-events rows to raw events: columns, multiple values, times, raw shape, errors."""

from __future__ import annotations

from typing import Any

import pytest

from stream import schemas
from stream.core.codec import AvroCodec
from stream.core.csv_map import (
    RowError,
    RowMapper,
    parse_time,
    read_csv,
    read_csv_cells,
    read_jsonl,
)
from tests.factories import full_raw_event, raw_event

RAW = schemas.load("conversion_event")
MAPPER = RowMapper(RAW)
BASE = {"event_name": "Purchase", "event_time": "1767225600"}


def _csv(text: str) -> list[tuple[int, dict[str, Any]]]:
    """Map every row of CSV text, keeping line numbers."""
    _, rows = read_csv(text.splitlines(keepends=True))
    return [(line, MAPPER.event(pairs)) for line, pairs in rows]


def test_several_emails_by_repeated_numbered_and_piped_columns() -> None:
    """email, email, email2 and a|b cells all add to user_data.em, in column order."""
    [(_, event)] = _csv(
        "event_name,event_time,email,email,email2,EMAIL_3\n"
        "Purchase,1767225600,a@x.com,b@x.com|c@x.com, d@x.com ,e@x.com\n"
    )
    assert event["user_data"]["em"] == ["a@x.com", "b@x.com", "c@x.com", "d@x.com", "e@x.com"]


def test_offline_upload_names_map_to_capi_keys() -> None:
    """phone, zip, dob, gen and extern_id fill ph, zp, db, ge and external_id."""
    event = MAPPER.event({**BASE, "phone": "+1 650 555 1212", "zip": "94035", "dob": "1997-02-16",
                          "gen": "F", "extern_id": "u-1", "fn": "Mary", "ct": "Paris"})  # fmt: skip
    assert event["user_data"] == {
        "ph": ["+1 650 555 1212"], "zp": ["94035"], "db": ["1997-02-16"], "ge": ["F"],
        "external_id": ["u-1"], "fn": ["Mary"], "ct": ["Paris"],
    }  # fmt: skip


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("1767225600", 1_767_225_600),
        ("2026-01-01T00:00:00Z", 1_767_225_600),
        ("2026-01-01T01:00:00+01:00", 1_767_225_600),
        ("2026-01-01 00:00:00", 1_767_225_600),
        ("2026-01-01", 1_767_225_600),
    ],
)
def test_event_time_accepts_unix_seconds_and_iso_8601(text: str, seconds: int) -> None:
    """Unix seconds and ISO 8601 (offset or UTC when none) give the same Unix seconds."""
    assert parse_time(text) == seconds
    assert MAPPER.event({"event_name": "Lead", "event_time": text})["event_time"] == seconds


def test_business_columns_go_to_custom_data_with_schema_types() -> None:
    """value and num_items become numbers, content_ids a list, custom.NAME a property."""
    event = MAPPER.event({**BASE, "email": "a@x.com", "value": "12.50", "currency": "EUR",
                          "order_id": 100045, "num_items": "3", "content_ids": "sku-1|sku-2",
                          "custom.Coupon": "XMAS"})  # fmt: skip
    assert event["custom_data"] == {
        "value": 12.5, "currency": "EUR", "order_id": "100045", "num_items": 3,
        "content_ids": ["sku-1", "sku-2"], "custom_properties": {"Coupon": "XMAS"},
    }  # fmt: skip


@pytest.mark.parametrize("event", [full_raw_event(), raw_event()])
def test_rows_in_the_raw_schema_shape_map_to_themselves(event: dict[str, Any]) -> None:
    """A JSON row shaped like the raw schema encodes to the same event."""
    codec = AvroCodec(RAW)
    assert codec.decode(codec.encode(MAPPER.event(event))) == event


def test_nested_and_flat_keys_mix() -> None:
    """A raw-shape user_data object and flat columns fill the same user_data."""
    event = MAPPER.event({**BASE, "user_data": {"em": ["a@x.com"], "fbp": "fb.1.2.3"},
                          "email": "b@x.com", "app_data": None})  # fmt: skip
    assert event["user_data"] == {"em": ["a@x.com", "b@x.com"], "fbp": "fb.1.2.3"}
    assert "app_data" not in event


def test_unknown_columns_are_named_and_refused() -> None:
    """A column no field takes is an error naming it, never silently dropped."""
    with pytest.raises(RowError) as caught:
        MAPPER.event({**BASE, "age": "42", "email": "a@x.com"})
    assert caught.value.fields == ("age",)
    assert MAPPER.unknown(["email", "age", "user_data", "value2"]) == ["age", "value2"]


def test_invalid_values_name_fields_never_values() -> None:
    """A value of the wrong type names its field; the message does not quote the value."""
    with pytest.raises(RowError) as caught:
        MAPPER.event({"event_name": "Lead", "event_time": "yesterday-ish", "value": "lots"})
    assert caught.value.fields == ("event_time", "custom_data.value")
    assert "yesterday" not in str(caught.value)
    assert "lots" not in str(caught.value)


def test_missing_required_fields_are_named() -> None:
    """A row without event_name or event_time cannot become a raw event."""
    with pytest.raises(RowError, match="missing: event_name, event_time"):
        MAPPER.event({"email": "a@x.com"})


def test_a_single_valued_field_given_twice_is_refused() -> None:
    """Two value columns are ambiguous: the row fails rather than one value winning."""
    _, rows = read_csv(["event_name,event_time,value,value\n", "Lead,1,1,2\n"])
    with pytest.raises(RowError, match=r"custom_data\.value"):
        MAPPER.event(next(rows)[1])


def test_defaults_fill_only_rows_without_the_field() -> None:
    """default action_source and pixel_id apply where the row has none."""
    mapper = RowMapper(RAW, default_action_source="physical_store", default_pixel_id="P1")
    assert mapper.event(BASE)["action_source"] == "physical_store"
    given = mapper.event({**BASE, "action_source": "website", "pixel_id": "P2"})
    assert (given["action_source"], given["pixel_id"]) == ("website", "P2")


def test_booleans_accept_words_and_digits() -> None:
    """opt_out takes yes/no, true/false and 1/0; anything else is invalid."""
    assert MAPPER.event({**BASE, "opt_out": "Yes"})["opt_out"] is True
    assert MAPPER.event({**BASE, "opt_out": "0"})["opt_out"] is False
    with pytest.raises(RowError, match="opt_out"):
        MAPPER.event({**BASE, "opt_out": "maybe"})


def test_csv_rows_carry_the_line_they_start_on() -> None:
    """Line numbers count blank lines and multi-line cells; extra cells get a column name."""
    _, rows = read_csv(
        ["event_name,event_time\n", "\n", "Lead,1\n", '"Multi\n', 'line",2\n', "Lead,3,extra\n"]
    )
    numbered = list(rows)
    assert [line for line, _ in numbered] == [3, 4, 6]
    with pytest.raises(RowError, match="<column 3>"):
        MAPPER.event(numbered[2][1])


def test_jsonl_reports_bad_lines_without_their_content() -> None:
    """A line that is not a JSON object becomes a RowError at its line number."""
    rows = list(read_jsonl(['{"event_name": "Lead"}\n', "\n", "{secret@x.com\n", "[1]\n"]))
    assert [line for line, _ in rows] == [1, 3, 4]
    assert isinstance(rows[1][1], RowError)
    assert "secret" not in str(rows[1][1])
    assert isinstance(rows[2][1], RowError)


def _both(text: str, mapper: RowMapper = MAPPER) -> list[tuple[Any, Any]]:
    """Each row of CSV text mapped the general way and by the header's plan: event or error."""

    def outcome(call: Any, row: Any) -> Any:
        try:
            return call(row)
        except RowError as exc:
            return ("error", str(exc), exc.fields)

    header, rows = read_csv(text.splitlines(keepends=True))
    _, cells = read_csv_cells(text.splitlines(keepends=True))
    plan = mapper.for_header(header)
    return [(outcome(mapper.event, pairs), outcome(plan.event, row))
            for (_, pairs), (_, row) in zip(rows, cells, strict=True)]  # fmt: skip


def test_the_header_plan_maps_every_row_as_the_general_way_does() -> None:
    """Events and errors from a header's plan equal RowMapper.event's, row for row."""
    text = (
        "event_id,email,email,email2,phone,fn,zip,country,dob,gen,opt_out,event_name,event_time,"
        "value,num_items,contents,custom.tier,data_processing_options_country,app_data.extinfo\n"
        "o-1,a@x.com,b@x.com| c@x.com ,,+1 650 555 1212,Mary,94035,US,1997-02-16,F,yes,Purchase,"
        '1767225600,12.5,3,"[{""id"": ""sku"", ""quantity"": 2}]",Gold,1,a|b\n'
        "o-2, ,|, | ,,,,,,,,no,Lead,2026-01-01T00:00:00Z,,,,,,\n"
        "o-3,,,,,,,,,,,maybe,Lead,soon,lots,1.5,[oops,,99999999999,\n"
        ",,,,,,,,,,,,,,,,,,\n"
        "o-5,,,,,,,,,,,,,1767225600,,,,,,\n"
        "o-6,,,,,,,,,,,,Lead,1767225600,1,2,,,,,extra\n"
    )
    pairs = _both(text, RowMapper(RAW, default_action_source="physical_store"))
    assert len(pairs) == 5  # the blank row is skipped by both readers
    for general, planned in pairs:
        assert planned == general
    assert pairs[0][1]["user_data"]["em"] == ["a@x.com", "b@x.com", "c@x.com"]
    assert pairs[2][1][0] == "error"  # invalid values, named by field


def test_a_header_with_an_unknown_column_goes_the_general_way() -> None:
    """A column no field takes is reported by name, by the plan as by the general way."""
    [(general, planned)] = _both("event_name,event_time,shoe_size\nLead,1,44\n")
    assert planned == general == ("error", "unknown columns: shoe_size", ("shoe_size",))


def test_a_whole_number_wider_than_its_field_is_refused_by_name() -> None:
    """An int field takes 32 bits and a long 64: wider values name their field, not the value."""
    with pytest.raises(RowError, match="data_processing_options_country") as caught:
        MAPPER.event({**BASE, "data_processing_options_country": str(2**31)})
    assert str(2**31) not in str(caught.value)
    with pytest.raises(RowError, match=r"custom_data\.num_items"):
        MAPPER.event({**BASE, "num_items": 2**63})
    assert MAPPER.event({**BASE, "num_items": 2**63 - 1})["custom_data"]["num_items"] == 2**63 - 1
