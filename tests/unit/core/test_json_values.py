"""Numbers read out of JSON that Meta or an operator wrote."""

from __future__ import annotations

import pytest

from stream.core.json_values import number


@pytest.mark.parametrize(
    ("value", "expected"),
    [(3, 3.0), (2.5, 2.5), ("19", 19.0), (" 7.5 ", 7.5), ("-1", -1.0)],
)
def test_numbers_and_numeric_strings_read(value: object, expected: float) -> None:
    """JSON numbers and the numeric strings Meta's headers carry read as floats."""
    assert number(value) == expected


@pytest.mark.parametrize(
    "value", [True, False, None, "n/a", "", "inf", "nan", float("inf"), [1], {"a": 1}]
)
def test_anything_else_is_none(value: object) -> None:
    """Booleans, non-finite values, containers and words are not numbers."""
    assert number(value) is None
