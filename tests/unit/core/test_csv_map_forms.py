"""Real exports: amounts and date-times as spreadsheets write them, extra CRM columns."""

from __future__ import annotations

import pytest

from stream import schemas
from stream.core.csv_map import RowError, RowMapper, read_csv_cells
from stream.core.value_forms import ValueForms, parse_amount, parse_time

RAW = schemas.load("conversion_event")
NOV_28_1430 = 1_795_876_200  # 2026-11-28T14:30:00Z
MDY = ValueForms(date_order="mdy")
DMY = ValueForms(date_order="dmy")
COMMA = ValueForms(decimal_comma=True)


@pytest.mark.parametrize(
    ("text", "amount"),
    [("12.50", 12.5), ("$12.50", 12.5), ("1,000.00", 1000.0), ("$1,234,567.5", 1234567.5),
     ("-€3", -3.0), ("$-12.50", -12.5), ("£ 7", 7.0), (" 12 ", 12.0), (".5", 0.5)],
)  # fmt: skip
def test_amounts_with_symbols_and_thousands_commas(text: str, amount: float) -> None:
    """Currency symbols, thousands commas and signs are read; the number is what it says."""
    assert parse_amount(text) == amount


@pytest.mark.parametrize(
    ("text", "amount"),
    [("12,50", 12.5), ("1.000,50", 1000.5), ("1 000,50", 1000.5), ("12,50 €", 12.5),
     ("1\u202f000", 1000.0), ("7", 7.0)],
)  # fmt: skip
def test_amounts_with_a_decimal_comma(text: str, amount: float) -> None:
    """With the decimal comma, dots and spaces group thousands and the comma is the point."""
    assert parse_amount(text, COMMA) == amount


@pytest.mark.parametrize(
    ("text", "forms"),
    [("12,50", ValueForms()), ("1,00,000", ValueForms()), ("nan", ValueForms()),
     ("inf", ValueForms()), ("12.50", COMMA), ("1.5.2", ValueForms()), ("12 USD", ValueForms()),
     ("", ValueForms())],
)  # fmt: skip
def test_ambiguous_or_foreign_amounts_are_refused(text: str, forms: ValueForms) -> None:
    """``12,50`` without the decimal comma is refused, never read as 1250; a dot amount with
    it is refused too (1.000,50 groups by three); NaN and infinity are no amounts."""
    with pytest.raises(ValueError, match="not"):
        parse_amount(text, forms)


@pytest.mark.parametrize(
    ("text", "forms"),
    [("11/28/2026 14:30", MDY), ("11/28/2026 2:30 PM", MDY), ("11/28/26 2:30pm", MDY),
     ("28/11/2026 14:30", DMY), ("28.11.2026 14:30", DMY), ("28-11-2026 14:30:00", DMY),
     ("2026/11/28 14:30", ValueForms()), ("11/28/2026 9:30 -05:00", MDY),
     ("2026-11-28 14:30", ValueForms()), ("2026-11-28T15:30:00+01:00", ValueForms())],
)  # fmt: skip
def test_spreadsheet_date_times(text: str, forms: ValueForms) -> None:
    """Month-first, day-first (slashes, dots, dashes), 12-hour clocks, two-digit years and
    offsets all give the same instant; year-first needs no order."""
    assert parse_time(text, forms) == NOV_28_1430


@pytest.mark.parametrize(
    ("text", "forms"),
    [("11/28/2026 14:30", ValueForms()), ("11/28/2026 14:30", DMY), ("13:00 PM", MDY),
     ("11/28/2026 13:00 PM", MDY), ("yesterday", MDY)],
)  # fmt: skip
def test_date_order_is_never_guessed(text: str, forms: ValueForms) -> None:
    """A slash date without the order given is refused even when only one order fits, so
    one file is never read two ways; an impossible date in the given order is refused."""
    with pytest.raises(ValueError):  # noqa: PT011 - each refusal has its own text
        parse_time(text, forms)


