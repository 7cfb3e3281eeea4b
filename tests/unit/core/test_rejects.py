"""Reject rows: a field for every code the normalize stage gives, never a value."""

from __future__ import annotations

import pytest

from stream.core.csv_map import FieldProblem, RowError
from stream.core.rejects import Reject, field_of, of_row_error, of_verdict
from stream.core.validate import REASONS, WARNINGS


@pytest.mark.parametrize("code", [*REASONS, *WARNINGS])
def test_every_normalize_code_names_the_field_it_is_about(code: str) -> None:
    """A reason or warning added to validate without a field here fails this test."""
    assert field_of(code)


def test_key_warnings_name_their_user_data_key() -> None:
    """em_invalid_dropped is about user_data.em; an unknown code has no field."""
    assert field_of("em_invalid_dropped") == "user_data.em"
    assert field_of("ph_md5_shape") == "user_data.ph"
    assert field_of("no_such_code") == ""


def test_a_row_error_gives_one_reject_per_field() -> None:
    """Each refused field is a line of the reject file; a whole-row fault has no field."""
    problems = [FieldProblem("event_time", "invalid_value", "x"),
                FieldProblem("custom_data.value", "given_twice")]  # fmt: skip
    error = RowError("invalid values in", problems)
    assert of_row_error(7, error) == [
        Reject(7, "event_time", "invalid_value"), Reject(7, "custom_data.value", "given_twice")
    ]  # fmt: skip
    assert of_row_error(3, RowError("not valid JSON")) == [Reject(3, "", "invalid_json")]
    assert of_verdict(41, "purchase_without_currency").cells() == (
        "41", "custom_data.currency", "purchase_without_currency"
    )  # fmt: skip
