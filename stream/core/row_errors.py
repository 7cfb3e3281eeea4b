"""Why a row could not become a raw event: per field, a stable reason, the forms accepted.

Raised by :mod:`stream.core.csv_map`; read by ``publish`` for its lines and its reject file
(:mod:`stream.core.rejects`). Never a value: values are customer data.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

from stream.core.errors import EncodeError


@dataclass(frozen=True, slots=True)
class FieldProblem:
    """Why one column or field of a row was refused: a stable ``reason`` code and, for an
    invalid value, the forms that would have been ``accepted`` (never the value itself).

    Reasons: ``unknown_column``, ``invalid_value``, ``given_twice``, ``missing_field``,
    ``invalid_json``, ``not_an_object``.
    """

    field: str
    reason: str
    accepted: str = ""

    def __str__(self) -> str:
        if self.reason == "given_twice":
            return f"{self.field} (given twice)"
        return f"{self.field} (expected {self.accepted})" if self.accepted else self.field


class RowError(EncodeError):
    """Raised when a row cannot become a raw event; names columns and fields, never values."""

    def __init__(self, problem: str, problems: Iterable[FieldProblem | str] = ()) -> None:
        reason = _REASONS.get(problem, "invalid_row")
        self.problems = tuple(
            p if isinstance(p, FieldProblem) else FieldProblem(p, reason) for p in problems
        )
        self.fields = tuple(p.field for p in self.problems)
        self.problem = problem
        self.reason = reason
        text = ("; " if reason == "invalid_value" else ", ").join(map(str, self.problems))
        super().__init__(f"{problem}: {text}" if text else problem)


_REASONS: Final = MappingProxyType({
    "unknown columns": "unknown_column", "invalid values in": "invalid_value",
    "given twice": "given_twice", "missing": "missing_field", "not valid JSON": "invalid_json",
    "not a JSON object": "not_an_object",
})  # fmt: skip