def _rows(mapper: RowMapper, text: str) -> list[dict[str, object] | RowError]:
    """Every row of CSV text through the header plan (as publish maps CSV)."""
    header, rows = read_csv_cells(text.splitlines(keepends=True))
    plan = mapper.for_header(header)
    out: list[dict[str, object] | RowError] = []
    for _, cells in rows:
        try:
            out.append(plan.event(cells))
        except RowError as exc:
            out.append(exc)
    return out


CRM = (
    "Email,Age,event_name,event_time,value,currency,Notes\n"
    'a@x.com,41,Purchase,11/28/2026 2:30 PM,"$1,000.50",USD,called twice\n'
)


def test_crm_export_with_extra_columns_and_written_values() -> None:
    """With ignore_unknown, Age and Notes are skipped; the amount and the US date are read."""
    mapper = RowMapper(RAW, forms=MDY, ignore_unknown=True)
    assert mapper.unknown(["Email", "Age", "Notes"]) == ["Age", "Notes"]
    [event] = _rows(mapper, CRM)
    assert isinstance(event, dict)
    assert event["event_time"] == NOV_28_1430
    assert event["custom_data"] == {"value": 1000.5, "currency": "USD"}
    assert event["user_data"] == {"em": ["a@x.com"]}
    assert "41" not in str(event)


def test_unknown_columns_still_refused_without_the_option() -> None:
    """Without ignore_unknown the row is refused naming the columns (the general way)."""
    [error] = _rows(RowMapper(RAW, forms=MDY), CRM)
    assert isinstance(error, RowError)
    assert error.fields == ("Age", "Notes")
    assert error.reason == "unknown_column"


def test_invalid_values_name_the_accepted_forms_never_the_value() -> None:
    """Each refused value names its field and the forms accepted, with the options that
    widen them; nothing of the cell is quoted."""
    [error] = _rows(RowMapper(RAW), 'event_name,event_time,value\nPurchase,11/28/2026,"12,50"\n')
    assert isinstance(error, RowError)
    assert [(p.field, p.reason) for p in error.problems] == [
        ("event_time", "invalid_value"), ("custom_data.value", "invalid_value")
    ]  # fmt: skip
    text = str(error)
    assert "--date-order mdy" in text
    assert "12,50 with --decimal-comma" in text
    assert "11/28/2026 14:30" in text  # a form, not the value (which had no time)
    assert "11/28/2026," not in text
    assert '"12,50"' not in text


def test_the_general_way_reads_the_same_forms() -> None:
    """JSON rows (mapped pair by pair) take the same amounts and dates as CSV cells, and
    numbers given as JSON numbers stay as they are."""
    mapper = RowMapper(RAW, forms=ValueForms(decimal_comma=True, date_order="dmy"))
    event = mapper.event({"event_name": "Purchase", "event_time": "28.11.2026 14:30",
                          "value": "1.000,50", "net_revenue": 3})  # fmt: skip
    assert event["event_time"] == NOV_28_1430
    assert event["custom_data"] == {"value": 1000.5, "net_revenue": 3.0}


def test_an_unquoted_decimal_comma_is_never_skipped_as_an_unknown_column() -> None:
    """``12,50`` unquoted makes a cell past the header: the row is refused even when unknown
    columns are ignored, so 12,50 never quietly becomes 12."""
    mapper = RowMapper(RAW, ignore_unknown=True)
    [error] = _rows(mapper, "event_name,event_time,value\nPurchase,1767225600,12,50\n")
    assert isinstance(error, RowError)
    assert error.fields == ("<column 4>",)


def test_a_field_given_twice_is_its_own_reason() -> None:
    """Two value columns: reason given_twice, not an invalid value with forms to try."""
    [error] = _rows(RowMapper(RAW), "event_name,event_time,value,value\nLead,1,1,2\n")
    assert isinstance(error, RowError)
    assert [(p.field, p.reason) for p in error.problems] == [("custom_data.value", "given_twice")]
    assert str(error) == "invalid values in: custom_data.value (given twice)"
